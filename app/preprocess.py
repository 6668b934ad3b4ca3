"""The preprocessing contract: any image file or array to the model's 28x28 MNIST-style input.

numpy, Pillow and `scipy.ndimage` only (no TensorFlow), so `predict` starts fast, and
every step is plain enough to reproduce in another runtime: the README's "Preprocessing
contract" numbers the same steps, and the constants below are the only copy of them.

1. Header: refuse more than `MAX_PIXELS` pixels before decoding anything.
2. Decode, apply the EXIF orientation, and box-reduce by a whole factor (Pillow `reduce`)
   so the longer side is at most `WORK_SIDE` pixels.
3. Alpha: composite over black when the visible pixels are light, over white when dark.
4. Gray: ITU-R 601 luma (Pillow's "L"), as float.
5. Sheet and polarity. A sheet on a darker desk first: when the median of the middle half
   (rows and columns h // 4 to h - h // 4) is at least `SHEET_CONTRAST` above the median of
   the outermost ring of pixels, the pixels above the midpoint of the two are the sheet; when
   their largest 4-connected component (the first on a tie) has at least `SHEET_SHARE` of all
   pixels and fills at least `SHEET_FILL` of its bounding box, the image is cropped to that
   box less `SHEET_MARGIN` of the longer side on every side (the sheet's shaded edge). When
   it fills at least `SHADED_SHEET_FILL` (a shadow darkens part of the sheet, or a bold light
   digit fills its box), the crop is read first, and the whole image when it holds no digit. Then
   polarity: subtract the paper from the gray image. When the outermost ring of pixels is
   flat (its 90th and 10th percentiles at most `FLAT_BORDER` apart: a scan, a drawing,
   MNIST), the paper is the ring's median and only the pixels more than `FLAT_BORDER` off it
   count (when there are any: a thin digit on a large canvas is a tiny share); otherwise (a
   photo) it is the box mean `POLARITY_WINDOW` of the longer side wide (odd; edges
   repeated), which follows shadows and gradients. The ink is the residual's farther tail:
   its `SPARSE_POLARITY_PERCENTILE`th or (100 - `SPARSE_POLARITY_PERCENTILE`)th percentile
   when one lies at least `POLARITY_RATIO` times as far from 0 as the other (a small digit's
   ink), else the same with `POLARITY_PERCENTILE`. When it lies below 0 the ink is dark and
   the image is inverted (255 - gray), so from here on the ink is light on a dark background.
6. Background: a grey opening (a min filter, then a max filter, both `BG_FRACTION` of the
   longer side wide, edges repeated) is the paper alone: strokes are narrower than the
   window, while tint, gradients and the edges of shadows are kept where they are. It is
   subtracted; for dark ink, the result is divided by the paper's light (255 minus the
   opening, at least `MIN_LIGHT`) and scaled by 255, so ink in a shadow keeps its contrast.
7. Contrast: the median and the MAD of all pixels are the paper's (the ink is a minority);
   the noise floor is the median plus `NOISE_MADS` scaled MADs (1.4826 MAD). The peak is
   the `PEAK_PERCENTILE`th percentile of all pixels; when it is less than `MIN_CONTRAST`
   above the floor (ink under that share of the picture: a small digit), the
   `SPARSE_PERCENTILE`th percentile is the peak instead if it is at least `MIN_CONTRAST`
   and `SPARSE_SPREADS` scaled MADs above the floor (noise alone never reaches so far). The
   strokes are the pixels above the midpoint of floor and peak, and the ink level is their
   `INK_PERCENTILE`th percentile.
   Levels are stretched linearly so the floor maps to 0 and the ink level to 255 (clipped).
   A peak at or below the floor goes to step 10; a peak or an ink level less than
   `MIN_CONTRAST` above the floor means "no digit found".
8. Lines and specks. Ruled or squared paper first, among the pixels above `LINE_LEVEL`: a
   slice is the pixels (y, x) with y - floor(x k / 64 + 0.5) = r (a row sheared by k/64,
   |k| <= `LINE_SLOPES`, k tried from -`LINE_SLOPES` up), and the slope whose slices' counts
   of such pixels have the largest sum of squares is used (the first on a tie). Its slices
   of at least half the width, lit on at least `LINE_SHARE` of their pixels, lit within
   `LINE_END` of the width from both their ends (in them or the slices beside them), and
   whose slices `LINE_WIDTH` away on both sides are lit on at most half their pixels (a line
   is thin; a shadow's edge is a broad ramp) are lines. Their pixels and 8-neighbours are
   set to 0, except where the pixels `LINE_WIDTH` away across the line, on both sides, are
   above `SPECK_LEVEL` and not on a line of the other direction (a stroke crosses there).
   The same with columns for vertical lines, both judged on the same image. Then the
   specks: 8-connected
   components of the pixels above `SPECK_LEVEL`. Components that touch the image's border
   are dropped when another one of at least `MIN_DIGIT_PIXELS` pixels does not (a shadow's
   edge reaches the border; a framed digit does not); of the rest, those smaller than
   `SPECK_FRACTION` of the largest are dropped, and every pixel farther than `HALO` pixels
   (8-connected) from a kept component is set to 0. When what is kept touches the border (a
   shadow's edge the digit's strokes reach joins the digit), the components of the pixels
   above `CORE_LEVEL` decide: when the largest of those apart from the border has at least
   `MIN_DIGIT_PIXELS` and every one on it is under `SPECK_FRACTION` of that largest, the
   specks step runs again on the pixels within `HALO` of those apart it would keep (a
   shadow's plateau is fainter than half the ink; a digit cut out to its box is not). No
   component of at least
   `MIN_DIGIT_PIXELS` pixels means "no digit found", except when lines were cleared and they
   are one 8-connected piece: a lone stroke (a "1" from edge to edge is a line by every
   test) is then the digit, and the specks are removed from the image as it was before
   clearing. Two or more lines with nothing left are a ruled page: "no digit found".
   Last, a box drawn around the digit (a form's field): in the bounding box of the pixels
   above `SPECK_LEVEL`, then in that of each of their 8-connected components (largest first,
   the first on a tie), each at least `MIN_BOX` pixels tall and wide, the lines are found as
   above, except that a line of slope k may stop short of both ends by ceil(height x |k| / 64)
   more (the sides of the other direction, turned alike, drift that far). When row lines
   lie within `LINE_WIDTH` of its top and bottom and column lines within `LINE_WIDTH` of its
   left and right, they are cleared as above and the specks step runs on the bounding box
   alone; when that keeps a digit at least `LINE_WIDTH` from every edge of the bounding box,
   it is the result (zero outside the bounding box); otherwise the next bounding box is
   tried, and after the last the values stay as they were.
9. Edge test: on a picture at least `EDGE_SIDE` long, when what steps 6-8 keep (above
   `SPECK_LEVEL`) touches the border, they run again with step 6's opening taken over the
   image extended by half the window on every side (edge pixels repeated); if that finds no
   digit (step 10's case aside), "no digit found": each filter repeating its own edge leaves
   paper lit more brightly towards an edge as a band of "ink" there, which the extended
   opening follows away. Otherwise the first result stands.
   Stroke width: w = 2 x (pixels above `SPECK_LEVEL`) / (those of them with a 4-neighbour,
   or the image's edge, not above it): a stroke's area over half its outline. When the
   window max(3, floor(`STROKE_WINDOWS` w) | 1) is narrower than step 6's, steps 6-8 run
   again on step 5's image with that window, and their result replaces the first unless they
   find no digit. A window a few strokes wide still removes every stroke, but it follows a
   shadow's edge into the corners a window of 0.4 x the side cannot reach.
10. Margin: when step 7's noise floor is at or above its peak, the median and MAD were the
    ink's: the ink is most of the picture (a digit cut out to its own box), or noise is
    (static, no paper at all): when its `roughness` is at least `NOISE_ROUGHNESS`, "no digit
    found". Otherwise steps 6-9 run again on step 5's image inside a frame
    floor(`MARGIN` x its longer side) wide of its own paper (step 6's first-pass background,
    each frame pixel the value at the nearest edge pixel); if they find no digit either, the
    first refusal stands.
11. Stroke width: w = step 9's width of the strokes times `BOX` / the longer side of the
    non-zero pixels' bounding box (their width once fitted). When w > `THICK_STROKE`, levels
    up to `SPECK_LEVEL` are set to 0 and the rest stretched back to 0-255: such a digit is
    mostly soft edge (a blurred photo, a small bitmap scaled up) and would reach the model
    as one fat blob. When w < `THIN_STROKE` (a fine pen on a large canvas), a max filter
    max(3, floor((2 `THIN_STROKE` - w) x the longer side / `BOX`) | 1) wide (edges repeated)
    widens the strokes, which the fit would otherwise thin to a faint trace.
12. Fit: crop the bounding box of the non-zero pixels and area-resample it so its longer side
    is `BOX` pixels, keeping the aspect (each output pixel averages the source area it covers).
13. Centre: place it in a `SIZE` x `SIZE` black frame at ((SIZE - h) // 2, (SIZE - w) // 2),
    then shift it by floor(c + 0.5) along each axis, as MNIST did, where c = `CENTRE` - centre
    of mass rounded to `CENTRE_DECIMALS` decimals (floor(c 10^6 + 0.5) / 10^6: a symmetric
    digit's exact half pixel is then the same half in every runtime);
    round to uint8 (floor(x + 0.5)).
14. Second look: when step 2 reduced the picture by a factor f > 1 and the bounding box of
    step 11's non-zero pixels (in the reduced picture, step 5's sheet offset added) has a
    longer side L of at most `ZOOM_SIDE` pixels, steps 2-13 run again on the decoded picture
    (EXIF applied, not reduced) cropped to that box widened by m = floor(`ZOOM_MARGIN` L) on
    every side, kept on step 5's sheet (or the picture), times f and clipped to the picture.
    Their result replaces the first unless they find no digit. A small digit in a large
    picture is then read from its own pixels instead of a few dozen reduced ones.
15. Shape: in the 28 x 28 result (step 14's when it found a digit, else step 13's), take the
    bounding box (h x w) of the pixels above `SPECK_LEVEL`. When h < `FLAT_SHAPE` x w (a
    bar) or, with h <= w, at least `SOLID_SHAPE` x h x w of its pixels are above `SPECK_LEVEL`
    (a block): "no digit found". MNIST fits every digit's longer side to 20 pixels; none is
    flatter than 0.4 or a filled square, but the edge of a shadow, a desk or a sheet is.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# --- the constants of the contract ---------------------------------------------------------
SIZE = 28  # the model's input side
BOX = 20  # the digit's longer side, as MNIST fitted it
CENTRE = 14.0  # where MNIST's centres of mass sit (row and column; measured: 13.99, 14.01)
CENTRE_DECIMALS = 6  # the shift towards CENTRE is rounded to this many decimals before its half pixel
MAX_PIXELS = 64_000_000  # a 48-megapixel phone photo passes; a decompression bomb does not
WORK_SIDE = 256  # images are box-reduced until their longer side is at most this
LIGHT_BACKGROUND = 128  # alpha: visible pixels at least this light are composited over black
FLAT_BORDER = 16  # a border whose 10th-90th percentile spread is at most this is flat paper
SHEET_CONTRAST = 64  # a middle this much lighter than the border is a sheet on a desk
SHEET_SHARE = 0.3  # ... when the sheet's largest piece has at least this share of the pixels
SHEET_FILL = 0.9  # ... and fills at least this share of its bounding box (a digit does not)
SHADED_SHEET_FILL = 0.8  # ... or this share, a shadow on the sheet, when that crop holds a digit
SHEET_MARGIN = 0.02  # the sheet's edge trimmed off, as a share of the longer side
POLARITY_WINDOW = 0.5  # the box mean that polarity is judged against, as a share of the side
POLARITY_PERCENTILE = 0.5  # the darkest and lightest residuals are these percentiles
SPARSE_POLARITY_PERCENTILE = 0.1  # rarer tails, read first: a small digit's ink is fewer pixels
POLARITY_RATIO = 1.25  # ... and deciding when one reaches at least this many times as far as the other
BG_FRACTION = 0.4  # the background's opening is this share of the longer side wide
MIN_LIGHT = 16.0  # the least paper light divided by (keeps black paper from blowing up)
NOISE_MADS = 2.0  # the noise floor: the paper's median plus this many scaled MADs
PEAK_PERCENTILE = 99.5  # the brightest pixels' level, for telling strokes from paper
INK_PERCENTILE = 80  # the ink level: this percentile of the strokes
MIN_CONTRAST = 12  # a peak or ink level less than this above the floor is no digit
SPARSE_PERCENTILE = 99.97  # the peak of sparse ink, when PEAK_PERCENTILE's is paper
SPARSE_SPREADS = 8.0  # ... when this many of the noise's spreads (1.4826 MAD) above the floor
SPECK_LEVEL = 64  # pixels above this (after the stretch) form the components
SPECK_FRACTION = 0.1  # components smaller than this share of the largest are specks
CORE_LEVEL = 128  # a digit's cores: pixels above half the ink level (a shadow's plateau is fainter)
HALO = 3  # pixels kept around the kept components (the strokes' soft edges)
MIN_DIGIT_PIXELS = 6  # the largest component must have at least this many pixels
LINE_LEVEL = 16  # ruled lines are found among the pixels above this (they are fainter than ink)
LINE_SHARE = 0.85  # a slice lit on this share of its pixels is a ruled line (a digit spans less)
LINE_END = 0.02  # ... when it is lit this close to both its ends, as a share of the width
LINE_WIDTH = 4  # ... and the slices this far away on either side are mostly paper
LINE_SLOPES = 9  # line slopes tried: k/64 for |k| up to this (about 8 degrees)
MIN_BOX = 32  # a box around the digit is looked for only when the ink spans this many pixels both ways
STROKE_WINDOWS = 5  # the second pass's opening is this many stroke widths wide
MARGIN = 0.25  # paper added around a digit cut out to its own box, as a share of the longer side
NOISE_ROUGHNESS = 1.15  # ... unless its neighbouring pixels differ this much (`roughness`): noise
EDGE_SIDE = 32  # step 9's edge test runs on pictures at least this long (a band of light needs room)
THICK_STROKE = 5.5  # strokes wider than this once fitted lose their soft edge (MNIST's: about 3.3)
THIN_STROKE = 1.5  # strokes thinner than this once fitted are widened to twice this (MNIST's: at least 2)
ZOOM_SIDE = 48  # a digit box at most this long in a reduced picture is read again at full size
ZOOM_MARGIN = 0.5  # ... from a crop this share of the box's longer side wider on every side
FLAT_SHAPE = 0.35  # a result whose lit box is less than this share of its width tall is a bar, no digit
SOLID_SHAPE = 0.9  # ... and one lit on this share of a box no taller than wide is a block, no digit


class NoDigitError(ValueError):
    """The image holds no digit to classify (blank, uniform, or only noise)."""


class NoPaperError(NoDigitError):
    """Step 7's paper statistics landed on the ink: the ink is most of the picture (step 10 frames it)."""


