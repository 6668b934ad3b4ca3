"""TFLite model metadata: what MediaPipe Tasks and other TFLite tools read from inside a model.

Written with the TFLite metadata flatbuffers schema that ships in the `mediapipe` wheel
(`mediapipe/tasks/metadata/metadata_schema_py_generated.py`), packed the way the metadata
specification (and tflite-support's `MetadataPopulator`) packs it:
- the metadata flatbuffer (file identifier `M001`) goes into a new model buffer, named in
  the model's `metadata` list as `TFLITE_METADATA`;
- associated files (here `labels.txt`) are appended after the model as an uncompressed zip.
"""

from __future__ import annotations

import io
import zipfile

import flatbuffers

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"  # the fields used here are all in the first schema version
LABELS_FILE = "labels.txt"


def _schema():
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    return schema


CLASSIFIER_INPUT = ("A 28x28 RGB image of one digit after the preprocessing contract: light digit "
                    "on black, fitted in 20x20 and centred by mass (see the README).")
CLASSIFIER_OUTPUT = "The probability of each digit 0-9."


def metadata_flatbuffer(labels: list[str], input_description: str = CLASSIFIER_INPUT,
                        output_description: str = CLASSIFIER_OUTPUT, **about: str) -> bytes:
    """The metadata of an image classifier with a uint8 RGB input and a probability output.

    Args:
        labels: the class names, in output order (the caller packs them as `labels.txt`).
        input_description: what the input pixels are.
        output_description: what the probabilities are.
        **about: the model's `name`, `description`, `version`, `author` and `license`.
    """
    s = _schema()
    image = s.ContentT()
    image.contentPropertiesType = s.ContentProperties.ImageProperties
    image.contentProperties = s.ImagePropertiesT()
    image.contentProperties.colorSpace = s.ColorSpaceType.RGB
    # Raw bytes in: mean 0 and std 1 leave them as they are (127.5/127.5 would silently break).
    normalization = s.ProcessUnitT()
    normalization.optionsType = s.ProcessUnitOptions.NormalizationOptions
    normalization.options = s.NormalizationOptionsT()
    normalization.options.mean, normalization.options.std = [0.0], [1.0]
    stats = s.StatsT()
    stats.min, stats.max = [0.0], [255.0]
    pixels = s.TensorMetadataT()
    pixels.name = "pixels"
    pixels.description = input_description
    pixels.content, pixels.processUnits, pixels.stats = image, [normalization], stats

    labels_file = s.AssociatedFileT()
    labels_file.name = LABELS_FILE
    labels_file.description = "The label of each output, in order."
    labels_file.type = s.AssociatedFileType.TENSOR_AXIS_LABELS
    scores = s.ContentT()
    scores.contentPropertiesType = s.ContentProperties.FeatureProperties
    scores.contentProperties = s.FeaturePropertiesT()
    out_stats = s.StatsT()
    out_stats.min, out_stats.max = [0.0], [1.0]
    probabilities = s.TensorMetadataT()
    probabilities.name = "probabilities"
    probabilities.description = output_description
    probabilities.content, probabilities.stats = scores, out_stats
    probabilities.associatedFiles = [labels_file]

    graph = s.SubGraphMetadataT()
    graph.inputTensorMetadata, graph.outputTensorMetadata = [pixels], [probabilities]
    model = s.ModelMetadataT()
    model.name, model.description, model.version = about["name"], about["description"], about["version"]
    model.author, model.license = about["author"], about["license"]
    model.subgraphMetadata = [graph]
    model.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=METADATA_IDENTIFIER)
    return bytes(builder.Output())


def attach(model: bytes, metadata: bytes, files: dict[str, bytes]) -> bytes:
    """Puts `metadata` into `model` as its `TFLITE_METADATA` buffer and appends `files` as a zip.

    Args:
        model: a `.tflite` flatbuffer without metadata.
        metadata: from `metadata_flatbuffer`.
        files: associated file name -> content.
    """
    from tensorflow.lite.python import schema_py_generated as tflite
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    buffer = tflite.BufferT()
    buffer.data = list(metadata)
    graph.buffers.append(buffer)
    entry = tflite.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(graph.buffers) - 1
    graph.metadata = [m for m in (graph.metadata or []) if m.name.decode() != METADATA_NAME] + [entry]
    packed = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(graph)))
    packed.seek(0, io.SEEK_END)
    # Appended, uncompressed: readers find the zip from its end and map files in place.
    with zipfile.ZipFile(packed, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, content in files.items():
            # A fixed date: the same model and labels give the same bytes on every export.
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), content)
    return packed.getvalue()


def read(model: bytes) -> dict:
    """Reads back the metadata and associated files of a `.tflite` model.

    Returns:
        `name`, `description`, `version`, `author`, `license`, `min_parser_version`, the input's
        `input_name`, `color_space`, `mean` and `std`, the output's `output_name`, and `files`
        (name -> content) with the associated files.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    s = _schema()
    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    [entry] = [m for m in graph.metadata or [] if m.name.decode() == METADATA_NAME]
    buffer = bytes(bytearray(graph.buffers[entry.buffer].data))
    if not s.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0):
        raise ValueError(f"the {METADATA_NAME} buffer lacks the {METADATA_IDENTIFIER.decode()} identifier")
    meta = s.ModelMetadataT.InitFromPackedBuf(buffer, 0)
    [sub] = meta.subgraphMetadata
    [pixels], [probabilities] = sub.inputTensorMetadata, sub.outputTensorMetadata
    [normalization] = [u.options for u in pixels.processUnits
                       if u.optionsType == s.ProcessUnitOptions.NormalizationOptions]
    with zipfile.ZipFile(io.BytesIO(model)) as archive:
        files = {info.filename: archive.read(info) for info in archive.infolist()}
        stored = all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    text = lambda value: value.decode() if isinstance(value, bytes) else value  # noqa: E731
    return {
        "name": text(meta.name), "description": text(meta.description), "version": text(meta.version),
        "author": text(meta.author), "license": text(meta.license),
        "min_parser_version": text(meta.minParserVersion),
        "input_name": text(pixels.name),
        "color_space": pixels.content.contentProperties.colorSpace == s.ColorSpaceType.RGB and "RGB",
        "mean": list(normalization.mean), "std": list(normalization.std),
        "output_name": text(probabilities.name),
        "label_file_type": [f.type for f in probabilities.associatedFiles] == [s.AssociatedFileType.TENSOR_AXIS_LABELS]
        and "TENSOR_AXIS_LABELS",
        "files": files,
        "files_uncompressed": stored,
    }
