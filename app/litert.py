"""Running `.tflite` models through LiteRT, the runtime mobile apps use (no TensorFlow)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from app.errors import InputFileError, interrupt_exits
from app.tflog import quiet_native_stderr


class TFLiteClassifier:
    """Runs a `.tflite` model through LiteRT one image at a time, as a phone does.

    Args:
        path: the `.tflite` file.
        threads: interpreter threads.

    Raises:
        InputFileError: when the file is missing or LiteRT cannot load it.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        with interrupt_exits():  # a Ctrl-C inside LiteRT's start-up would be an ImportError
            from ai_edge_litert.interpreter import Interpreter

        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"no model at {path}; run `make export` or pass --model")
        try:
            with quiet_native_stderr():  # LiteRT announces its CPU delegate on stderr
                self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise InputFileError(f"{path} is not a usable TFLite model ({reason}); export it again") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Returns the probabilities `[n, classes]` of raw pixel images (`[n, 28, 28, 1]` for the classifier)."""
        results = []
        for image in pixels:
            self.interpreter.set_tensor(self.input["index"], quantize(image[None], self.input))
            self.interpreter.invoke()
            results.append(dequantize(self.interpreter.get_tensor(self.output["index"])[0], self.output))
        return np.stack(results)


def quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Maps real values onto a tensor's dtype with its quantization (a no-op for float)."""
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(detail["dtype"], np.integer):
        return values.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    if scale == 0:  # raw integers (the reader's uint8 pixels): no quantization to apply
        return np.clip(np.round(values), info.min, info.max).astype(detail["dtype"])
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Maps a tensor's values back to real numbers (a no-op for float)."""
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(detail["dtype"], np.integer):
        return values.astype(np.float32)
    return (values.astype(np.float32) - zero_point) * scale