class ImageFileError(ValueError):
    """A file that cannot be read as an image; the message is one line for the user."""


def open_image(path: str | os.PathLike) -> Image.Image:
    """Steps 1 and 2: `decode`, then reduced to at most `WORK_SIDE` pixels on its longer side."""
    return reduce_to(decode(path), WORK_SIDE)


def decode(path: str | os.PathLike) -> Image.Image:
    """Steps 1 and 2's decoding: reads an image file, refusing missing, empty, huge and non-image files.

    Args:
        path: a PNG, JPEG, HEIC or any image Pillow reads.

    Returns:
        The decoded image in mode L, LA, RGB or RGBA, EXIF orientation applied, at full size
        (step 14 reads a small digit from it again).

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
            image = open_header(path)
        with image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageFileError(
                    f"image too large ({width}x{height} pixels, at most {MAX_PIXELS:,}); scale it down first")
            image = plain_mode(ImageOps.exif_transpose(image))
            image.load()
            return image
    except ImageFileError:
        raise
    except Image.DecompressionBombError:  # Pillow's own, larger limit, also from the header
        raise ImageFileError(f"image too large (over {MAX_PIXELS:,} pixels); scale it down first") from None
    except UnidentifiedImageError as error:
        raise ImageFileError(f"not an image ({type(error).__name__})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # truncated or corrupt data
        raise ImageFileError(f"damaged image data ({type(error).__name__}: {error})") from None


def open_header(path: Path) -> Image.Image:
    """`Image.open` (the header only), also for HEIF/HEIC files, such as an iPhone's photos.

    Pillow reads no HEIF by itself; pillow-heif's plugin is loaded when a file Pillow cannot
    identify is an ISO media file (bytes 4-8 "ftyp"), so other files never pay its import.
    """
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        if not path.is_file():  # a pipe: its bytes are spent
            raise
        with open(path, "rb") as file:
            is_media_file = file.read(12)[4:8] == b"ftyp"
        if not (is_media_file and heif_plugin()):
            raise
        return Image.open(path)


@functools.cache
def heif_plugin() -> bool:
    """Registers pillow-heif's Pillow plugin, once; False when it is not installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


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


