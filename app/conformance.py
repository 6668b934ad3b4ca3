"""Conformance cases of the preprocessing contract: pictures, and the 28x28 each must become.

A port of the contract (an Android or iOS app, a server in another language) is checked by
decoding each case's picture (EXIF orientation applied, as `preprocess.decode` does), running
it through the port, and comparing with the case's expected 28x28 or its refusal. The pictures
are drawn here from a fixed seed, with no data set: digits in Pillow's own font, photographed
by the development set's renderers, and shapes drawn for one step each. Every picture is a
lossless PNG, so every runtime starts from the same pixels, except one grayscale JPEG that
carries an EXIF orientation (another decoder than Pillow's libjpeg-turbo can differ by a grey
level here and there). `python -m app cases` writes them into `tests/contract/`, with the
Python contract as the reference.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from app import devset
from app.files import atomic_folder
from app.predict import prepare
from app.preprocess import SHADED_SHEET_FILL, decode, sheet_box, to_gray

CASES = Path("tests/contract")
SEED = 2026


def font_digit(digit: int, stroke: int = 4) -> np.ndarray:
    """An MNIST-style digit (uint8 28x28, light on black) in Pillow's own font, drawn `stroke` px bolder."""
    canvas = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(canvas).text((48, 48), str(digit), fill=255, anchor="mm", stroke_width=stroke, stroke_fill=255,
                                font=ImageFont.load_default(size=64))
    glyph = canvas.crop(canvas.getbbox())
    scale = 20 / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.LANCZOS)
    out = Image.new("L", (28, 28), 0)
    out.paste(glyph, ((28 - glyph.width) // 2, (28 - glyph.height) // 2))
    return np.asarray(out)


def as_jpeg_then_png(image: Image.Image, quality: int) -> Image.Image:
    """The picture after a JPEG round trip (a camera's artefacts), to be stored losslessly."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert(image.mode)


def small_photo(digit: int, rng: np.random.Generator, longest: int, **scene) -> tuple[Image.Image, str]:
    """`devset.photo` of a font digit, drawn again until the picture is at most `longest` px."""
    while True:
        picture, polarity = devset.photo(font_digit(digit), rng, **scene)
        if max(picture.size) <= longest and (scene or polarity == "dark-on-light"):
            return as_jpeg_then_png(picture, int(rng.integers(50, 90))), polarity


def shadowed_zero() -> Image.Image:
    """A "0" drawn in grey ink, its right side on the edge of a shadow over the picture's right part."""
    paper = Image.new("L", (200, 240), 225)
    draw = ImageDraw.Draw(paper)
    draw.rectangle([160, 0, 199, 239], fill=175)
    draw.ellipse([90, 60, 160, 180], outline=85, width=9)
    draw.arc([90, 60, 160, 180], 200, 300, fill=70, width=11)  # where the pen started: heavier
    return paper.filter(ImageFilter.GaussianBlur(1))


def pictures() -> list[tuple[str, Image.Image, str]]:
    """Every case: (file name, picture, what it exercises)."""
    rng = np.random.default_rng(SEED)
    cases = []

    def add(name, picture, shows):
        cases.append((name, picture, shows))

    add("photo_2.png", small_photo(2, rng, 200)[0],
        "steps 4-13: dark ink on tinted paper with a gradient, noise and JPEG artefacts")
    while True:  # chalk on a dark board: the same renderer, light ink
        chalk, polarity = devset.photo(font_digit(5), rng)
        if polarity == "light-on-dark" and max(chalk.size) <= 200:
            break
    add("chalk_5.png", as_jpeg_then_png(chalk, 80), "step 5: light chalk on a dark board is not inverted")
    add("lined_3.png", small_photo(3, rng, 220, lined=True)[0], "step 8: ruled lines crossing the digit are cleared")
    add("desk_4.png", small_photo(4, rng, 220, desk=True)[0], "step 5: a sheet on a darker desk is cropped to it")
    while True:  # a shadow darkens part of the sheet: it fills less of its box
        shaded = small_photo(2, rng, 240, desk=True)[0]
        gray = to_gray(shaded)
        if sheet_box(gray) is None and sheet_box(gray, SHADED_SHEET_FILL) is not None:
            break
    add("shaded_desk_2.png", shaded, "step 5: a sheet partly in shadow is cropped to it (SHADED_SHEET_FILL)")
    block = np.zeros((200, 120), np.uint8)  # fills 172 x 70 / (180 x 78) = 0.86 of its box
    block[14:186, 25:95] = 230
    block[10:14, 60] = block[186:190, 60] = block[100, 21:25] = block[100, 95:99] = 230
    add("spiked_block.png", Image.fromarray(block),
        "step 5: a light shape taken for a shaded sheet, with nothing on it, is read whole")
    add("boxed_6.png", small_photo(6, rng, 220, boxed=True)[0], "step 8: a box drawn around the digit is cleared")

    # A small digit in a large picture: step 7's sparse peak and step 14's second look.
    far = Image.new("L", (960, 720), 0)
    far.putdata([int(205 + 30 * x / 960) for _ in range(720) for x in range(960)])
    glyph = Image.fromarray(font_digit(9)).resize((84, 84), Image.BICUBIC)
    far.paste(Image.new("L", glyph.size, 60), (610, 250), glyph)
    add("far_9.png", far.filter(ImageFilter.GaussianBlur(1)),
        "steps 5, 7 and 14: a digit 12% as tall as a picture with a gradient (the rarer tails decide)")

    for digit, dark in ((3, True), (0, False)):  # cut out to its own box: step 10's frame
        pixels = font_digit(digit, stroke=1)
        ys, xs = np.nonzero(pixels)
        crop = Image.fromarray(pixels[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
        crop = crop.resize((crop.width * 4, crop.height * 4), Image.BILINEAR)
        add(f"tight_{digit}.png", Image.eval(crop, lambda v: 255 - v) if dark else crop,
            f"step 10: a digit cut out to its own box, {'dark on light' if dark else 'light on dark'}")

    bitmap = Image.fromarray(font_digit(8)).resize((8, 8), Image.BOX)  # the UCI pen digits' 8x8 grid
    add("pen_8.png", devset.pen(np.asarray(bitmap, np.int64) * 16 // 255, rng, dark_on_light=True),
        "step 11: an 8x8 bitmap scaled up, its thick soft strokes cut at SPECK_LEVEL")

    drawn = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(drawn).line([(130, 170), (130, 30), (50, 125), (160, 125)], fill=(20, 20, 20, 255), width=14,
                               joint="curve")
    add("alpha_4.png", drawn, "step 3: a digit drawn on a transparent canvas (ink only in alpha)")

    seven = Image.new("L", (100, 120), 0)
    ImageDraw.Draw(seven).line([(30, 20), (70, 20), (45, 100)], fill=255, width=9)
    deep = np.where(np.asarray(seven) > 0, 9000, 60000).astype(np.uint16)
    add("gray16_7.png", Image.fromarray(deep), "step 4: 16-bit gray, scaled to 0-255")

    for name, side, pen in (("thin_7.png", 800, 3), ("hairline_7.png", 1024, 2)):
        canvas = Image.new("L", (side, side), 255)
        corners = [(0.3 * side, 0.25 * side), (0.7 * side, 0.25 * side), (0.45 * side, 0.8 * side)]
        ImageDraw.Draw(canvas).line(corners, fill=0, width=pen, joint="curve")
        add(name, canvas, f"steps 7, 11 and 14: a {pen}-pixel pen on a {side}-pixel canvas")

    add("shadow_0.png", shadowed_zero(), "step 8's cores: a 0 on the edge of a shadow")

    ring = Image.new("L", (240, 240), 255)
    ImageDraw.Draw(ring).ellipse([60, 60, 180, 180], outline=0, width=10)
    add("ring_0.png", ring, "step 13: a circle's centre of mass lies exactly on a half pixel")

    # A phone's portrait photo: stored turned, with EXIF orientation 6 (turn 90 degrees clockwise).
    upright = Image.new("L", (180, 240), 235)
    draw = ImageDraw.Draw(upright)
    draw.line([(120, 120), (60, 120), (60, 60), (120, 60), (120, 190)], fill=40, width=12, joint="curve")
    turned = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    turned.info["exif"] = exif.tobytes()
    add("exif_9.jpg", turned, "step 2: EXIF orientation 6, applied before anything else")

    blank = Image.new("L", (64, 64), 230)
    add("blank.png", blank, "step 7: a uniform picture is refused")
    noise = rng.normal(128, 20, (120, 160)).clip(0, 255).astype(np.uint8)
    add("noise.png", Image.fromarray(noise), "step 8: noise alone is refused")
    page = np.full((180, 240), 230, np.uint8)
    for top in (30, 75, 120, 165):
        page[top : top + 2] = 150
    add("ruled_blank.png", Image.fromarray(page), "step 8: a ruled page with nothing written is refused")
    dash = np.full((120, 160), 230, np.uint8)
    dash[58:62, 40:100] = 40
    add("dash.png", Image.fromarray(dash), "step 15: a bar is refused")
    # Light rising to the right, with noise of its own: the cases above keep their pictures.
    lit = np.linspace(100, 220, 200)[None, :] + np.random.default_rng([SEED, 0]).normal(0, 4, (150, 200))
    add("uneven_blank.png", Image.fromarray(lit.clip(0, 255).astype(np.uint8)),
        "step 9's edge test: a blank sheet lit more brightly towards one side is refused")
    static = np.random.default_rng([SEED, 1]).integers(0, 256, (28, 28), np.uint8)
    add("static.png", Image.fromarray(static), "step 10: noise with no paper, every level as likely, is refused")
    return cases


def write(folder: str | Path = CASES) -> list[dict]:
    """Writes every case's picture, its expected 28x28 and `cases.json` into `folder`.

    The set is written beside `folder` first and swapped in whole (`atomic_folder`), so a kill
    leaves the old one.

    Returns:
        The cases as listed in `cases.json`.
    """
    listed = []
    with atomic_folder(folder) as staging:
        (staging / "pictures").mkdir()
        (staging / "expected").mkdir()
        for name, picture, shows in pictures():
            path = staging / "pictures" / name
            if name.endswith(".jpg"):
                picture.save(path, quality=90, exif=picture.info["exif"])
            else:
                picture.save(path, optimize=True)
            pixels, refusal = prepare((str(path), "auto"))  # as predict reads a file
            case = {"picture": f"pictures/{name}", "shows": shows}
            if refusal is None:
                case["expected"] = f"expected/{Path(name).stem}.png"
                Image.fromarray(pixels).save(staging / case["expected"])
            else:
                case["refusal"] = refusal
            listed.append(case)
        (staging / "cases.json").write_text(json.dumps(listed, indent=1) + "\n")
    return listed


def read(folder: str | Path = CASES) -> list[dict]:
    """The cases of `folder/cases.json`, each with absolute paths and its expected pixels."""
    folder = Path(folder)
    cases = json.loads((folder / "cases.json").read_text())
    for case in cases:
        case["picture"] = folder / case["picture"]
        if "expected" in case:
            with Image.open(folder / case["expected"]) as image:
                case["pixels"] = np.asarray(image)
    return cases


def rgba(path: Path) -> tuple[bytes, int, int]:
    """A case's picture decoded as a port starts from it: RGBA bytes, width and height."""
    image = decode(path).convert("RGBA")
    return image.tobytes(), image.width, image.height
