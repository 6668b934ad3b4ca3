"""The tinymnist CNN: one pure builder, `build_model(config)`, in the Keras functional API.

Layout (every 3x3 convolution uses 'same' padding, stride 1, no bias, then BatchNorm + ReLU;
each block ends in Dropout):

| layer            | kind          | output   | receptive field |
|------------------|---------------|----------|-----------------|
| normalize        | Rescaling     | 28x28x1  | 1               |
| edges_conv1      | 3x3 conv      | 28x28x8  | 3               |
| transition1_pool | 2x2 MaxPool   | 14x14x8  | 4               |
| transition1_conv | 1x1 conv      | 14x14x10 | 4               |
| patterns_conv1   | 3x3 conv      | 14x14x14 | 8               |
| patterns_conv2   | 3x3 conv      | 14x14x16 | 12              |
| transition2_pool | 2x2 MaxPool   | 7x7x16   | 14              |
| transition2_conv | 1x1 conv      | 7x7x10   | 14              |
| object_conv1     | 3x3 conv      | 7x7x16   | 22              |
| object_conv2     | 3x3 conv      | 7x7x16   | 30 (>= 28)      |
| gap              | GlobalAvgPool | 16       | whole image     |
| head             | Dense+softmax | 10       |                 |

The edges block is the 8-feature stem alone by default (`ModelConfig.edges = ()`); each filter
count in `edges` adds a 28x28 convolution (`edges_conv2`, `edges_conv3`), which costs
28*28*9*in*out multiply-adds per image for only 9*in*out parameters. Blocks 2 and 3 hold one
to three 3x3 convolutions each, and a transition of 0 filters is its MaxPooling alone.

Each MaxPooling sits right after the last convolution of its block, before that
convolution's BatchNorm, ReLU and the block's Dropout (`ModelConfig.early_pool`): those
element-wise layers then run on a quarter of the pixels, which makes a training step cheaper
for the same parameters and receptive fields.

`receptive_fields(model)` recomputes the last column from the built layers, and the tests
check it, so this table cannot silently drift from the code.

`five_views(model)` wraps a built model, with the same weights, to read each image as given
and moved one pixel each way: every exported format is that wrapper.
"""

from __future__ import annotations

import keras
from keras import layers

from app.config import INPUT_SHAPE, NUM_CLASSES, ModelConfig

# MNIST train-set pixel statistics (of pixel/255); normalising inside the model lets every
# exported format take raw 0..255 pixels.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
# The exported models read every image five times: as given, and moved one pixel up, down,
# left and right (rows, columns). See `five_views`.
VIEW_SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def conv_bn_relu(x, filters: int, kernel_size: int, name: str, pool: str | None = None):
    """A bias-free convolution followed by BatchNorm and ReLU, optionally max-pooled first.

    The bias is dropped because BatchNorm's beta does the same job.

    Args:
        x: the input tensor.
        filters: number of output channels.
        kernel_size: 3 for feature extraction, 1 for transitions.
        name: prefix of the three layer names (`name`, `name_bn`, `name_relu`).
        pool: the name of a 2x2 MaxPooling between the convolution and its BatchNorm, or None.
    """
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=name)(x)
    if pool:
        x = layers.MaxPooling2D(2, name=pool)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def block(x, filters: tuple[int, ...], dropout: float, name: str, pool: str | None = None):
    """A block of 3x3 convolutions closed by Dropout against memorising.

    Args:
        x: the input tensor.
        filters: output channels of each 3x3 convolution, in order.
        dropout: the rate of the closing Dropout.
        name: the block's name (`edges`, `patterns` or `object`).
        pool: the name of a 2x2 MaxPooling right after the last convolution (see
            `ModelConfig.early_pool`), or None.
    """
    for i, f in enumerate(filters, start=1):
        x = conv_bn_relu(x, f, 3, name=f"{name}_conv{i}", pool=pool if i == len(filters) else None)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x)


