"""A development set of real-world digit images, made from a seed (never committed).

Eight kinds in nine parts with their own sources and seeds:
- `photo`: MNIST test digits re-rendered as photographs: a random scale and place on a
  larger canvas, tinted paper with a gradient and a soft shadow, thicker or thinner strokes,
  a small rotation, blur, sensor noise and JPEG compression; a quarter are light chalk on a
  dark board.
- `pen`: the UCI pen digits that ship with scikit-learn (`load_digits`, 8x8, other writers),
  upscaled onto a margin, half dark ink on white, half light on black.
- `lined`: photos as above, in ink, on ruled or squared notebook paper whose lines cross the
  digit (the `lined` part only).
- `desk`: photos as above, in ink, of a sheet lying on a darker desk that shows around it
  (the `desk` part only).
- `tight`: MNIST test digits cut out to their own box, with no margin, upscaled 2-6x, half
  dark on white (the `tight` part only), as an app that crops a digit out of a form sends them.
- `far`: photos as above, in ink, of a digit 5-30% as tall as a 480-1,200 px picture, as a
  photo taken from farther away shows it (the `far` part only).
- `blank`: photos as above with no digit at all, plain, ruled, on a desk or large, whose
  right answer is a refusal ("no digit found"); their label is `NO_DIGIT` (the `blank` part
  only).
- `boxed`: photos as above, in ink, of a digit written inside a box drawn or printed around
  it (a form's field), the box at most a few degrees turned, sometimes touching the digit
  (the `boxed` part only).
- `canvas`: MNIST test digits drawn in a drawing app: thick flat strokes of any colour on a
  white (or dark) phone-shaped canvas, anywhere on it (the `canvas` part only).
- `shadow`: photos as above, in ink, with a hard-edged shadow across the sheet (the `shadow`
  part only).
- `tilted`: desk photos seen at a slight perspective, the sheet's edges askew (the `tilted`
  part only).

`dev/` is for tuning the preprocessing constants and the training recipe; `heldout/` and
`final/` are only for reporting. The photo digits come from the MNIST test split (the model
never trained on them): test images 0-1999 for `dev`, 5000-6999 for `heldout`, 7000-8999 for
`final`; the pen digits are split in halves (there are only 1,797), so `final` renders the
second half again with its own seed: new pictures of digits `heldout` also holds. `lined/`
(test images 9000-9999, no pen digits) measures the contract's ruled-line step, `desk/`
(test images 2000-2999, no pen digits) its sheet step, `tight/` (test images 3000-3999, no
pen digits) its margin step, `far/` (test images 4000-4999, no pen digits) small digits,
`blank/` (1,000 pictures, no digits) the refusal of pictures with none, `boxed/` (test images
1000-1999 again, the second half of `dev`'s, in new pictures) the clearing of a box around
the digit, `canvas/` (test images 6000-6999 again) drawing-app canvases, `shadow/` (test images
8000-8999 again) hard-edged shadows across the sheet, `tilted/` (test images 3000-3999 again) a
sheet on a desk seen at a slight perspective.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

PARTS = {
    # part: (seed offset, MNIST test slice, which half of the pen digits)
    "dev": (0, slice(0, 2000), 0),
    "heldout": (1, slice(5000, 7000), 1),
    "final": (2, slice(7000, 9000), 1),
    "lined": (3, slice(9000, 10000), None),
    "desk": (4, slice(2000, 3000), None),
    "tight": (5, slice(3000, 4000), None),
    "far": (6, slice(4000, 5000), None),
    "blank": (7, slice(0, 1000), None),  # the slice counts pictures: none of them holds a digit
    "boxed": (8, slice(1000, 2000), None),
    "canvas": (9, slice(6000, 7000), None),
    "shadow": (10, slice(8000, 9000), None),
    "tilted": (11, slice(3000, 4000), None),
}
NO_DIGIT = -1  # the label of a picture without a digit: refusing it is the right answer


def paper(height: int, width: int, rng: np.random.Generator, dark: bool) -> tuple[np.ndarray, np.ndarray]:
    """A tinted sheet (or a dark board) with a linear gradient, and a soft shadow to lay over it.

    Returns:
        The sheet, RGB float `[height, width, 3]`, and the shadow's light factor `[height, width]`
        (1 where unshaded), which darkens the ink as much as the paper.
    """
    base = rng.uniform(25, 75) if dark else rng.uniform(165, 250)
    tint = base * (1 + rng.uniform(-0.1, 0.1, 3))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xs / width - 0.5) + np.sin(angle) * (ys / height - 0.5)) * rng.uniform(0, 60)
    sheet = tint[None, None, :] + ramp[..., None]
    shade = np.ones((height, width), np.float32)
    if rng.random() < 0.5:  # a soft-edged shadow over part of the picture
        edge = np.cos(angle + rng.uniform(-1, 1)) * (xs - rng.uniform(0, width)) + np.sin(angle) * (
            ys - rng.uniform(0, height))
        shade = 1 - rng.uniform(0.15, 0.45) / (1 + np.exp(-edge / rng.uniform(3, 15)))
    return sheet, shade


def ruling(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A notebook's lines: ruled, or squared (half the time), slightly turned; coverage 0..1.

    Lines 1-3 pixels wide, 12-30% of the shorter side apart (so they cross the digit), turned
    by up to 5 degrees as a hand-held photo turns them.
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = np.deg2rad(rng.uniform(-5, 5))
    gap = rng.uniform(0.12, 0.3) * min(height, width)
    thickness = rng.uniform(1, 3)
    across = [ys * np.cos(angle) - xs * np.sin(angle)]
    if rng.random() < 0.5:
        across.append(xs * np.cos(angle) + ys * np.sin(angle))
    coverage = np.zeros((height, width), np.float32)
    for position in across:
        distance = np.abs((position - rng.uniform(0, gap)) % gap - gap / 2)  # from the line's centre
        coverage = np.maximum(coverage, np.clip(thickness / 2 + 0.5 - (gap / 2 - distance), 0, 1))
    return coverage


def photo(digit: np.ndarray, rng: np.random.Generator, lined: bool = False, desk: bool = False,
          far: bool = False, boxed: bool = False, **scene) -> tuple[Image.Image, str]:
    """An MNIST digit (uint8 28x28, light on dark) photographed on paper (`photo_with_ink`'s picture)."""
    picture, polarity, _ = photo_with_ink(digit, rng, lined=lined, desk=desk, far=far, boxed=boxed, **scene)
    return picture, polarity


def photo_with_ink(digit: np.ndarray, rng: np.random.Generator, lined: bool = False, desk: bool = False,
                   far: bool = False, boxed: bool = False, tilted: bool = False,
                   hard_shadow: bool = False) -> tuple[Image.Image, str, np.ndarray]:
    """An MNIST digit (uint8 28x28, light on dark) photographed on paper, and where its ink lies.

    Args:
        digit: the MNIST digit.
        rng: the part's random generator.
        lined: on ruled or squared paper, in ink.
        desk: a sheet covering 55-90% of the picture's height and width on a darker desk, in ink.
        far: a digit 5-30% of the shorter side on a 480-1,200 px picture, in ink.
        boxed: inside a box drawn around the digit, in ink.
        tilted: the sheet (with `desk`) seen at a slight perspective: each corner moved by up to
            8% of the side, so the sheet's edges run askew.
        hard_shadow: a hard-edged shadow (a hand's or a phone's) across part of the picture.

    Returns:
        The RGB image, its polarity ("dark-on-light" for ink, "light-on-dark" for chalk) and the
        digit's ink coverage (float 0..1, the image's height and width; a drawn box is not ink).
    """
    low, high = (480, 1200) if far else (96, 320)
    height, width = int(rng.integers(low, high)), int(rng.integers(low, high))
    box = (0, 0, height, width)  # the sheet: top, left, height, width
    if desk:
        box_h, box_w = int(height * rng.uniform(0.55, 0.9)), int(width * rng.uniform(0.55, 0.9))
        box = (int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1)), box_h, box_w)
    side = int(rng.uniform(*((0.05, 0.3) if far else (0.35, 0.8))) * min(box[2], box[3]))
    ink = Image.fromarray(digit).resize((side, side), Image.BICUBIC)
    # Thinner or thicker strokes, by a filter about a tenth of MNIST's stroke width.
    stroke = rng.choice(["thin", "plain", "plain", "thick"])
    size = (side // 28) | 1
    if stroke == "thin" and size >= 3:
        ink = ink.filter(ImageFilter.MinFilter(size))
    elif stroke == "thick" and size >= 3:
        ink = ink.filter(ImageFilter.MaxFilter(size))
    ink = ink.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR, expand=True)
    alpha = np.zeros((height, width), np.float32)
    h, w = min(ink.height, box[2]), min(ink.width, box[3])
    top, left = box[0] + int(rng.integers(0, box[2] - h + 1)), box[1] + int(rng.integers(0, box[3] - w + 1))
    alpha[top : top + h, left : left + w] = np.asarray(ink, np.float32)[:h, :w] / 255.0
    digit_ink = alpha.copy()
    if boxed:
        alpha = np.maximum(alpha, box_around((top, left, h, w), alpha.shape, rng))
    dark = rng.random() < 0.25 and not (lined or desk or far or boxed)
    sheet, shade = paper(height, width, rng, dark)
    if lined:  # blue or grey lines, fainter than the ink
        lines = float(sheet.mean()) * rng.uniform(0.55, 0.85) * np.array([1, 1, rng.uniform(1, 1.4)])
        coverage = ruling(height, width, rng)[..., None]
        sheet = sheet * (1 - coverage) + lines[None, None, :] * coverage
    level = float(sheet.mean())
    if dark:  # chalk: well above the board
        colour = level + (255 - level) * rng.uniform(0.5, 1.0, 3)
    else:  # pen or pencil: a fraction of the paper's light, blue or black
        colour = level * rng.uniform(0.05, 0.5) * np.array([1, 1, rng.uniform(1, 1.8)])
    image = sheet * (1 - alpha[..., None]) + colour[None, None, :] * alpha[..., None]
    if desk:  # wood, grey or black around the sheet
        table = np.array([1.0, 0.8, 0.6]) if rng.random() < 0.5 else np.ones(3)
        around = np.ones((height, width), bool)
        around[box[0] : box[0] + box[2], box[1] : box[1] + box[3]] = False
        image[around] = rng.uniform(15, 110) * table
        if tilted:
            image, digit_ink = tilt(image, digit_ink, rng)
    if hard_shadow:
        shade = shade * hard_shade(height, width, rng)
    image = image * shade[..., None]
    image = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))
    noisy = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(2, 12), (height, width, 1))
    polarity = "light-on-dark" if dark else "dark-on-light"
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), polarity, digit_ink


