"""The preprocessing contract: any image file or array to the model's 28x28 MNIST-style input.

numpy and Pillow only (no TensorFlow), so `predict` starts fast, and every step is simple
enough to reproduce in another runtime. The README's "Preprocessing contract" numbers these
steps; the constants live here, in one place.

1. Read the header; refuse more than `MAX_PIXELS` pixels before decoding anything.
2. Decode, apply the EXIF orientation, and reduce by a whole factor (box average) so the
   longer side is at most `WORK_SIDE` pixels.
3. Use the alpha channel: composite over black when the visible pixels are light, over white
   when they are dark, so a digit drawn on a transparent canvas stays a digit.
4. Gray: ITU-R 601 luma (Pillow's "L").
5. Polarity: the median of the border pixels is the background; a light background
   (>= 128) means dark ink, and the image is inverted to MNIST's light ink on black.
6. Ink: pixels brighter than the background by more than `MIN_CONTRAST` levels; none, or
   too few, is "no digit found".
7. Crop the ink's bounding box, fit its longer side to `BOX` pixels keeping the aspect
   (Lanczos), and place it in a `SIZE` x `SIZE` frame with its centre of mass at the centre.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The model's input side, and the box the digit's longer side is fitted to (as MNIST did).
SIZE = 28
BOX = 20
# The most pixels an image may have: a 48-megapixel phone photo passes; a decompression
# bomb is refused from its header, before any memory is spent decoding it.
MAX_PIXELS = 64_000_000
# Images are reduced (box average, a whole factor) until their longer side is at most this.
WORK_SIDE = 512
# The ink must stand out from the background by more than this many gray levels...
MIN_CONTRAST = 32
# ...on at least this many pixels of the working image, or there is no digit.
MIN_INK_PIXELS = 4
# A light border (median >= this) means a light background: dark ink, to be inverted.
LIGHT_BACKGROUND = 128


class NoDigitError(ValueError):
    """The image holds no digit to classify (blank, uniform, or only noise)."""


class ImageFileError(ValueError):
    """A file that cannot be read as an image; the message is one line for the user."""


def open_image(path: str | os.PathLike) -> Image.Image:
    """Reads an image file, refusing missing, empty, oversized and non-image files.

    Args:
        path: a PNG, JPEG or any image Pillow reads.

    Returns:
        The decoded image, EXIF orientation applied, reduced to at most `WORK_SIDE` pixels
        on its longer side.

    Raises:
        ImageFileError: with a one-line reason.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageFileError("is a directory")
    if not path.exists():
        raise ImageFileError("no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise ImageFileError("empty file")
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 MP on; our own limit, checked next, is the one that counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only
        with image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageFileError(
                    f"image too large ({width}x{height} pixels, at most {MAX_PIXELS:,}); scale it down first")
            image = plain_mode(ImageOps.exif_transpose(image))
            image.load()
            factor = -(-max(image.size) // WORK_SIDE)
            return image.reduce(factor) if factor > 1 else image
    except ImageFileError:
        raise
    except Image.DecompressionBombError:  # Pillow's own, larger limit, also from the header
        raise ImageFileError(f"image too large (over {MAX_PIXELS:,} pixels); scale it down first") from None
    except UnidentifiedImageError as error:
        raise ImageFileError(f"not an image ({type(error).__name__})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # truncated or corrupt data
        raise ImageFileError(f"damaged image data ({type(error).__name__}: {error})") from None


def plain_mode(image: Image.Image) -> Image.Image:
    """Brings any Pillow mode to L, LA, RGB or RGBA, keeping transparency."""
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):  # 16-bit and float gray
        values = np.asarray(image, np.float32)
        peak = 65535.0 if image.mode != "F" and values.max() > 255 else max(255.0, float(values.max()))
        return Image.fromarray(np.clip(values * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    transparent = "transparency" in image.info or image.mode in ("PA", "RGBa", "La")
    return image.convert("RGBA" if transparent else "RGB")


def to_gray(image: Image.Image) -> np.ndarray:
    """Steps 3 and 4: alpha composited against the ink's opposite, then ITU-R 601 gray.

    Returns:
        float32 `[height, width]` in 0..255.
    """
    image = plain_mode(image)
    has_alpha = image.mode in ("RGBA", "LA")
    gray = np.asarray(image.convert("L"), np.float32)
    if not has_alpha:
        return gray
    alpha = np.asarray(image.getchannel("A"), np.float32) / 255.0
    if alpha.min() >= 1.0:
        return gray
    # The visible pixels' colour decides the backdrop: light ink goes on black, dark on white.
    visible = alpha.sum()
    ink_level = float((gray * alpha).sum() / visible) if visible > 0 else 0.0
    backdrop = 0.0 if ink_level >= LIGHT_BACKGROUND else 255.0
    return gray * alpha + backdrop * (1.0 - alpha)


def border_level(gray: np.ndarray) -> float:
    """The median of the outermost ring of pixels: the background's gray level."""
    ring = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    return float(np.median(ring))


def light_on_dark(gray: np.ndarray, polarity: str = "auto") -> np.ndarray:
    """Step 5: returns the image as light ink on a dark background.

    Args:
        gray: float32 gray levels.
        polarity: "auto" (from the border), "light-on-dark" or "dark-on-light".
    """
    if polarity == "auto":
        polarity = "dark-on-light" if border_level(gray) >= LIGHT_BACKGROUND else "light-on-dark"
    return 255.0 - gray if polarity == "dark-on-light" else gray


def mnist_style(gray: np.ndarray) -> np.ndarray:
    """Steps 6 and 7: crops the ink, fits it into 20x20 keeping its aspect, centres it by mass.

    Args:
        gray: light ink on a dark background, float 0..255.

    Returns:
        uint8 `[28, 28]`, light digit on black.

    Raises:
        NoDigitError: when no pixel stands out from the background.
    """
    background = border_level(gray)
    ink_strength = np.clip(gray - background, 0, None)
    ink = ink_strength > MIN_CONTRAST
    if ink.sum() < MIN_INK_PIXELS:
        raise NoDigitError("no digit found (blank or uniform image)")
    rows, cols = np.where(ink.any(1))[0], np.where(ink.any(0))[0]
    crop = ink_strength[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    crop = crop * (255.0 / crop.max())
    scale = BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    digit = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize(size, Image.LANCZOS), np.float32)
    frame = np.zeros((SIZE, SIZE), np.float32)
    top, left = (SIZE - digit.shape[0]) // 2, (SIZE - digit.shape[1]) // 2
    frame[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    # Shift so the centre of mass sits at the centre, as in MNIST.
    ys, xs = np.indices(frame.shape)
    total = frame.sum()
    dy = int(round((SIZE - 1) / 2 - (ys * frame).sum() / total))
    dx = int(round((SIZE - 1) / 2 - (xs * frame).sum() / total))
    frame = np.roll(frame, (dy, dx), axis=(0, 1))
    return np.clip(np.round(frame), 0, 255).astype(np.uint8)


def preprocess_image(image: Image.Image | np.ndarray, polarity: str = "auto") -> np.ndarray:
    """The whole contract after decoding: a Pillow image or gray array to uint8 `[28, 28]`."""
    gray = to_gray(image) if isinstance(image, Image.Image) else np.asarray(image, np.float32)
    return mnist_style(light_on_dark(gray, polarity))


def preprocess_file(path: str | os.PathLike, polarity: str = "auto") -> np.ndarray:
    """The whole contract: an image file to the model's uint8 `[28, 28]` input.

    Raises:
        ImageFileError: the file cannot be read as an image.
        NoDigitError: the image holds no digit.
    """
    return preprocess_image(open_image(path), polarity)