def transition(x, filters: int, name: str, pool: bool = True):
    """Halves the resolution (MaxPooling) and squeezes the channels (1x1 convolution).

    Args:
        x: the input tensor.
        filters: output channels of the 1x1 convolution; 0 leaves the channels as they are.
        name: the transition's name.
        pool: False when the block before already pooled (`ModelConfig.early_pool`).
    """
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return conv_bn_relu(x, filters, 1, name=f"{name}_conv") if filters else x


def build_model(config: ModelConfig = ModelConfig()) -> keras.Model:
    """Builds the uncompiled tinymnist CNN.

    Args:
        config: filter counts, dropout and the parameter budget.

    Returns:
        A functional `keras.Model` from raw pixels `[batch, 28, 28, 1]` (0..255, float32)
        to the 10 class probabilities.

    Raises:
        ValueError: when the model's parameter count (`model.count_params()`, trainable
            plus BatchNorm statistics) is over `config.budget`.
    """
    inputs = keras.Input(INPUT_SHAPE, name="pixels")
    x = layers.Rescaling(
        scale=1.0 / (255.0 * MNIST_STD), offset=-MNIST_MEAN / MNIST_STD, name="normalize"
    )(inputs)
    early = config.early_pool
    x = block(x, (config.stem, *config.edges), config.dropout, name="edges",
              pool="transition1_pool" if early else None)
    x = transition(x, config.transition1, name="transition1", pool=not early)
    x = block(x, config.patterns, config.dropout, name="patterns", pool="transition2_pool" if early else None)
    x = transition(x, config.transition2, name="transition2", pool=not early)
    x = block(x, config.object, config.dropout, name="object")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="tinymnist")

    config.check_budget(model.count_params())
    return model


def five_views(model: keras.Model) -> keras.Model:
    """`model` reading every image five times, as given and moved by each of `VIEW_SHIFTS`.

    A digit's place in the 28x28 is only as exact as its centre of mass, and the strokes of a
    photo or of a scaled-up bitmap fall a pixel either way of where MNIST's would; five views
    read such digits more often right. Each view is the image moved by (rows, columns), zeros
    (the background) coming in at the edge it leaves. The five views' pooled features (the
    `head`'s input) are averaged and the head classifies the average, which averages the
    five logits: the softmax stays the last op, so an int8 output keeps its scale of 1/256.
    Same weights, no new parameters.

    Args:
        model: a model from `build_model` (raw pixels in, probabilities out, a `head` layer).

    Returns:
        A functional `keras.Model` from `pixels` `[batch, 28, 28, 1]` to the probabilities.
    """
    from keras import ops

    head = model.get_layer("head")
    trunk = keras.Model(model.inputs, head.input, name="trunk")
    pixels = keras.Input(INPUT_SHAPE, name="pixels")
    height, width = INPUT_SHAPE[:2]
    padded = ops.pad(pixels, [[0, 0], [1, 1], [1, 1], [0, 0]])
    # Moved down by dy, the view's row r is the image's row r - dy: the padded one's 1 + r - dy.
    views = ops.concatenate([padded[:, 1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width, :]
                             for dy, dx in VIEW_SHIFTS], axis=0)
    features = trunk(views)
    mean = ops.mean(ops.reshape(features, (len(VIEW_SHIFTS), -1, features.shape[-1])), axis=0)
    return keras.Model(pixels, head(mean), name=f"{model.name}_five_views")


def parameter_counts(model: keras.Model) -> dict:
    """Returns the model's total, trainable and non-trainable parameter counts."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    total = model.count_params()
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def receptive_fields(model: keras.Model) -> dict[str, int]:
    """Computes the receptive field (in input pixels) of every spatial layer.

    Args:
        model: a model made of Conv2D/MaxPooling2D layers (others leave it unchanged).

    Returns:
        Layer name -> receptive field side, in layer order.
    """
    field, jump, fields = 1, 1, {}
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.MaxPooling2D)):
            kernel = layer.kernel_size[0] if isinstance(layer, layers.Conv2D) else layer.pool_size[0]
            stride = layer.strides[0]
            field += (kernel - 1) * jump
            jump *= stride
            fields[layer.name] = field
    return fields
