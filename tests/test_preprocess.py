"""The preprocessing contract, step by step, on small synthetic images (see app/preprocess.py)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy.ndimage import uniform_filter

from app import preprocess as pp

ROOT = Path(__file__).resolve().parents[1]


def one_stroke(height=120, width=90, paper=(225, 215, 170), ink=(40, 40, 90)):
    """A dark vertical stroke (a "1") off-centre on tinted paper, RGB uint8."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = paper
    image[20:90, 60:68] = ink
    return image


def test_step2_a_heic_photo_is_decoded_like_the_same_picture_as_png(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")  # a pinned requirement
    image = Image.new("L", (300, 240), 225)
    ImageDraw.Draw(image).line([(100, 60), (200, 60), (140, 190)], fill=35, width=14, joint="curve")  # a 7
    image.save(tmp_path / "seven.png")
    pillow_heif.from_pillow(image.convert("RGB")).save(tmp_path / "seven.heic", quality=95)
    assert (tmp_path / "seven.heic").read_bytes()[4:8] == b"ftyp"  # an ISO media file, as an iPhone writes
    (tmp_path / "clip.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    # In a fresh process, where nothing has loaded pillow-heif's plugin: decode loads it.
    script = f"""
import json, sys, numpy as np
from app import preprocess as pp
decoded = pp.decode({str(tmp_path / "seven.heic")!r})
png, heic = (pp.preprocess_file({str(tmp_path)!r} + name) for name in ("/seven.png", "/seven.heic"))
try:
    pp.decode({str(tmp_path / "clip.heic")!r})
except pp.ImageFileError as error:
    clip = str(error)
print(json.dumps([decoded.size, decoded.mode, int(np.abs(png.astype(int) - heic.astype(int)).max()), clip]))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    size, mode, difference, clip = json.loads(out.stdout)
    assert size == [300, 240] and mode == "RGB"
    assert difference <= 2  # lossy, but the same digit
    assert clip == "not an image (UnidentifiedImageError)"  # a media file that is no picture


def test_step1_too_many_pixels_is_refused_from_the_header(tmp_path):
    Image.new("L", (9000, 8000)).save(tmp_path / "big.png")  # 72 MP of zeros compress to little
    with pytest.raises(pp.ImageFileError, match=r"^image too large \(9000x8000 pixels, at most 64,000,000\)"):
        pp.open_image(tmp_path / "big.png")


def test_step2_large_images_are_reduced_by_a_whole_factor(tmp_path):
    Image.new("L", (1030, 300), 255).save(tmp_path / "wide.png")
    # The least whole factor that brings 1030 to <= 256 is 5: 206 x 60.
    assert pp.open_image(tmp_path / "wide.png").size == (206, 60)


def test_step2_exif_orientation_is_applied(tmp_path):
    image = Image.new("L", (40, 20), 0)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "turned.jpg", exif=exif)
    assert pp.open_image(tmp_path / "turned.jpg").size == (20, 40)


def test_step3_alpha_only_drawing_becomes_a_light_digit():
    rgba = np.zeros((60, 60, 4), np.uint8)  # black ink everywhere, visible only where drawn
    rgba[10:50, 28:33, 3] = 255
    gray = pp.to_gray(Image.fromarray(rgba, "RGBA"))
    # Black visible ink composites onto white: a dark stroke on light paper.
    assert gray[30, 30] == 0 and gray[5, 5] == 255


def test_step4_gray_is_itu_601_luma():
    gray = pp.to_gray(Image.fromarray(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)))
    np.testing.assert_array_equal(gray, [[76, 150, 29]])  # Pillow's L: 299/587/114 per mille


def test_step5_polarity_is_detected_from_the_border():
    gray = pp.to_gray(Image.fromarray(one_stroke()))
    assert pp.polarity_of(gray) == "dark-on-light"
    assert pp.polarity_of(255.0 - gray) == "light-on-dark"
    # A dark sheet in shadow (border under 128) with darker ink is still dark ink on paper.
    assert pp.polarity_of(gray * 0.45) == "dark-on-light"


def test_step5_a_thin_digit_on_a_large_clean_canvas_is_dark_ink():
    gray = np.full((256, 256), 255.0, np.float32)  # a drawing app's white canvas
    gray[60, 80:180] = 0  # a "7" one pixel wide: 100 + 120 pixels, 0.34% of the picture
    gray[61:181, 179] = 0
    # Fewer ink pixels than POLARITY_PERCENTILE (0.5%) of all: both tails of all pixels are
    # the paper. Among the pixels off the paper the ink is all there is.
    residual = np.sort(gray - 255, axis=None)
    assert pp.percentile_of_sorted(residual, 0.5) == pp.percentile_of_sorted(residual, 99.5) == 0
    assert pp.polarity_of(gray) == "dark-on-light"
    assert pp.polarity_of(255 - gray) == "light-on-dark"


def test_step5_a_small_dark_digit_on_shaded_paper_is_dark_ink_by_the_rarer_tails(monkeypatch):
    gray = np.tile(np.linspace(190, 230, 240, dtype=np.float32), (180, 1))  # a gradient: no flat border
    gray[20:50, 20:80] += 25  # a reflection, 1,800 pixels (4%)
    gray[100:120, 150:153] = 60  # a small dark "1", 60 pixels (0.14%)
    window = max(3, int(pp.POLARITY_WINDOW * 240) | 1)
    residual = np.sort(gray - uniform_filter(gray, size=window, mode="nearest"), axis=None)
    # At POLARITY_PERCENTILE (0.5%) the dark tail is the gradient's, the light one the
    # reflection's; at SPARSE_POLARITY_PERCENTILE (0.1%) the dark tail is the ink's.
    assert -pp.percentile_of_sorted(residual, 0.5) < pp.percentile_of_sorted(residual, 99.5)
    assert -pp.percentile_of_sorted(residual, 0.1) >= pp.POLARITY_RATIO * pp.percentile_of_sorted(residual, 99.9)
    assert pp.polarity_of(gray) == "dark-on-light" and pp.polarity_of(255 - gray) == "light-on-dark"
    monkeypatch.setattr(pp, "POLARITY_RATIO", float("inf"))  # the wider tails alone
    assert pp.polarity_of(gray) == "light-on-dark"


def test_step5_a_sheet_on_a_darker_desk_is_cropped_to_the_sheet():
    gray = np.full((100, 140), 60.0, np.float32)  # the desk
    gray[10:90, 20:120] = 220  # the sheet, 80 x 100
    gray[30:70, 66:72] = 30  # a dark "1" on it
    # Middle 220 vs border 60: a sheet. Its bounding box less 2% of 140 = 2 pixels a side.
    sheet = pp.sheet_of(gray)
    assert sheet.shape == (76, 96) and sheet.min() == 30 and np.median(sheet) == 220
    out = pp.preprocess_gray(gray)
    ys, xs = np.nonzero(out)
    assert ys.max() - ys.min() + 1 == 20 and xs.max() - xs.min() + 1 <= 6  # the stroke alone
    assert pp.preprocess_gray(gray).tolist() == pp.preprocess_gray(sheet).tolist()
    # Without the crop the desk is taken for the paper (light sheet on a dark desk), and the
    # sheet, wider than the background window, for paper too: nothing is left.
    assert pp.polarity_of(gray) == "light-on-dark"
    with pytest.raises(pp.NoDigitError):
        pp.normalise(gray)


def test_step5_a_sheet_darkened_in_a_corner_by_a_shadow_is_still_cropped_to_the_sheet():
    gray = np.full((100, 140), 60.0, np.float32)  # the desk
    gray[10:90, 20:120] = 220  # the sheet, 80 x 100
    gray[10:40, 80:120] *= 0.5  # a shadow over a 30 x 40 corner: 110, under the midpoint 140
    gray[50:80, 46:52] = 30  # a dark "1" on the lit part
    # The lit piece fills (8,000 - 1,200 - 180) / 8,000 = 0.83 of its box: under SHEET_FILL,
    # over SHADED_SHEET_FILL.
    assert pp.sheet_box(gray) is None
    assert pp.sheet_box(gray, pp.SHADED_SHEET_FILL) == (slice(12, 88), slice(22, 118))
    values, _, sheet = pp.digit_of(gray)
    assert sheet == (slice(12, 88), slice(22, 118))
    assert pp.preprocess_gray(gray).tolist() == pp.preprocess_gray(gray[sheet]).tolist()
    ys, xs = np.nonzero(pp.preprocess_gray(gray))
    assert ys.max() - ys.min() + 1 == 20 and xs.max() - xs.min() + 1 <= 6  # the stroke alone


def test_step5_a_light_shape_taken_for_a_shaded_sheet_with_nothing_on_it_is_read_whole():
    gray = np.zeros((400, 400), np.float32)
    gray[48:352, 108:292] = 230  # a light block, 304 x 184
    gray[40:48, 200] = gray[352:360, 200] = gray[200, 100:108] = gray[200, 292:300] = 230  # 8-px spikes
    # The piece fills 304 x 184 / (320 x 200) = 0.874 of its box and is over SHEET_SHARE of the
    # picture, with a light middle on a black border: a shaded sheet, as a bold light pen digit
    # can be. Less SHEET_MARGIN (8 pixels), that "sheet" is the block alone: uniform, no digit.
    assert pp.sheet_box(gray) is None
    assert pp.sheet_box(gray, pp.SHADED_SHEET_FILL) == (slice(48, 352), slice(108, 292))
    with pytest.raises(pp.NoDigitError):
        pp.digit_on(gray, pp.sheet_box(gray, pp.SHADED_SHEET_FILL), "auto")
    _, _, sheet = pp.digit_of(gray)  # so the whole picture is read: the block with its spikes
    assert sheet == (slice(0, 400), slice(0, 400))
    rows, cols = pp.ink_box(pp.preprocess_gray(gray) > 0)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (20, 13)  # 320 x 200 fitted: 20 x 12.5


def test_step5_paper_filling_the_picture_or_a_light_digit_on_black_is_left_alone():
    paper = np.full((60, 80), 200.0, np.float32)
    paper[20:40, 30:34] = 40
    assert pp.sheet_of(paper) is paper  # the border is as light as the middle
    digit = np.zeros((28, 28), np.float32)
    digit[6:22, 10:18] = 255  # a bold light blob on black: its middle's median is under 64
    assert pp.sheet_of(digit) is digit


def test_steps6_to_11_a_one_on_tinted_shaded_paper_becomes_a_centred_light_stroke():
    image = one_stroke().astype(np.float32)
    image *= np.linspace(0.6, 1.0, image.shape[1])[None, :, None]  # a shadow across the sheet
    out = pp.preprocess_image(Image.fromarray(image.astype(np.uint8)))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    ys, xs = np.nonzero(out)
    assert ys.max() - ys.min() + 1 == 20  # the stroke's length fills the 20-pixel box
    assert abs(ys.mean() - 14) <= 1 and abs(xs.mean() - 14) <= 1  # centred by mass
    assert out[14, 14] > 200  # and bright
    assert out[0].max() == 0 and out[:, :8].max() == 0  # the paper, shadow and all, is black


def test_step6_background_follows_a_gradient_and_leaves_the_stroke():
    ramp = np.tile(np.linspace(20, 120, 100, dtype=np.float32), (100, 1))  # a lit-to-shaded sheet
    image = ramp.copy()
    image[20:80, 48:52] += 100  # a thin light stroke
    paper = pp.background(image)
    np.testing.assert_allclose(paper[:, :40], ramp[:, :40], atol=45)  # within the window's reach
    assert (image - paper)[50, 50] > 95 and np.abs(image - paper)[5:15, 5:95].max() < 45


@pytest.mark.parametrize("shape, window", [((1, 1), 3), ((5, 3), 7), ((40, 9), 3), ((37, 64), 15),
                                           ((256, 171), 101), ((64, 64), 127)])
def test_step6_square_filter_is_scipys_nearest_mode_min_and_max_filter_bit_for_bit(shape, window):
    from scipy.ndimage import maximum_filter, minimum_filter

    rng = np.random.default_rng(window)
    values = rng.integers(0, 256, shape).astype(np.float32) + rng.random(shape, np.float32)
    for op, scipy_filter in ((np.minimum, minimum_filter), (np.maximum, maximum_filter)):
        out = pp.square_filter(values, window, op)
        np.testing.assert_array_equal(out, scipy_filter(values, size=window, mode="nearest"))
        assert out.dtype == np.float32 and out.flags.c_contiguous
    mask = rng.random(shape) < 0.05  # the halo's use: a kept piece widened, nothing beyond the edge
    np.testing.assert_array_equal(pp.square_filter(mask, window, np.maximum),
                                  maximum_filter(mask, size=window, mode="constant", cval=False))


def test_step7_a_small_digit_in_a_large_picture_is_found_and_noise_alone_is_not():
    rng = np.random.default_rng(0)
    ink = rng.normal(40, 4, (400, 400)).astype(np.float32)  # noisy dark paper
    ink[200:260, 198:202] = 140  # a stroke of 240 pixels: 0.15% of the picture
    ordered = np.sort(ink, axis=None)
    assert ordered[int(0.995 * ordered.size)] < 60  # PEAK_PERCENTILE lands on the paper
    out = pp.normalise(ink)
    assert out[200:260, 198:202].min() > 250 and out[150:190].max() == 0
    ys, xs = np.nonzero(out)  # the stroke, and what its halo keeps of the paper's noise
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (200, 259, 195, 203)
    with pytest.raises(pp.NoDigitError, match="^no digit found"):
        pp.normalise(rng.normal(40, 4, (400, 400)).astype(np.float32))
    # A stroke of 80 pixels, 0.05% of the picture: under the brightest 0.1% but over 0.03%.
    ink[200:260, 198:202] = rng.normal(40, 4, (60, 4))
    ink[200:220, 198:202] = 140
    out = pp.normalise(ink)
    ys, xs = np.nonzero(out > 250)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (200, 219, 198, 201)


def test_step7_contrast_maps_the_paper_to_0_and_the_ink_to_255():
    rng = np.random.default_rng(0)
    ink = rng.normal(40, 4, (80, 80)).astype(np.float32)  # noisy dark paper
    ink[20:60, 38:43] = 140  # a stroke 100 levels above it
    out = pp.normalise(ink)
    assert out[40, 40] == 255 and np.median(out) == 0
    assert out[:10].max() == 0  # noise far from the stroke is gone


@pytest.mark.parametrize("size", [1, 2, 7, 1000, 1001])
def test_step7_levels_from_one_partition_are_numpys_bit_for_bit(size):
    gamma = np.random.default_rng(size).gamma(0.5, 40, size).astype(np.float32)
    percents = (0, 0.5, 10, 50, 80, 90, 99.5, 100)
    # Non-negative levels are partitioned as integers, others as floats: both are numpy's.
    for values in (gamma, gamma.round(), gamma - np.float32(20)):
        assert pp.median(values) == np.median(values)
        for ordered in (np.sort(values), pp.sorted_at(values, percents)):
            assert pp.median_of_sorted(ordered) == np.median(values)
            for percent in percents:
                level = pp.percentile_of_sorted(ordered, percent)
                assert level == np.percentile(values, percent) and level.dtype == np.float32
    # Partitioned at the 99.5th percentile's ranks alone, the rest of the order is not sorted.
    if size == 1000:
        assert not np.array_equal(pp.sorted_at(values, [99.5]), np.sort(values))


def test_step8_specks_keep_a_halo_of_3_pixels_around_the_digit():
    values = np.zeros((60, 60), np.float32)
    values[20:40, 28:32] = 255  # the digit
    values[30, 34] = values[30, 35] = 40  # soft edge 3 and 4 pixels beyond its last column (31)
    values[2, 2] = 40  # faint noise far away
    out = pp.keep_digit(values)
    assert out[30, 34] == 40 and out[30, 35] == 0 and out[2, 2] == 0
    np.testing.assert_array_equal(out[20:40, 28:32], 255)


def ring_by_a_shadow(shadow_level):
    """After step 7: a ring ("0") at full ink, 3 pixels wide, whose right side meets a
    shadow's plateau that covers the picture's right part from top to bottom."""
    values = np.zeros((80, 100), np.float32)
    values[20:60, 30:60] = 255
    values[23:57, 33:57] = 0
    values[:, 60:] = shadow_level
    return values


def test_step8_a_shadow_joined_to_the_digit_is_dropped_by_the_cores():
    # The plateau (100) is above SPECK_LEVEL and joins the ring, so the specks alone keep it.
    values = ring_by_a_shadow(100)
    assert pp.specks(values)[:, 60:].min() == 100
    # Above CORE_LEVEL (128) only the ring is left, apart from the border: the specks step runs
    # again within HALO (3) of it, so the plateau is kept in columns 60-62 of rows 17-62 only.
    out = pp.keep_digit(values)
    np.testing.assert_array_equal(out[:, :60], values[:, :60])
    assert out[:, 63:].max() == 0 and out[:17].max() == 0 and out[63:].max() == 0
    np.testing.assert_array_equal(out[17:63, 60:63], 100)
    # A plateau as strong as half the ink or more is one of the cores on the border: kept.
    strong = ring_by_a_shadow(pp.CORE_LEVEL + 1)
    np.testing.assert_array_equal(pp.keep_digit(strong), pp.specks(strong))
    # A digit cut out to its box keeps its full-strength strokes on the border: unchanged.
    tight = ring_by_a_shadow(0)[18:62, 28:62]
    tight[:, :5] = 255
    np.testing.assert_array_equal(pp.keep_digit(tight), pp.specks(tight))


def test_step8_a_zero_on_a_shadows_edge_is_read_without_the_shadow():
    from app.conformance import shadowed_zero

    out = pp.preprocess_image(shadowed_zero())
    rows, cols = pp.ink_box(out > pp.SPECK_LEVEL)
    # The 71 x 121 ellipse alone, fitted: 20 tall and 71 x 20 / 121 = 11.7, so 12, wide. The
    # specks alone keep the shadow, whose 240-pixel height the fit then takes: 20 x 9.
    assert (rows.stop - rows.start, cols.stop - cols.start) == (20, 12)


def ruled_page(turn=0.0):
    """Light-on-dark after step 7: three ruled lines about 2 pixels wide, 30 apart, turned by
    `turn` (a slope in pixels per column), and a vertical stroke crossing them, 6 pixels wide."""
    values = np.zeros((100, 160), np.float32)
    ys, xs = np.indices(values.shape)
    for y0 in (20, 50, 80):
        values[np.abs(ys - y0 - turn * xs) < 1] = 120  # fainter than the ink
    values[5:95, 70:76] = 255
    return values


def test_step8_ruled_lines_are_cleared_where_no_stroke_crosses_them():
    for turn in (0.0, 6 / 64):  # level, and turned by 5.4 degrees (k = 6)
        values = ruled_page(turn)
        out = pp.clear_lines(values)
        assert out[:, :60].max() == 0 and out[:, 90:].max() == 0  # the lines are gone
        # The stroke is whole, across the lines too.
        np.testing.assert_array_equal(out[5:95, 70:76], 255)
    # Squared paper: the vertical lines go the same way.
    grid = ruled_page()
    grid[:, [30, 31, 120, 121]] = 120
    assert pp.clear_lines(grid)[:, :60].max() == 0


def test_step8_a_long_stroke_or_a_shadow_ramp_is_not_a_line():
    bar = np.zeros((60, 100), np.float32)
    bar[30:33, 3:97] = 255  # a 7's bar: 94% of the width, but 3 pixels (over 2%) short of each edge
    np.testing.assert_array_equal(pp.clear_lines(bar), bar)
    ramp = np.zeros((60, 100), np.float32)
    ramp[20:] = 100  # the lit side of a shadow's edge, a band wider than LINE_WIDTH
    np.testing.assert_array_equal(pp.clear_lines(ramp), ramp)
    # The same bar touching both edges, alone on dark paper, is a line.
    bar[30:33] = 255
    assert pp.clear_lines(bar).max() == 0


def test_step8_a_lone_stroke_taken_for_a_line_is_kept():
    gray = np.zeros((60, 40), np.float32)
    gray[:, 18:22] = 220  # a "1" from edge to edge, alone: a line by every test of step 8
    assert pp.clear_lines(gray).max() == 0
    out = pp.preprocess_gray(gray)  # clearing it would leave no digit, so it stays
    ys, xs = np.nonzero(out)
    assert ys.max() - ys.min() + 1 == 20 and xs.max() - xs.min() + 1 <= 4


def test_step8_a_ruled_page_with_nothing_written_is_refused():
    gray = np.full((180, 240), 230.0, np.float32)
    for top in (30, 75, 120, 165):
        gray[top : top + 2] = 150  # four ruled lines, edge to edge
    assert pp.line_count(np.where(gray < 200, 255.0, 0.0)) == 4
    # Clearing the lines leaves nothing; four lines are a page, not a lone stroke (the "1" of
    # the test above is one line, and kept).
    with pytest.raises(pp.NoDigitError, match=r"^no digit found \(only specks or noise\)$"):
        pp.preprocess_gray(gray)


def test_step8_a_box_drawn_around_the_digit_is_cleared():
    def boxed(side=100, turn=0.0, speck=False):
        values = Image.new("L", (side, side), 0)
        draw = ImageDraw.Draw(values)
        draw.rectangle([10, 10, side - 11, side - 11], outline=255, width=2)  # the box, 2 px thick
        draw.rectangle([side // 2 - 2, side // 4, side // 2 + 1, side - side // 4 - 1], fill=255)  # a "1", 4 px wide
        if speck:
            draw.rectangle([1, 1, 4, 4], fill=255)  # a remnant outside the box
        return np.asarray(values.rotate(turn, resample=Image.BILINEAR), np.float32)

    def lit_box(values):
        ys, xs = np.nonzero(values > pp.SPECK_LEVEL)
        return ys.min(), ys.max(), xs.min(), xs.max()

    assert lit_box(pp.clear_box(boxed())) == (25, 74, 48, 51)  # the "1" alone
    assert lit_box(pp.clear_box(boxed(speck=True))) == (25, 74, 48, 51)  # the box's own bounding box
    # Turned 4 degrees (slope 4.5/64): its sides stop up to 7 px short of their bounding box's ends.
    turned = pp.clear_box(boxed(turn=4))
    top, bottom, left, right = lit_box(turned)
    assert 20 <= top and bottom <= 79 and 44 <= left and right <= 55  # the "1" alone, turned
    # Nothing inside (a "0" drawn as a rectangle), or a box under MIN_BOX pixels: they stay.
    empty = boxed()
    empty[25:75, 48:52] = 0
    assert pp.clear_box(empty) is empty
    small = boxed(side=pp.MIN_BOX - 1)
    assert pp.clear_box(small) is small


def test_step9_a_blank_sheet_lit_unevenly_is_refused_and_a_stroke_to_its_edge_is_read():
    ramp = np.tile(np.linspace(100, 220, 200, dtype=np.float32), (150, 1))  # light rising to the right
    reach = pp.first_window(ramp) // 2  # 40
    # Each filter repeating its own edge, the opening stops rising `reach` pixels before the
    # right edge; opened over the picture extended past its edges, it follows the ramp exactly.
    assert (pp.background(ramp)[:, -1 - reach :] == ramp[:, [-1 - reach]]).all()
    np.testing.assert_array_equal(pp.background(ramp, extended=True), ramp)
    sheet = np.clip(ramp + np.random.default_rng(0).normal(0, 4, ramp.shape).astype(np.float32), 0, 255)
    assert pp.polarity_of(sheet) == "dark-on-light"
    # Inverted, the ink rises towards the dark edge: the first pass alone keeps a band there.
    band = pp.normalise(255 - sheet, dark_ink=True) > pp.SPECK_LEVEL
    assert pp.border(band).any() and np.flatnonzero(band.any(axis=0)).max() < 2 * reach
    with pytest.raises(pp.NoDigitError, match="^no digit found"):  # the paper alone
        pp.normalise(255 - sheet, dark_ink=True, extended=True)
    with pytest.raises(pp.NoDigitError, match=r"^no digit found \(only uneven light along an edge\)$"):
        pp.preprocess_gray(sheet)
    # A dark stroke down to the bottom edge touches the border too: the test finds it and the
    # first pass's reading stands.
    sheet[60:, 98:103] -= 80
    assert pp.border(pp.normalise(255 - sheet, dark_ink=True) > pp.SPECK_LEVEL).any()
    out = pp.preprocess_gray(sheet)
    assert pp.ink_box(out > pp.SPECK_LEVEL) == (slice(4, 24), slice(13, 16))  # 20 tall, centred


def test_step9_stroke_width_is_area_over_half_the_outline():
    values = np.zeros((80, 40), np.float32)
    values[10:70, 17:23] = 255  # a bar 60 x 6
    # Area 360; the pixels with all four neighbours inside are the 58 x 4 = 232 inner ones, so
    # the outline has 128 and the width is 2 * 360 / 128 = 5.625.
    assert pp.stroke_width(values) == 5.625
    values[10:70, 17:23] = pp.SPECK_LEVEL  # not above the level: no stroke at all
    assert pp.stroke_width(values) == 0.0


def test_step9_a_narrower_window_follows_a_shadow_into_its_acute_corner():
    ys, xs = np.indices((160, 160))
    gray = np.full((160, 160), 230.0, np.float32)
    gray[xs - 95 > 0.35 * np.abs(ys - 80)] = 130  # a shadow whose edges meet at 39 degrees
    gray[40:120, 60:66] = 40  # a dark "1", 6 pixels wide
    ink = 255.0 - gray
    first = pp.normalise(ink, dark_ink=True)
    # The first pass's window, 0.4 x 160 = 64 -> 65 pixels, cannot reach into the corner; the
    # second's, 5 stroke widths (5 x 5.94 = 29.7 -> 29 pixels), reaches 2.2 times farther.
    assert pp.first_window(ink) == 65 and pp.stroke_width(first) == 5.9375
    second = pp.refine(ink, first, dark_ink=True)
    wedge = np.s_[:, 80:]  # right of the stroke and its halo
    assert (first[wedge] > 0).sum() == 375 and (second[wedge] > 0).sum() == 56
    np.testing.assert_array_equal(second[40:120, 60:66], first[40:120, 60:66])  # the stroke itself stays


def test_step9_keeps_the_first_pass_when_the_window_would_not_be_narrower():
    gray = np.zeros((60, 60), np.float32)
    gray[20:40, 20:40] = 200  # a blob 20 wide, narrower than the first window (0.4 x 60 -> 25)
    first = pp.normalise(gray)
    # Its width is 2 * 400 / 76 = 10.5 (76 outline pixels): 5 widths, 52, would not be narrower.
    assert pp.stroke_width(first) == 800 / 76
    assert pp.refine(gray, first) is first


def cut_out_zero(height=48, width=32, level=220.0):
    """A thick light "0" cut out to its own box: it reaches all four sides and is most of the pixels."""
    ys, xs = np.mgrid[:height, :width]
    r = ((ys - (height - 1) / 2) / (height / 2)) ** 2 + ((xs - (width - 1) / 2) / (width / 2)) ** 2
    return ((r <= 1.0) & (r >= 0.35)).astype(np.float32) * level


def test_step10_the_frame_carries_the_paper_out_from_the_nearest_edge():
    ink = np.tile(np.linspace(10, 50, 40, dtype=np.float32), (20, 1))  # a smooth gradient: all paper
    ink[5:15, 20:23] += 150  # and a stroke
    out = pp.framed(ink)
    margin = int(0.25 * 40)  # MARGIN x the longer side
    assert out.shape == (20 + 2 * margin, 40 + 2 * margin)
    np.testing.assert_array_equal(out[margin:-margin, margin:-margin], ink)
    paper = pp.background(ink)
    np.testing.assert_array_equal(out[:margin, margin:-margin], np.repeat(paper[:1], margin, axis=0))
    np.testing.assert_array_equal(out[margin:-margin, :margin], np.repeat(paper[:, :1], margin, axis=1))
    assert out[0, 0] == paper[0, 0] and out[-1, -1] == paper[-1, -1]


def test_step10_a_digit_cut_out_to_its_own_box_is_read_as_with_paper_around_it():
    zero = cut_out_zero()
    assert (zero > 0).mean() > 0.5  # and it reaches all four sides
    with pytest.raises(pp.NoPaperError):  # steps 6-9 alone: step 7's paper statistics are the ink's
        pp.normalise(zero)
    margin = int(0.25 * 48)
    with_paper = pp.preprocess_gray(np.pad(zero, margin))
    assert pp.preprocess_gray(zero).tolist() == with_paper.tolist()
    assert pp.preprocess_gray(255 - zero).tolist() == with_paper.tolist()  # dark on light, on white paper
    with pytest.raises(pp.NoDigitError, match=r"^no digit found \(blank or uniform image\)$"):
        pp.preprocess_gray(np.full((30, 20), 220, np.float32))  # all ink is no ink: still refused
    noise = np.clip(np.random.default_rng(0).normal(128, 30, (48, 32)), 0, 255).astype(np.float32)
    with pytest.raises(pp.NoDigitError) as refused:  # noise has paper statistics: no frame, refused
        pp.preprocess_gray(noise)
    assert type(refused.value) is pp.NoDigitError


def test_step10_noise_with_no_paper_is_refused_and_digits_are_far_smoother():
    rng = np.random.default_rng(0)
    for static in (rng.integers(0, 256, (28, 28)), rng.integers(0, 256, (100, 140)),
                   np.asarray(Image.fromarray(rng.integers(0, 256, (60, 80, 3), np.uint8)).convert("L"))):
        static = static.astype(np.float32)
        with pytest.raises(pp.NoPaperError):  # its median and MAD are no paper's: step 10 would frame it
            pp.normalise(static)
        assert pp.roughness(static) > 1.25
        with pytest.raises(pp.NoDigitError, match=r"^no digit found \(only noise\)$"):
            pp.preprocess_gray(static)
    # A checkerboard's neighbours all differ by 255, twice its levels' mean deviation (127.5);
    # a uniform picture's not at all.
    assert pp.roughness(np.array([[0, 255, 0], [255, 0, 255]], np.float32)) == 2.0
    assert pp.roughness(np.full((5, 4), 9, np.float32)) == 0.0
    assert pp.roughness(cut_out_zero()) < 0.3
    # The roughest real digits: the UCI pen digits' raw 8 x 8 bitmaps, which step 9's edge test
    # (pictures under EDGE_SIDE) leaves alone too.
    from sklearn.datasets import load_digits

    pens = load_digits().images.astype(np.float32) * (255 / 16)
    assert max(pp.roughness(pen) for pen in pens) < pp.NOISE_ROUGHNESS - 0.1
    for pen in pens[:100]:
        try:
            pp.preprocess_gray(pen)
        except pp.NoDigitError as refusal:
            assert "uneven light" not in str(refusal)


def bar(height, width, core=255.0):
    """A vertical bar `width` px wide in a 10-px margin, with a soft edge of 30 and 60 on both sides."""
    values = np.zeros((height + 20, width + 24), np.float32)
    values[10:-10, 12:-12] = core
    values[10:-10, [10, -11]] = 30
    values[10:-10, [11, -12]] = 60
    return values


def test_step11_a_thick_stroke_loses_its_soft_edge_an_mnist_wide_one_keeps_it():
    # 20 x 8 above SPECK_LEVEL: width 2 x 160 / 52 outline pixels = 6.15 px, fitted at 20 / 20.
    thick = bar(20, 8)
    thick[12, 14] = 160  # one pixel part way
    out = pp.even_strokes(thick)
    assert out[15, 10] == 0 and out[15, 11] == 0  # the soft edge is paper
    assert out[15, 14] == pytest.approx(255, rel=1e-6)
    assert out[12, 14] == pytest.approx((160 - 64) * 255 / 191, rel=1e-6)
    assert out.dtype == np.float32 and out.shape == thick.shape
    # 20 x 4: 2 x 80 / 44 = 3.64 px, as MNIST's; 80 x 8: 2 x 640 / 172 = 7.44 px, 1.86 once fitted.
    for usual in (bar(20, 4), bar(80, 8)):
        assert pp.even_strokes(usual) is usual
    # Through the whole contract: the thin bar as without step 11, the thick one narrower.
    def without_step11(values):
        return pp.fit_and_centre(pp.read_ink(values))

    assert pp.preprocess_gray(bar(20, 4, 220)).tolist() == without_step11(bar(20, 4, 220)).tolist()
    thick_out, thick_before = pp.preprocess_gray(bar(20, 8, 220)), without_step11(bar(20, 8, 220))
    # Step 7 stretches 220 to 255, so 30 to 34.8 (cut) and 60 to 69.5 (kept, as 7.4): 8 + 2 columns.
    assert [np.flatnonzero(out.any(0)).size for out in (thick_out, thick_before)] == [10, 12]


def test_step11_a_thin_stroke_is_widened():
    thin = np.zeros((140, 60), np.float32)
    thin[10:130, [15, 45]] = 255  # a "11" drawn 1 px wide, 120 long: width 2 px, 0.33 once fitted
    out = pp.even_strokes(thin)
    # The window: floor((2 x 1.5 - 0.33) x 120 / 20) | 1 = 16 | 1 = 17, so 8 pixels more on each side.
    assert (out[70] > 0).sum() == 2 * 17 and (out[:, 15] > 0).sum() == 120 + 16
    assert out.dtype == np.float32 and out.max() == 255
    # Fitted as it is (31 columns into 5) each line fades to 255 / 6.2 = 41; widened, it keeps 255.
    assert pp.fit_and_centre(thin).max() == 41 and pp.fit_and_centre(out).max() == 255


def test_step13_a_half_pixel_shift_is_the_same_from_either_side_of_it():
    # A symmetric digit's exact half pixel, as sums in two orders land on it: both shift by 1.
    assert pp.centre_shift(0.4999999999999982) == pp.centre_shift(0.5000000000000018) == 1
    assert pp.centre_shift(-0.5000000000000018) == pp.centre_shift(-0.4999999999999982) == 0
    # Off the half pixel by more than CENTRE_DECIMALS resolve, as floor(x + 0.5).
    assert pp.centre_shift(0.499998) == 0 and pp.centre_shift(0.500001) == 1 and pp.centre_shift(-1.49) == -1


def test_step13_the_centre_of_mass_lands_on_14_14():
    values = np.zeros((50, 30), np.float32)
    values[5:45, 3:9] = 255  # a bar hugging the left
    values[40:45, 3:27] = 255  # and a foot to the right: an L
    out = pp.fit_and_centre(values)
    ys, xs = np.indices(out.shape)
    com = (ys * out).sum() / out.sum(), (xs * out).sum() / out.sum()
    assert abs(com[0] - 14) <= 0.5 and abs(com[1] - 14) <= 0.5
    rows = np.flatnonzero(out.any(1))
    assert rows[-1] - rows[0] + 1 == 20  # the longer side fills the box


def test_step8_specks_are_removed():
    gray = np.zeros((100, 100), np.float32)
    gray[20:80, 45:52] = 220  # the digit
    gray[5, 5] = gray[90, 95] = 255  # two specks
    out = pp.preprocess_gray(gray)
    ys, xs = np.nonzero(out)
    assert ys.max() - ys.min() + 1 <= 21 and xs.max() - xs.min() + 1 <= 6  # the stroke alone


def test_step14_a_small_digit_in_a_reduced_picture_is_read_again_from_its_own_pixels():
    image = Image.new("L", (1200, 900), 230)
    ImageDraw.Draw(image).line([(500, 400), (580, 400), (530, 540)], fill=30, width=7, joint="curve")  # a 7
    assert pp.reduction(image, pp.WORK_SIDE) == 5  # 240 x 180 to work on
    values, (rows, cols), sheet = pp.digit_of(pp.to_gray(pp.reduce_to(image, pp.WORK_SIDE)))
    assert (rows.start, rows.stop, cols.start, cols.stop) == (78, 110, 99, 118)  # 32 pixels tall
    assert sheet == (slice(0, 180), slice(0, 240))  # no sheet: all of the picture
    # 32 <= ZOOM_SIDE: steps 2-13 again on the full-size pixels of the box, 16 (half of 32)
    # working pixels wider on every side: 5 x (99 - 16) = 415 to 5 x (118 + 16) = 670, etc.
    crop = image.crop((415, 310, 670, 630))  # 255 x 320: step 2 reduces it by 2
    out = pp.preprocess_image(image)
    np.testing.assert_array_equal(out, pp.preprocess_gray(pp.to_gray(pp.reduce_to(crop, pp.WORK_SIDE))))
    assert (out != pp.fit_and_centre(values)).sum() == 97  # what the model sees changed
    # A picture that needs no reduction is read once.
    small = image.resize((240, 180), Image.BOX)
    np.testing.assert_array_equal(pp.preprocess_image(small), pp.preprocess_gray(pp.to_gray(small)))


SHAPE_REFUSED = r"^no digit found \(a bar or a block, not a digit's shape\)$"


def test_step15_a_bar_or_a_block_is_no_digit():
    def lit_box(h, w, dark=0):
        pixels = np.zeros((28, 28), np.uint8)
        pixels[4 : 4 + h, 4 : 4 + w] = 255
        inside = pixels[5 : 3 + h, 5 : 3 + w]  # a view: the box's edges stay lit
        inside.flat[:dark] = 30  # `dark` pixels inside the box at or under SPECK_LEVEL
        return pixels

    # A bar (its outline lit, 60 pixels inside it dark, so not a block): 7 x 20 is 0.35 of
    # its width tall and kept; 6 x 20 is flatter and refused.
    outline = lit_box(7, 20, dark=60)
    assert pp.digit_shaped(outline) is outline
    with pytest.raises(pp.NoDigitError, match=SHAPE_REFUSED):
        pp.digit_shaped(lit_box(6, 20, dark=60))
    # A block: 20 x 20 lit on 360 of its 400 pixels (0.9) is refused, on 359 kept.
    with pytest.raises(pp.NoDigitError, match=SHAPE_REFUSED):
        pp.digit_shaped(lit_box(20, 20, dark=40))
    kept = lit_box(20, 20, dark=41)
    assert pp.digit_shaped(kept) is kept
    # Taller than wide and lit whole (a thick "1"), or nothing lit at all: kept.
    tall, empty = lit_box(21, 20), np.zeros((28, 28), np.uint8)
    assert pp.digit_shaped(tall) is tall and pp.digit_shaped(empty) is empty


def test_step15_refuses_a_dash_and_a_patch_that_steps_5_to_13_read():
    dash = np.full((120, 160), 230.0, np.float32)
    dash[58:62, 40:100] = 40  # a dark dash, 60 x 4: too short for a ruled line
    patch = np.full((240, 240), 230.0, np.float32)
    patch[100:140, 90:130] = 60  # a dark square, narrower than step 6's window
    for gray in (dash, patch):
        assert pp.fit_and_centre(pp.digit_of(gray)[0]).max() == 255  # read as ink ...
        with pytest.raises(pp.NoDigitError, match=SHAPE_REFUSED):  # ... but no digit's shape
            pp.preprocess_gray(gray)
        with pytest.raises(pp.NoDigitError, match=SHAPE_REFUSED):
            pp.preprocess_image(Image.fromarray(gray.astype(np.uint8)))


@pytest.mark.parametrize("name, gray", [
    ("blank", np.zeros((40, 40))),
    ("white", np.full((40, 40), 255.0)),
    ("uniform gray", np.full((40, 40), 97.0)),
    ("one pixel", np.zeros((1, 1))),
    ("noise", np.random.default_rng(0).normal(128, 20, (80, 80))),
])
def test_no_digit_is_refused(name, gray):
    with pytest.raises(pp.NoDigitError, match="^no digit found"):
        pp.preprocess_gray(np.clip(gray, 0, 255))


def test_step12_area_resize_keeps_the_mean_and_is_the_identity_at_the_same_size():
    values = np.random.default_rng(1).uniform(0, 255, (30, 17))
    np.testing.assert_allclose(pp.area_resize(values, (30, 17)), values)
    small = pp.area_resize(values, (10, 6))
    assert small.shape == (10, 6)
    np.testing.assert_allclose(small.mean(), values.mean(), rtol=1e-9)


def test_a_real_mnist_digit_passes_through_unchanged():
    from app import data

    images, _ = data.in_memory(data.load_split("test[:50]"))
    bold = []
    for i, image in enumerate(images.numpy()[..., 0]):
        out = pp.preprocess_gray(image)
        values = pp.read_ink(image.astype(np.float32))
        if pp.even_strokes(values) is not values:  # step 11 trims a bold digit's soft edge
            bold.append(i)
            continue
        # Same place and size, the same strokes; the contrast stretch brightens faint digits.
        np.testing.assert_array_equal(np.argwhere(out).min(0), np.argwhere(image).min(0))
        np.testing.assert_array_equal(np.argwhere(out).max(0), np.argwhere(image).max(0))
        assert np.corrcoef(out.ravel(), image.ravel())[0, 1] > 0.98
        assert (out.astype(int) >= image.astype(int) - 1).mean() > 0.99
    assert bold == [11, 47]  # strokes 5.84 and 6.30 px wide once fitted


def test_conformance_cases_give_their_expected_28x28s_exactly():
    from app.conformance import read

    cases = read(ROOT / "tests" / "contract")
    assert len(cases) == 24 and sum("refusal" in case for case in cases) == 6
    for case in cases:
        if "refusal" in case:
            with pytest.raises(pp.NoDigitError, match=re.escape(case["refusal"])):
                pp.preprocess_file(case["picture"])
        else:
            np.testing.assert_array_equal(pp.preprocess_file(case["picture"]), case["pixels"],
                                          err_msg=case["picture"].name)


def test_conformance_cases_are_what_the_cases_command_writes(tmp_path):
    from app.conformance import read, write

    write(tmp_path / "contract")
    fresh, committed = read(tmp_path / "contract"), read(ROOT / "tests" / "contract")
    assert [c["shows"] for c in fresh] == [c["shows"] for c in committed]
    for new, old in zip(fresh, committed):
        assert new["picture"].name == old["picture"].name and new.get("refusal") == old.get("refusal")
        with Image.open(new["picture"]) as a, Image.open(old["picture"]) as b:
            assert a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b)), new["picture"].name
        if "pixels" in old:
            np.testing.assert_array_equal(new["pixels"], old["pixels"])