def reduction(image: Image.Image, side: int) -> int:
    """The least whole factor that brings the longer side to `side` or less."""
    return -(-max(image.size) // side)


def reduce_to(image: Image.Image, side: int) -> Image.Image:
    """Box-reduces by `reduction(image, side)`."""
    factor = reduction(image, side)
    return image.reduce(factor) if factor > 1 else image


def to_gray(image: Image.Image) -> np.ndarray:
    """Steps 3 and 4: alpha composited against the ink's opposite, then ITU-R 601 gray.

    Returns:
        float32 `[height, width]` in 0..255.
    """
    image = plain_mode(image)
    gray = np.asarray(image.convert("L"), np.float32)
    if image.mode not in ("RGBA", "LA"):
        return gray
    alpha = np.asarray(image.getchannel("A"), np.float32) / 255.0
    if alpha.min() >= 1.0:
        return gray
    # The visible pixels' colour decides the backdrop: light ink goes on black, dark on white.
    visible = float(alpha.sum())
    ink_level = float((gray * alpha).sum()) / visible if visible > 0 else 0.0
    backdrop = 0.0 if ink_level >= LIGHT_BACKGROUND else 255.0
    return gray * alpha + backdrop * (1.0 - alpha)


def border(gray: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels."""
    if min(gray.shape) < 3:
        return gray.ravel()
    return np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])


def sheet_of(gray: np.ndarray) -> np.ndarray:
    """Step 5's sheet: a photo of a sheet on a darker desk cropped to the sheet, else `gray`.

    Without it the desk would be taken for the paper, and the whole sheet for a light digit.
    """
    box = sheet_box(gray)
    return gray if box is None else gray[box]


def sheet_box(gray: np.ndarray, fill: float = SHEET_FILL) -> tuple[slice, slice] | None:
    """Step 5's sheet as row and column slices of `gray`, or None when there is none.

    Args:
        gray: the picture.
        fill: the least share of its bounding box the sheet's piece fills.
    """
    piece = sheet_piece(gray)
    return piece[0] if piece is not None and piece[1] >= fill * piece[2] else None


def sheet_piece(gray: np.ndarray) -> tuple[tuple[slice, slice], int, int] | None:
    """Step 5's sheet before its fill test: its box (less the margin) as row and column slices,
    the piece's pixels and its bounding box's pixels; None when there is no such piece."""
    from scipy.ndimage import find_objects, label

    height, width = gray.shape
    if min(height, width) < 8:
        return None
    desk = float(median(border(gray)))
    paper = float(median(gray[height // 4 : height - height // 4, width // 4 : width - width // 4]))
    if paper - desk < SHEET_CONTRAST:
        return None
    pieces, count = label(gray > (desk + paper) / 2)  # 4-connected
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)
    sizes[0] = 0
    biggest = int(np.argmax(sizes))  # the first on a tie
    if sizes[biggest] < SHEET_SHARE * gray.size:
        return None
    rows, cols = find_objects(pieces)[biggest - 1]  # its bounding box
    margin = int(SHEET_MARGIN * max(height, width))
    top, bottom, left, right = rows.start + margin, rows.stop - margin, cols.start + margin, cols.stop - margin
    if bottom - top < 8 or right - left < 8:
        return None
    area = (rows.stop - rows.start) * (cols.stop - cols.start)
    return (slice(top, bottom), slice(left, right)), int(sizes[biggest]), area


def polarity_of(gray: np.ndarray) -> str:
    """Step 5: "dark-on-light" when the ink is darker than the paper, else "light-on-dark".

    The paper is subtracted: a flat border's median (scans, drawings, MNIST; then only the
    pixels more than `FLAT_BORDER` off it count), or else (a photo) a broad local mean, which
    follows shadows and gradients. The ink is then the tail that reaches farther from 0:
    below it (dark ink) or above it.
    """
    from scipy.ndimage import uniform_filter

    ring = np.sort(border(gray))
    if percentile_of_sorted(ring, 90) - percentile_of_sorted(ring, 10) <= FLAT_BORDER:
        residual = gray - float(median_of_sorted(ring))
        # The pixels off the paper: a thin digit on a large canvas can be fewer than
        # POLARITY_PERCENTILE of all pixels, which would leave both tails on the paper.
        off = residual[np.abs(residual) > FLAT_BORDER]
        if off.size:
            residual = off
    else:
        window = max(3, int(POLARITY_WINDOW * max(gray.shape)) | 1)
        residual = gray - uniform_filter(gray, size=window, mode="nearest")
    ordered = sorted_at(residual, [SPARSE_POLARITY_PERCENTILE, POLARITY_PERCENTILE,
                                   100 - POLARITY_PERCENTILE, 100 - SPARSE_POLARITY_PERCENTILE])

    def tails(percent: float) -> tuple[float, float]:  # how far below and above 0 they reach
        return -float(percentile_of_sorted(ordered, percent)), float(percentile_of_sorted(ordered, 100 - percent))

    # A small digit in a large photo is under POLARITY_PERCENTILE of the pixels: those tails
    # are then the paper's shadows and gradients, alike on both sides, and the rarer tails,
    # where the ink lies, decide when one of them clearly reaches farther.
    darkest, lightest = tails(SPARSE_POLARITY_PERCENTILE)
    if not (darkest >= POLARITY_RATIO * lightest or lightest >= POLARITY_RATIO * darkest):
        darkest, lightest = tails(POLARITY_PERCENTILE)
    return "dark-on-light" if darkest > lightest else "light-on-dark"


def median(values: np.ndarray) -> np.floating:
    """`np.median(values)` bit for bit (see `percentile_of_sorted`)."""
    return median_of_sorted(sorted_at(values, [50]))


def median_of_sorted(ordered: np.ndarray) -> np.floating:
    """`np.median` of sorted values, without its partition: the middle one or two, averaged."""
    return np.mean(ordered[(ordered.size - 1) // 2 : ordered.size // 2 + 1])


def ranks(size: int, percent: float) -> tuple[int, int]:
    """The two neighbouring ranks that `np.percentile`'s linear method reads for `percent`."""
    below = min(math.floor((size - 1) * (percent / 100)), size - 1)
    return below, min(below + 1, size - 1)


def sorted_at(values: np.ndarray, percents: list[float]) -> np.ndarray:
    """`values` flattened, in sorted order at least at the ranks these percentiles read.

    One partition at a few ranks is cheaper than a full sort, and `median_of_sorted` and
    `percentile_of_sorted` (the 50th percentile's ranks are the median's) read only those.
    """
    flat = np.ravel(values)
    at = sorted({rank for percent in percents for rank in ranks(flat.size, percent)})
    if flat.dtype == np.float32 and flat.size and flat.min() >= 0:
        # Non-negative floats are in the order of their bits read as integers, which numpy
        # partitions in two thirds of the time (a zero's sign aside, as in numpy's own order).
        return np.partition(flat.view(np.int32), at).view(np.float32)
    return np.partition(flat, at)


def percentile_of_sorted(ordered: np.ndarray, percent: float) -> np.floating:
    """`np.percentile(values, percent)` (its linear method) of sorted values, bit for bit.

    numpy partitions the values again for every call; partitioning once (`sorted_at`) at
    every rank an image needs is faster. The arithmetic is numpy's own: the rank
    (n - 1) x percent / 100 between two neighbours, interpolated from the nearer one.
    """
    rank = (ordered.size - 1) * (percent / 100)
    below = ranks(ordered.size, percent)[0]
    if below == ordered.size - 1:
        return ordered[below]
    weight = rank - below
    low, high = ordered[below], ordered[below + 1]
    step = high - low
    return low + step * weight if weight < 0.5 else high - step * (1 - weight)


def first_window(ink: np.ndarray) -> int:
    """Step 6's opening window on the first pass: `BG_FRACTION` of the longer side, odd."""
    return max(3, int(BG_FRACTION * max(ink.shape)) | 1)


def background(ink: np.ndarray, window: int | None = None, extended: bool = False) -> np.ndarray:
    """Step 6: the paper's level under every pixel: a grey opening wider than any stroke.

    An opening (a min filter, then a max filter) removes bright features narrower than its
    window, the strokes, and keeps broad ones, tint, gradients and the edges of shadows,
    exactly where they are.

    Args:
        ink: light-on-dark gray levels, float.
        window: the filters' side in pixels; None for the first pass's `first_window`.
        extended: open `ink` extended by half the window on every side (edge pixels
            repeated) and crop the result back (step 9's edge test). Each filter repeating
            its own edge pixels instead leaves paper lit more brightly towards an edge
            (a ramp of light) as a bright band along that edge.
    """
    window = window or first_window(ink)
    if not extended:
        return square_filter(square_filter(ink, window, np.minimum), window, np.maximum)
    reach = window // 2
    paper = background(np.pad(ink, reach, mode="edge"), window)
    return np.ascontiguousarray(paper[reach : reach + ink.shape[0], reach : reach + ink.shape[1]])


def square_filter(values: np.ndarray, window: int, op: np.ufunc) -> np.ndarray:
    """`op` (np.minimum or np.maximum) over the `window` x `window` square centred on each pixel,
    the edge pixels repeated outwards: scipy.ndimage's minimum_filter and maximum_filter in
    "nearest" mode, bit for bit (min and max only pick values), in a third of their time here."""
    return np.ascontiguousarray(running(running(values, window, op).T, window, op).T)


def running(values: np.ndarray, window: int, op: np.ufunc) -> np.ndarray:
    """`op` over the `window` (odd) values centred on each down the columns, the edge ones repeated.

    Doubling: after j rounds, entry i holds `op` of the 2^j values from i on; the widest such
    run that fits (`span` <= window) and the one ending at the window's last value cover the window.
    """
    reach, count = window // 2, len(values)
    runs = np.concatenate([values[:1].repeat(reach, 0), values, values[-1:].repeat(reach, 0)])
    span = 1
    while 2 * span <= window:
        runs = op(runs[:-span], runs[span:])
        span *= 2
    return op(runs[:count], runs[window - span : window - span + count])


def normalise(ink: np.ndarray, dark_ink: bool = False, window: int | None = None,
              extended: bool = False) -> np.ndarray:
    """Steps 6 to 8: paper to 0, ink to 255, specks and noise removed.

    Args:
        ink: light-on-dark gray levels, float.
        dark_ink: the image was dark ink on light paper (inverted in step 5).
        window: step 6's opening window; None for the first pass's `first_window`.
        extended: step 6's opening over `ink` extended past its edges (`background`).

    Raises:
        NoDigitError: when nothing stands out as a digit.
    """
    paper = background(ink, window, extended)
    values = np.clip(ink - paper, 0, 255)
    if dark_ink:
        # Light falls on ink and paper alike: dividing by the paper's light (255 - paper
        # in the inverted image) gives ink in a shadow the contrast it has in full light.
        values = values * (255.0 / np.maximum(255.0 - paper, MIN_LIGHT))
    # The ink covers a minority of the pixels, so their median and MAD are the paper's noise.
    ordered = sorted_at(values, [50, PEAK_PERCENTILE])  # one partition serves both levels
    middle = float(median_of_sorted(ordered))
    mad = float(median(np.abs(ordered - middle)))
    floor = middle + NOISE_MADS * 1.4826 * mad
    # The strokes: pixels over halfway from the floor to the brightest (PEAK_PERCENTILE) ones.
    peak = float(percentile_of_sorted(ordered, PEAK_PERCENTILE))
    if peak - floor < MIN_CONTRAST:
        # Under PEAK_PERCENTILE's share of ink (a small digit in a large picture): the peak is
        # paper. Rarer pixels far above the paper's noise, which noise alone never reaches, are ink.
        sparse = float(percentile_of_sorted(sorted_at(values, [SPARSE_PERCENTILE]), SPARSE_PERCENTILE))
        if sparse - floor >= max(MIN_CONTRAST, SPARSE_SPREADS * 1.4826 * mad):
            peak = sparse
    if peak <= floor:  # the median and MAD are the ink's, not the paper's: step 10 adds paper
        raise NoPaperError("no digit found (blank or uniform image)")
    strokes = ordered[ordered > (floor + peak) / 2]
    if strokes.size == 0 or peak - floor < MIN_CONTRAST:
        raise NoDigitError("no digit found (blank or uniform image)")
    level = float(percentile_of_sorted(sorted_at(strokes, [INK_PERCENTILE]), INK_PERCENTILE))
    if level - floor < MIN_CONTRAST:
        raise NoDigitError("no digit found (blank or uniform image)")
    values = np.clip((values - floor) * (255.0 / (level - floor)), 0, 255)

    cleared = clear_lines(values)
    try:
        return clear_box(keep_digit(cleared))
    except NoDigitError:
        # Clearing left no digit: one line may be a lone stroke ("1"), but several are a
        # ruled page with nothing written on it.
        if cleared is values or line_count(values) > 1:
            raise
        return keep_digit(values)


def pieces(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 8-connected pieces of `mask`: their labels (0 = none), sizes, and which touch the border."""
    from scipy.ndimage import label

    components, count = label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    edge = np.unique(border(components))
    on_border = np.zeros(count, bool)
    on_border[edge[edge > 0] - 1] = True
    return components, sizes, on_border


def halo(values: np.ndarray, components: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """`values` within `HALO` 8-connected steps of the pieces `keep` marks (`keep[label]`), 0 elsewhere."""
    from scipy.ndimage import find_objects

    # Only the kept pieces' box and HALO around it can be non-zero: the rest is skipped.
    boxes = [box for box, kept in zip(find_objects(components), keep[1:]) if kept]
    height, width = values.shape
    top, left = max(min(b[0].start for b in boxes) - HALO, 0), max(min(b[1].start for b in boxes) - HALO, 0)
    bottom, right = min(max(b[0].stop for b in boxes) + HALO, height), min(max(b[1].stop for b in boxes) + HALO, width)
    box = slice(top, bottom), slice(left, right)
    # Within HALO 8-connected steps of a kept pixel = within a (2 HALO + 1)-wide square of one.
    near = square_filter(keep[components[box]], 2 * HALO + 1, np.maximum)
    out = np.zeros_like(values)
    out[box] = np.where(near, values[box], 0.0)
    return out


def specks(values: np.ndarray) -> np.ndarray:
    """Step 8's specks: keeps the digit's components and their halo, sets the rest to 0.

    Raises:
        NoDigitError: when no component is large enough to be a digit.
    """
    components, sizes, on_border = pieces(values > SPECK_LEVEL)
    # A shadow's edge or a corner of the desk reaches the border; a framed digit does not.
    inside = np.where(on_border, 0, sizes)
    if inside.max(initial=0) >= MIN_DIGIT_PIXELS:
        sizes = inside
    if sizes.max(initial=0) < MIN_DIGIT_PIXELS:
        raise NoDigitError("no digit found (only specks or noise)")
    keep = np.zeros(len(sizes) + 1, bool)
    keep[1:] = sizes >= SPECK_FRACTION * sizes.max()
    return halo(values, components, keep)


def keep_digit(values: np.ndarray) -> np.ndarray:
    """Step 8's specks, and the digit's cores when what they keep reaches the border.

    A shadow's edge joined to the digit reaches the border with it, so the border rule of
    `specks` cannot drop it; its plateau is fainter than the ink, so among the pixels above
    `CORE_LEVEL` the digit stands apart from the border. When those pieces apart from it
    (the largest at least `MIN_DIGIT_PIXELS`) outweigh every piece on it (each under
    `SPECK_FRACTION` of that largest), the specks step runs again on the pixels within `HALO`
    of the pieces apart that it would keep. A digit cut out to its box keeps its full-strength
    strokes on the border, and stays as it was.

    Raises:
        NoDigitError: when no component is large enough to be a digit.
    """
    kept = specks(values)
    if not border(kept > SPECK_LEVEL).any():  # most pictures
        return kept
    components, sizes, on_border = pieces(values > CORE_LEVEL)
    inside = np.where(on_border, 0, sizes)
    largest = inside.max(initial=0)
    if largest < MIN_DIGIT_PIXELS or sizes[on_border].max(initial=0) >= SPECK_FRACTION * largest:
        return kept
    keep = np.zeros(len(sizes) + 1, bool)
    keep[1:] = inside >= SPECK_FRACTION * largest
    # Every kept core is above SPECK_LEVEL and one has MIN_DIGIT_PIXELS: `specks` finds a digit.
    return specks(halo(values, components, keep))


def row_lines(ink: np.ndarray, box: bool = False) -> np.ndarray:
    """Step 8's ruled lines along the rows of a mask: the pixels of the line slices.

    With `box`, the mask is a box's bounding box: turned by the lines' slope k / 64, a side
    stops short of its ends by as much as the sides of the other direction, turned alike,
    drift across it (height x |k| / 64, rounded up) more.
    """
    height, width = ink.shape
    found = np.zeros_like(ink)
    # A slice holds one pixel per column and spans at most `span` rows, so it lies within two
    # neighbouring blocks of `span` rows: when no two are lit in enough columns between them,
    # no slope holds a line: most pictures stop here.
    least = LINE_SHARE * width / 2
    if np.count_nonzero(ink.any(axis=0)) < least:
        return found
    span = min(height, 1 + max(abs(((width - 1) * k + 32) >> 6) for k in range(-LINE_SLOPES, LINE_SLOPES + 1)))
    blocks = np.zeros((-(-height // span) * span, width), bool)
    blocks[:height] = ink
    blocks = blocks.reshape(-1, span, width).any(axis=1)  # lit columns per block
    if (blocks[1:] | blocks[:-1] if len(blocks) > 1 else blocks).sum(axis=1).max() < least:
        return found
    ys, xs = np.nonzero(ink)
    size = height + 2 * width + 1  # slice numbers run from 0 (+ width keeps them positive)
    # Every slope at once: row i of `counts` counts the slices of slope k = i - LINE_SLOPES;
    # floor(x k / 64 + 0.5) in integers, so every runtime finds the same slices. Column x's
    # pixel at row y is in slice y + top[i, x].
    slopes = np.arange(-LINE_SLOPES, LINE_SLOPES + 1)[:, None]
    top = width - ((np.arange(width) * slopes + 32) >> 6) + size * np.arange(len(slopes))[:, None]
    slices = top[:, xs] + ys
    counts = np.bincount(slices.ravel(), minlength=size * len(slopes)).reshape(len(slopes), size)
    # The slope along which the lines lie gathers their pixels into the fewest, fullest
    # slices: the largest sum of squared counts (the first such slope on a tie).
    best = int(np.argmax((counts.astype(np.int64) ** 2).sum(axis=1)))
    k, counts = best - LINE_SLOPES, counts[best]
    if counts.max() < least:  # no slice of this slope can be a line
        return found
    # Slice r holds column x's pixel at row r - width + floor(x k / 64 + 0.5) when that row is
    # inside the picture: column x reaches the slices first[x] to first[x] + height - 1.
    columns = np.arange(width)
    first = top[best] - size * best
    # Each slice's pixels inside the picture: how many columns reach it.
    length = np.cumsum(np.bincount(first, minlength=size + 1) - np.bincount(first + height, minlength=size + 1))[:size]
    lines = (counts >= LINE_SHARE * length) & (2 * length >= width)
    # A line is thin: the slices LINE_WIDTH away on both sides are mostly paper (a shadow's
    # edge is a broad ramp, lit there too), or outside the picture.
    paper = np.ones(size + 2 * LINE_WIDTH, bool)
    paper[LINE_WIDTH:-LINE_WIDTH] = 2 * counts <= length
    lines &= paper[:size] & paper[2 * LINE_WIDTH :]
    # A line runs from edge to edge: lit within LINE_END of the width of both its ends (in it
    # or the slices beside it, where a line turned between two slopes drifts).
    ends = int(LINE_END * width) + ((height * abs(k) + 63) // 64 if box else 0)
    lit_slices = slices[best] - size * best
    for r in np.flatnonzero(lines):
        inside = columns[(first <= r) & (r < first + height)]
        lit = xs[np.abs(lit_slices - r) <= 1]
        lines[r] = lit.min() - inside.min() <= ends and inside.max() - lit.max() <= ends
    on_line = lines[lit_slices]
    found[ys[on_line], xs[on_line]] = True
    return found


def lines_of(values: np.ndarray, box: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Step 8's ruled lines among the pixels above `LINE_LEVEL`: the row lines' and the column lines' masks."""
    lit = values > LINE_LEVEL
    return row_lines(lit, box), row_lines(lit.T, box).T


def line_count(values: np.ndarray) -> int:
    """How many ruled lines step 8 finds: the 8-connected pieces of the lines' pixels."""
    from scipy.ndimage import label

    rows, columns = lines_of(values)
    return label(rows | columns, structure=np.ones((3, 3), bool))[1]


def clear_lines(values: np.ndarray, box: bool = False) -> np.ndarray:
    """Step 8's ruled lines set to 0, except where a stroke crosses them.

    A ruled line crosses the whole picture almost straight; a digit's stroke, however long,
    fills less than `LINE_SHARE` of the picture's width or stops short of its ends. A line's
    pixels and their 8-neighbours are cleared unless the pixels `LINE_WIDTH` away across the
    line, on both sides, are strokes (above `SPECK_LEVEL`, not on a line of the other
    direction): there a stroke crosses the line. With `box`, `values` is a box's bounding box
    (see `row_lines`).
    """
    from scipy.ndimage import binary_dilation, shift

    rows, columns = lines_of(values, box)
    if not (rows.any() or columns.any()):  # most pictures
        return values
    above = values > SPECK_LEVEL
    clear = np.zeros_like(rows)
    # On squared paper the lines of the other direction are no strokes.
    for lines, (dy, dx), strokes in ((rows, (LINE_WIDTH, 0), above & ~columns),
                                      (columns, (0, LINE_WIDTH), above & ~rows)):
        if lines.any():
            # strokes[y - dy, x - dx] and strokes[y + dy, x + dx], False outside the picture.
            crossing = shift(strokes, (dy, dx), order=0, cval=False) & shift(strokes, (-dy, -dx), order=0, cval=False)
            clear |= binary_dilation(lines, structure=np.ones((3, 3), bool)) & ~crossing
    return np.where(clear, 0.0, values) if clear.any() else values


def clear_box(values: np.ndarray) -> np.ndarray:
    """Step 8's box: a box drawn around the digit (a form's, or one a user drew) is cleared.

    The box is looked for around all the pixels above `SPECK_LEVEL`, then around each of
    their 8-connected pieces, largest first (a shadow's remnant may lie outside the box), in
    bounding boxes at least `MIN_BOX` pixels tall and wide. In one, the ruled lines are found
    as on the whole picture; when row lines lie within `LINE_WIDTH` of its top and of its
    bottom and column lines within `LINE_WIDTH` of its left and right, its lit pixels are a
    box with the digit inside: the lines are cleared (where no stroke crosses them), the
    specks step runs again on what is inside, and what is outside is dropped. A digit never
    has straight lines on all four sides of its own box; should clearing them leave nothing,
    or pieces within `LINE_WIDTH` of the box's edge (the corners of a "0" drawn as a
    rectangle), the next bounding box is tried, and after the last the values stay.
    """
    from scipy.ndimage import find_objects

    lit = values > SPECK_LEVEL
    whole = rows, cols = ink_box(lit)
    if min(rows.stop - rows.start, cols.stop - cols.start) < MIN_BOX:  # nor is any piece's box
        return values
    components, sizes, _ = pieces(lit[whole])
    boxes = [(slice(rows.start + r.start, rows.start + r.stop), slice(cols.start + c.start, cols.start + c.stop))
             for r, c in find_objects(components)]
    # Largest first, the first on a tie (a stable sort); a lone piece's box is `whole` again.
    for box in [whole] + [boxes[i] for i in np.argsort(-sizes, kind="stable") if len(sizes) > 1]:
        inside = box_contents(values[box])
        if inside is not None:
            out = np.zeros_like(values)
            out[box] = inside
            return out
    return values


def box_contents(crop: np.ndarray) -> np.ndarray | None:
    """What `clear_box` keeps of one bounding box, or None when its lit pixels hold no box."""
    height, width = crop.shape
    if min(height, width) < MIN_BOX:  # a digit's own strokes would pass for sides
        return None
    # A side is a line (at least LINE_SHARE of half the crop's width lit, one pixel a column)
    # that starts within LINE_WIDTH of the edge and drifts at most LINE_SLOPES / 64 across:
    # when an edge's band is lit in fewer columns, there is no box (most digits stop here).
    lit = crop > LINE_LEVEL
    deep, wide = LINE_WIDTH + (width * LINE_SLOPES) // 64 + 2, LINE_WIDTH + (height * LINE_SLOPES) // 64 + 2
    for band, span in ((lit[:deep], width), (lit[-deep:], width),
                       (lit[:, :wide].T, height), (lit[:, -wide:].T, height)):
        if np.count_nonzero(band.any(axis=0)) < LINE_SHARE * span / 2:
            return None
    across = row_lines(lit, box=True)
    if not (across[:LINE_WIDTH].any() and across[-LINE_WIDTH:].any()):
        return None
    down = row_lines(lit.T, box=True).T
    if not (down[:, :LINE_WIDTH].any() and down[:, -LINE_WIDTH:].any()):
        return None
    try:
        inside = keep_digit(clear_lines(crop, box=True))
    except NoDigitError:
        return None
    # What a box holds stays clear of its sides; the corners of a boxy "0" would not.
    rows, cols = ink_box(inside > SPECK_LEVEL)
    if min(rows.start, cols.start, height - rows.stop, width - cols.stop) < LINE_WIDTH:
        return None
    return inside


def stroke_width(values: np.ndarray) -> float:
    """Step 9's measure: the strokes' mean width, from their area and outline.

    A stroke of width t and length L covers about L t pixels, of which about 2 L lie on its
    outline (a pixel above `SPECK_LEVEL` with a 4-neighbour, or the image's edge, not above).
    """
    ink = values > SPECK_LEVEL
    # Inside the outline: the pixel and its four neighbours lit (the image's edge is not).
    inside = ink[1:-1, 1:-1] & ink[:-2, 1:-1] & ink[2:, 1:-1] & ink[1:-1, :-2] & ink[1:-1, 2:]
    area = int(ink.sum())
    outline = area - int(inside.sum())
    return 2.0 * area / max(outline, 1)


def first_pass(ink: np.ndarray, dark_ink: bool = False) -> np.ndarray:
    """Steps 6 to 8 with the first pass's window, then step 9's edge test.

    When what they keep touches the border, it may be no digit but the light: step 6's
    opening repeats the picture's edge pixels in each of its filters, so on paper lit more
    brightly towards an edge it falls short of the paper along that edge, by up to the light's
    slope times half the window, and leaves a bright band there. Opened over the picture
    extended past its edges, the ramp of light continues and the band is gone; when steps 6
    to 8 then find no digit, there is none. (The extended opening is the test only: it reads
    some digits near the edge less well, so the first pass's values stay the result.)

    Raises:
        NoDigitError: when no digit is found, or only a band of light along an edge.
    """
    values = normalise(ink, dark_ink)
    if max(ink.shape) >= EDGE_SIDE and border(values > SPECK_LEVEL).any():
        try:
            normalise(ink, dark_ink, extended=True)
        except NoPaperError:  # most of the picture is ink: step 10 decides
            pass
        except NoDigitError:
            raise NoDigitError("no digit found (only uneven light along an edge)") from None
    return values


def refine(ink: np.ndarray, values: np.ndarray, dark_ink: bool = False) -> np.ndarray:
    """Step 9: steps 6 to 8 again with an opening a few stroke widths wide, when that is narrower.

    Args:
        ink: step 5's light-on-dark gray levels.
        values: the first pass's result (`first_pass(ink, dark_ink)`).
        dark_ink: the image was dark ink on light paper.

    Returns:
        The second pass's result, or `values` when the window would not be narrower or the
        second pass finds no digit.
    """
    window = max(3, int(STROKE_WINDOWS * stroke_width(values)) | 1)
    if window >= first_window(ink):
        return values
    try:
        return normalise(ink, dark_ink, window)
    except NoDigitError:  # the first pass found one: keep it
        return values


def roughness(ink: np.ndarray) -> float:
    """Step 10's test: how much neighbouring pixels differ, relative to how much pixels differ
    from their mean (0 for a uniform picture).

    The mean absolute difference of the horizontal neighbours and that of the vertical ones,
    averaged (one of them on a picture one pixel wide or tall), over the mean absolute
    deviation. Independent pixels, noise, give about 4/3 (uniform levels) to 1.41 (normal
    ones); a digit's strokes are wider than a pixel, so most neighbours are alike: at most 0.31
    for `tight`'s digits cut out to their box, and at most 1.00 for the UCI pen digits' raw
    8 x 8 bitmaps and 0.96 for MNIST's test digits cut out to their box.
    """
    levels = ink.astype(np.float64)
    spread = float(np.abs(levels - levels.mean()).mean())
    steps = [float(np.abs(np.diff(levels, axis=axis)).mean()) for axis in (0, 1) if levels.shape[axis] > 1]
    return sum(steps) / len(steps) / spread if steps and spread > 0 else 0.0


def framed(ink: np.ndarray) -> np.ndarray:
    """Step 10's frame: `ink` inside `MARGIN` x its longer side of its own paper on every side.

    The frame is step 6's first-pass background carried straight out from the nearest edge
    pixel, so the added paper has the level the paper has there: no step at the old edge.
    """
    margin = int(MARGIN * max(ink.shape))
    out = np.pad(background(ink), margin, mode="edge")
    out[margin : margin + ink.shape[0], margin : margin + ink.shape[1]] = ink
    return out


def read_ink(ink: np.ndarray, dark_ink: bool = False) -> np.ndarray:
    """Steps 6 to 10: light-on-dark gray levels to the digit alone, paper 0, ink up to 255.

    Steps 6 to 9 learn the paper from the picture, which must be mostly paper. When step 7
    finds that it is not (`NoPaperError`: a digit cut out to its own box), they run again on the
    picture inside a frame of its own paper (`framed`).

    Raises:
        NoDigitError: when no digit is found (the first pass's reason when the frame finds none).
    """
    try:
        return refine(ink, first_pass(ink, dark_ink), dark_ink)
    except NoPaperError as refusal:
        if roughness(ink) >= NOISE_ROUGHNESS:  # no paper and no strokes: noise all over
            raise NoDigitError("no digit found (only noise)") from None
        wide = framed(ink)  # MARGIN = 0 frames nothing: the same refusal again
        try:
            return refine(wide, first_pass(wide, dark_ink), dark_ink)
        except NoDigitError:
            raise refusal from None


def ink_box(values: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of the non-zero pixels, as row and column slices."""
    rows, cols = np.flatnonzero(values.any(1)), np.flatnonzero(values.any(0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def even_strokes(values: np.ndarray) -> np.ndarray:
    """Step 11: strokes far wider or thinner than MNIST's, once fitted, are brought towards its width.

    MNIST's strokes are 2-4 px wide in the 20-px box. Wider ones (over `THICK_STROKE`) are
    mostly soft edge, from blur or a small bitmap scaled up: levels up to `SPECK_LEVEL` are
    set to 0 and the rest stretched back to 0-255 (step 8 kept at least `MIN_DIGIT_PIXELS`
    pixels above `SPECK_LEVEL`, so the digit never vanishes). Thinner ones (under
    `THIN_STROKE`: a fine pen on a large canvas) would fade to a faint trace in the fit: a
    grey dilation (max filter, edges repeated) widens them to about 2 x `THIN_STROKE`.
    """
    rows, cols = ink_box(values)
    longer = max(rows.stop - rows.start, cols.stop - cols.start)
    width = stroke_width(values) * BOX / longer  # in pixels of the 28 x 28 input
    if width > THICK_STROKE:
        return np.clip((values - SPECK_LEVEL) * (255.0 / (255 - SPECK_LEVEL)), 0, 255)
    if width < THIN_STROKE:
        window = max(3, int((2 * THIN_STROKE - width) * longer / BOX) | 1)
        return square_filter(values, window, np.maximum)
    return values


def area_resize(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resamples by area: each output pixel averages the source area it covers (pixels as squares)."""
    out = values
    for axis, n in enumerate(shape):
        m = out.shape[axis]
        edges = np.arange(n + 1) * (m / n)
        lo, hi = edges[:-1], edges[1:]
        src = np.arange(m)
        # weights[i, j]: the overlap of output pixel i's [lo, hi) with source pixel j's [j, j+1).
        weights = np.clip(np.minimum(hi[:, None], src[None, :] + 1) - np.maximum(lo[:, None], src[None, :]), 0, None)
        weights /= weights.sum(axis=1, keepdims=True)
        out = np.tensordot(weights, out, axes=([1], [axis]))
        if axis == 1:
            out = out.T
    return out


def round_half_up(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5)


def centre_shift(offset: float) -> int:
    """Step 13's shift: `floor(offset + 0.5)`, with `offset` first rounded to `CENTRE_DECIMALS`.

    A digit symmetric about its middle has its centre of mass exactly on a half pixel, where
    sums taken in another order (numpy's pairwise sums, another runtime's running sums) land
    a hair on either side; rounded first, every runtime sees the same half and shifts alike.
    """
    scale = 10.0**CENTRE_DECIMALS
    return int(np.floor(np.floor(offset * scale + 0.5) / scale + 0.5))


def fit_and_centre(values: np.ndarray) -> np.ndarray:
    """Steps 12 and 13: crops the ink, fits it into `BOX`, centres it by mass in `SIZE` x `SIZE`.

    Returns:
        uint8 `[SIZE, SIZE]`, light digit on black.
    """
    crop = values[ink_box(values)]
    scale = BOX / max(crop.shape)
    h = max(1, int(round_half_up(crop.shape[0] * scale)))
    w = max(1, int(round_half_up(crop.shape[1] * scale)))
    digit = crop if (h, w) == crop.shape else area_resize(crop, (h, w))
    ys, xs = np.indices(digit.shape)
    mass = float(digit.sum())
    top, left = (SIZE - h) // 2, (SIZE - w) // 2
    dy = centre_shift(CENTRE - (top + (ys * digit).sum() / mass))
    dx = centre_shift(CENTRE - (left + (xs * digit).sum() / mass))
    # Keep the whole digit in the frame.
    top, left = min(max(top + dy, 0), SIZE - h), min(max(left + dx, 0), SIZE - w)
    frame = np.zeros((SIZE, SIZE), np.float64)
    frame[top : top + h, left : left + w] = digit
    return np.clip(round_half_up(frame), 0, 255).astype(np.uint8)


def digit_of(gray: np.ndarray, polarity: str = "auto") -> tuple[np.ndarray, tuple[slice, slice], tuple[slice, slice]]:
    """Steps 5 to 11: the digit alone (paper 0, ink up to 255), its box in `gray`'s pixels, and
    the part of `gray` it was read from (step 5's sheet, or all of it)."""
    gray = np.asarray(gray, np.float32)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got shape {gray.shape}")
    whole = (slice(0, gray.shape[0]), slice(0, gray.shape[1]))
    piece = sheet_piece(gray)
    if piece is not None:
        sheet, size, area = piece
        if size >= SHEET_FILL * area:
            return digit_on(gray, sheet, polarity)
        if size >= SHADED_SHEET_FILL * area:
            try:
                return digit_on(gray, sheet, polarity)
            except NoDigitError:  # a bold light digit fills its box almost as a shaded sheet does
                pass
    return digit_on(gray, whole, polarity)


def digit_on(gray: np.ndarray, sheet: tuple[slice, slice],
             polarity: str) -> tuple[np.ndarray, tuple[slice, slice], tuple[slice, slice]]:
    """Steps 5 (polarity) to 11 on the `sheet` part of `gray`: `digit_of`'s result."""
    top, left = sheet[0].start, sheet[1].start
    gray = gray[sheet]
    if polarity == "auto":
        polarity = polarity_of(gray)
    dark_ink = polarity == "dark-on-light"
    ink = 255.0 - gray if dark_ink else gray
    values = even_strokes(read_ink(ink, dark_ink))
    rows, cols = ink_box(values)
    return values, (slice(rows.start + top, rows.stop + top), slice(cols.start + left, cols.stop + left)), sheet


def digit_shaped(pixels: np.ndarray) -> np.ndarray:
    """Step 15: returns the 28 x 28 `pixels` unless their lit part is a bar or a block.

    Raises:
        NoDigitError: the lit pixels' box is flat (`FLAT_SHAPE`) or solid (`SOLID_SHAPE`).
    """
    lit = pixels > SPECK_LEVEL
    if not lit.any():
        return pixels
    rows, cols = ink_box(lit)
    h, w = rows.stop - rows.start, cols.stop - cols.start
    if h < FLAT_SHAPE * w or (h <= w and lit.sum() >= SOLID_SHAPE * h * w):
        raise NoDigitError("no digit found (a bar or a block, not a digit's shape)")
    return pixels


def preprocess_gray(gray: np.ndarray, polarity: str = "auto") -> np.ndarray:
    """Steps 5 to 13 and 15: gray levels (0..255, any size) to the model's uint8 `[28, 28]` input."""
    return digit_shaped(fit_and_centre(digit_of(gray, polarity)[0]))


def preprocess_image(image: Image.Image, polarity: str = "auto") -> np.ndarray:
    """Steps 2 to 15 for a decoded Pillow image (EXIF orientation applied, full size)."""
    image = plain_mode(image)
    factor = reduction(image, WORK_SIDE)
    values, (rows, cols), (sheet_rows, sheet_cols) = digit_of(to_gray(reduce_to(image, WORK_SIDE)), polarity)
    first = fit_and_centre(values)
    longer = max(rows.stop - rows.start, cols.stop - cols.start)
    if factor == 1 or longer > ZOOM_SIDE:
        return digit_shaped(first)
    # Step 14: a small digit in a reduced picture, read again from the picture's own pixels,
    # from a crop around it that stays on the sheet.
    margin = int(ZOOM_MARGIN * longer)
    crop = image.crop((max(cols.start - margin, sheet_cols.start) * factor,
                       max(rows.start - margin, sheet_rows.start) * factor,
                       min(min(cols.stop + margin, sheet_cols.stop) * factor, image.width),
                       min(min(rows.stop + margin, sheet_rows.stop) * factor, image.height)))
    try:
        return preprocess_gray(to_gray(reduce_to(crop, WORK_SIDE)), polarity)
    except NoDigitError:
        return digit_shaped(first)


def preprocess_file(path: str | os.PathLike, polarity: str = "auto") -> np.ndarray:
    """The whole contract: an image file to the model's uint8 `[28, 28]` input.

    Raises:
        ImageFileError: the file cannot be read as an image.
        NoDigitError: the image holds no digit.
    """
    return preprocess_image(decode(path), polarity)