def tilt(image: np.ndarray, ink: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The picture and its ink seen at a slight perspective (corners moved up to 8% of the side).

    What comes into view past the picture's edge is the desk, the colour of the corner pixel.
    """
    height, width = ink.shape
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    moved = corners + rng.uniform(-0.08, 0.08, (4, 2)) * [width, height]
    # The perspective's 8 coefficients map each output corner to where it is seen in the input.
    rows = []
    for (x, y), (u, v) in zip(corners, moved):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
    coefficients = np.linalg.solve(np.array(rows), moved.reshape(-1))
    desk = tuple(int(c) for c in np.clip(image[0, 0], 0, 255))
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).transform(
        (width, height), Image.PERSPECTIVE, coefficients, Image.BILINEAR, fillcolor=desk)
    coverage = Image.fromarray(ink, mode="F").transform((width, height), Image.PERSPECTIVE, coefficients,
                                                        Image.BILINEAR, fillcolor=0)
    return np.asarray(picture, np.float32), np.asarray(coverage, np.float32)


def hard_shade(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The light factor of a hard-edged shadow: a polygon from one side, 25-60% darker."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    reach = (np.cos(angle) * (xs / width - 0.5) + np.sin(angle) * (ys / height - 0.5))
    # A straight edge, bent once (a hand's or a phone's outline), blurred by about a pixel.
    bend = rng.uniform(-0.4, 0.4) * np.abs(-np.sin(angle) * (xs / width - 0.5) + np.cos(angle) * (ys / height - 0.5))
    edge = (reach + bend - rng.uniform(-0.3, 0.3)) * min(height, width) / rng.uniform(0.5, 1.5)
    return 1 - rng.uniform(0.25, 0.6) / (1 + np.exp(-np.clip(edge, -50, 50)))


def canvas(digit: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, np.ndarray]:
    """An MNIST digit drawn in a drawing app: thick strokes of any colour, anywhere on the canvas.

    A phone-shaped or square canvas 200-900 px, white (a fifth dark), the digit 25-80% of the
    shorter side, its strokes thickened to 1.5-3 times MNIST's, in one flat colour, no noise.

    Returns:
        The RGB image and the digit's ink coverage (float 0..1).
    """
    short = int(rng.integers(200, 900))
    long = int(short * rng.choice([1.0, 4 / 3, 16 / 9, 2.0]))
    height, width = (long, short) if rng.random() < 0.6 else (short, long)
    side = int(rng.uniform(0.25, 0.8) * min(height, width))
    ink = Image.fromarray(digit).resize((side, side), Image.BICUBIC)
    size = max(3, int(side / 28 * rng.uniform(0.5, 2.2)) | 1)
    ink = ink.filter(ImageFilter.MaxFilter(size)).filter(ImageFilter.GaussianBlur(side / 200))
    alpha = np.zeros((height, width), np.float32)
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    alpha[top : top + side, left : left + side] = np.clip(np.asarray(ink, np.float32) / 255.0 * 1.5, 0, 1)
    dark = rng.random() < 0.2
    ground = np.full(3, rng.uniform(0, 40) if dark else rng.uniform(225, 255))
    while True:  # a colour that stands out from the canvas in brightness (what a gray reader sees)
        colour = rng.uniform(0, 255, 3)
        if abs(colour @ (0.299, 0.587, 0.114) - ground[0]) > 80:
            break
    image = ground[None, None, :] * (1 - alpha[..., None]) + colour[None, None, :] * alpha[..., None]
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), alpha


def box_around(placed: tuple[int, int, int, int], shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The coverage (0..1) of a box drawn around a digit placed at (top, left, height, width).

    The box stands 0-15% of the digit's side off its square (MNIST's digit fills the middle
    20 of 28 pixels, so a small margin touches it), 1-4% of the side thick, at 0.6-1.0 of the
    ink's strength (a printed box is often fainter), turned by up to 4 degrees.
    """
    top, left, h, w = placed
    side = max(h, w)
    margin, thick = int(rng.uniform(0, 0.15) * side), max(1, int(rng.uniform(0.01, 0.04) * side))
    height, width = shape
    corners = [max(left - margin, 0), max(top - margin, 0),
               min(left + w + margin, width - 1), min(top + h + margin, height - 1)]
    frame = Image.new("L", (width, height), 0)
    ImageDraw.Draw(frame).rectangle(corners, outline=int(255 * rng.uniform(0.6, 1.0)), width=thick)
    centre = ((corners[0] + corners[2]) / 2, (corners[1] + corners[3]) / 2)
    frame = frame.rotate(rng.uniform(-4, 4), resample=Image.BILINEAR, center=centre)
    return np.asarray(frame, np.float32) / 255.0


def cut_out(digit: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """An MNIST digit cut out to its own box (no margin), upscaled 2-6x, half dark on white."""
    ys, xs = np.nonzero(digit)
    crop = Image.fromarray(digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
    scale = rng.uniform(2, 6)
    crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.BILINEAR)
    if rng.random() < 0.5:
        return ImageOps.invert(crop), "dark-on-light"
    return crop, "light-on-dark"


def pen(digit: np.ndarray, rng: np.random.Generator, dark_on_light: bool) -> Image.Image:
    """A UCI pen digit (8x8, 0..16) upscaled onto a margin, as a gray image."""
    side = int(rng.integers(40, 120))
    ink = Image.fromarray((digit * (255 / 16)).astype(np.uint8)).resize((side, side), Image.BILINEAR)
    margin = int(side * rng.uniform(0.1, 0.4))
    canvas = np.zeros((side + 2 * margin, side + 2 * margin), np.uint8)
    canvas[margin : margin + side, margin : margin + side] = np.asarray(ink)
    return Image.fromarray(255 - canvas if dark_on_light else canvas)


def write(out: str | Path, part: str, seed: int = 0, limit: int | None = None) -> Path:
    """Writes one part of the set (one of `PARTS`) and its `labels.csv`.

    Args:
        out: the set's folder (`out/part/` is written).
        part: "dev", "heldout", "final", "lined", "desk", "tight", "far", "blank" or "boxed".
        seed: the base seed; each part adds its own offset.
        limit: at most this many images of each kind (a smoke test); None for all.

    Returns:
        The part's folder.
    """
    from sklearn.datasets import load_digits

    from app import data
    from app.files import atomic_path

    offset, mnist_slice, pen_half = PARTS[part]
    rng = np.random.default_rng([seed, offset])
    folder = Path(out) / part
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    stop = mnist_slice.stop if limit is None else min(mnist_slice.stop, mnist_slice.start + limit)
    if part == "blank":  # empty digits, photographed as the others are
        count = stop - mnist_slice.start
        images, labels = np.zeros((count, 28, 28), np.uint8), [NO_DIGIT] * count
    else:
        images, labels = data.in_memory(data.load_split(f"test[{mnist_slice.start}:{stop}]"))
        images, labels = images.numpy()[..., 0], labels.numpy()
    for i, (image, label) in enumerate(zip(images, labels)):
        if part == "tight":
            name = f"tight_{i:04d}.png"
            picture, polarity = cut_out(image, rng)
            picture.save(folder / name)
        elif part == "canvas":
            name, polarity = f"canvas_{i:04d}.png", "any"
            canvas(image, rng)[0].save(folder / name)
        else:
            # A blank picture is one of the photo parts' scenes, drawn at random.
            scene = rng.choice(["plain", "lined", "desk", "far"]) if part == "blank" else part
            name = f"{'blank' if part == 'blank' else 'photo'}_{i:04d}.jpg"
            picture, polarity = photo(image, rng, lined=scene == "lined", desk=scene in ("desk", "tilted"),
                                      far=scene == "far", boxed=scene == "boxed", tilted=scene == "tilted",
                                      hard_shadow=scene == "shadow")
            picture.save(folder / name, quality=int(rng.integers(35, 95)))
        rows.append((name, int(label), "photo" if part in ("dev", "heldout", "final") else part, polarity))
    pens = load_digits()
    half = len(pens.target) // 2
    chosen = range(0) if pen_half is None else range(half) if pen_half == 0 else range(half, len(pens.target))
    chosen = chosen if limit is None else chosen[:limit]
    for i in chosen:
        name = f"pen_{i:04d}.png"
        dark_on_light = rng.random() < 0.5
        pen(pens.images[i], rng, dark_on_light).save(folder / name)
        rows.append((name, int(pens.target[i]), "pen", "dark-on-light" if dark_on_light else "light-on-dark"))
    with atomic_path(folder / "labels.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "kind", "polarity"])
        writer.writerows(rows)
    return folder


def read_labels(folder: str | Path) -> list[tuple[Path, int, str, str]]:
    """The `(path, label, kind, polarity)` rows of a part written by `write`."""
    folder = Path(folder)
    with open(folder / "labels.csv", newline="") as f:
        return [(folder / r["file"], int(r["label"]), r["kind"], r["polarity"]) for r in csv.DictReader(f)]
