// The preprocessing contract in JavaScript: any decoded image to the model's 28x28 input.
//
// This is the README's "Preprocessing contract", step for step, with the same constants as
// app/preprocess.py (a test compares the two lists). Arrays that are float32 in Python are
// Float32Arrays here and every elementwise operation is rounded to float32 (Math.fround),
// so both runtimes see the same numbers; what cannot be bit-identical (the order of long
// sums, a JPEG decoder) moves a pixel by at most one grey level.
//
// Step 1 (refusing huge images) and the decoding of step 2 happen in tinymnist.js, where
// the browser decodes the file; everything from here on is plain arrays, no DOM.

export const SIZE = 28; // the model's input side
export const BOX = 20; // the digit's longer side, as MNIST fitted it
export const CENTRE = 14.0; // where MNIST's centres of mass sit (row and column)
export const CENTRE_DECIMALS = 6; // the shift towards CENTRE is rounded to this many decimals before its half pixel
export const MAX_PIXELS = 64_000_000; // a 48-megapixel phone photo passes; a bomb does not
export const WORK_SIDE = 256; // images are box-reduced until their longer side is at most this
export const LIGHT_BACKGROUND = 128; // alpha: visible pixels at least this light go over black
export const FLAT_BORDER = 16; // a border whose 10th-90th percentile spread is at most this is flat
export const SHEET_CONTRAST = 64; // a middle this much lighter than the border is a sheet on a desk
export const SHEET_SHARE = 0.3; // ... when the sheet's largest piece has at least this share of the pixels
export const SHEET_FILL = 0.9; // ... and fills at least this share of its bounding box (a digit does not)
export const SHADED_SHEET_FILL = 0.8; // ... or this share, a shadow on the sheet, when that crop holds a digit
export const SHEET_MARGIN = 0.02; // the sheet's edge trimmed off, as a share of the longer side
export const POLARITY_WINDOW = 0.5; // the box mean polarity is judged against, share of the side
export const POLARITY_PERCENTILE = 0.5; // the darkest and lightest residuals are these percentiles
export const SPARSE_POLARITY_PERCENTILE = 0.1; // rarer tails, read first: a small digit's ink is fewer pixels
export const POLARITY_RATIO = 1.25; // ... and deciding when one reaches at least this many times as far as the other
export const BG_FRACTION = 0.4; // the background's opening is this share of the longer side wide
export const MIN_LIGHT = 16.0; // the least paper light divided by
export const NOISE_MADS = 2.0; // the noise floor: the paper's median plus this many scaled MADs
export const PEAK_PERCENTILE = 99.5; // the brightest pixels' level, for telling strokes from paper
export const INK_PERCENTILE = 80; // the ink level: this percentile of the strokes
export const MIN_CONTRAST = 12; // a peak or ink level less than this above the floor is no digit
export const SPARSE_PERCENTILE = 99.97; // the peak of sparse ink, when PEAK_PERCENTILE's is paper
export const SPARSE_SPREADS = 8.0; // ... when this many of the noise's spreads (1.4826 MAD) above the floor
export const SPECK_LEVEL = 64; // pixels above this (after the stretch) form the components
export const SPECK_FRACTION = 0.1; // components smaller than this share of the largest are specks
export const CORE_LEVEL = 128; // a digit's cores: pixels above half the ink level (a shadow's plateau is fainter)
export const HALO = 3; // pixels kept around the kept components (the strokes' soft edges)
export const MIN_DIGIT_PIXELS = 6; // the largest component must have at least this many pixels
export const LINE_LEVEL = 16; // ruled lines are found among the pixels above this (fainter than ink)
export const LINE_SHARE = 0.85; // a slice lit on this share of its pixels is a ruled line
export const LINE_END = 0.02; // ... when it is lit this close to both its ends, share of the width
export const LINE_WIDTH = 4; // ... and the slices this far away on either side are mostly paper
export const LINE_SLOPES = 9; // line slopes tried: k/64 for |k| up to this (about 8 degrees)
export const MIN_BOX = 32; // a box around the digit is looked for only when the ink spans this many pixels both ways
export const STROKE_WINDOWS = 5; // the second pass's opening is this many stroke widths wide
export const MARGIN = 0.25; // paper added around a digit cut out to its own box, share of the longer side
export const NOISE_ROUGHNESS = 1.15; // ... unless its neighbouring pixels differ this much (roughness): noise
export const EDGE_SIDE = 32; // step 9's edge test runs on pictures at least this long (a band of light needs room)
export const THICK_STROKE = 5.5; // strokes wider than this once fitted lose their soft edge (MNIST's: about 3.3)
export const THIN_STROKE = 1.5; // strokes thinner than this once fitted are widened to twice this (MNIST's: at least 2)
export const ZOOM_SIDE = 48; // a digit box at most this long in a reduced picture is read again at full size
export const ZOOM_MARGIN = 0.5; // ... from a crop this share of the box's longer side wider on every side
export const FLAT_SHAPE = 0.35; // a result whose lit box is less than this share of its width tall is a bar, no digit
export const SOLID_SHAPE = 0.9; // ... and one lit on this share of a box no taller than wide is a block, no digit

const f32 = Math.fround;

/** The image holds no digit to classify (blank, uniform, or only noise). */
export class NoDigitError extends Error {
  constructor(message) {
    super(message);
    this.name = "NoDigitError";
  }
}

/** Step 7's paper statistics landed on the ink: the ink is most of the picture (step 10 frames it). */
export class NoPaperError extends NoDigitError {
  constructor(message) {
    super(message);
    this.name = "NoPaperError";
  }
}

/** A gray image: float32 levels 0..255, row-major. */
export class Gray {
  /** `top` and `left`: where a crop (step 5's sheet) sits in the picture it was cut from. */
  constructor(data, width, height, top = 0, left = 0) {
    this.data = data;
    this.width = width;
    this.height = height;
    this.top = top;
    this.left = left;
  }
}

// --- step 2: box reduction, exactly as Pillow's Image.reduce -------------------------------

// Pillow divides a block's sum (plus half the block) by multiplying with 2^32 / (256 n),
// computed in single precision, and shifting right by 24.
function multiplier(n) {
  return Math.trunc(f32(f32(2 ** 32) / f32(256 * n)));
}

/** Pillow's `reduce(factor)` of RGBA bytes; premultiplied by alpha as Pillow does for RGBA. */
export function reduceRGBA(rgba, width, height, factor) {
  if (factor <= 1) return { rgba, width, height };
  const transparent = hasTransparency(rgba);
  const source = transparent ? premultiply(rgba) : rgba;
  const outW = Math.ceil(width / factor), outH = Math.ceil(height / factor);
  const out = new Uint8ClampedArray(outW * outH * 4);
  for (let y = 0; y < outH; y++) {
    const y1 = Math.min((y + 1) * factor, height);
    for (let x = 0; x < outW; x++) {
      const x1 = Math.min((x + 1) * factor, width);
      const n = (y1 - y * factor) * (x1 - x * factor);
      const m = multiplier(n), amend = Math.floor(n / 2);
      for (let c = 0; c < 4; c++) {
        let sum = amend;
        for (let yy = y * factor; yy < y1; yy++) {
          for (let xx = x * factor; xx < x1; xx++) sum += source[(yy * width + xx) * 4 + c];
        }
        // (sum * m) stays below 2^32, so the product and the shift are exact in doubles.
        out[(y * outW + x) * 4 + c] = Math.floor((sum * m) / 2 ** 24);
      }
    }
  }
  return { rgba: transparent ? unpremultiply(out) : out, width: outW, height: outH };
}

function hasTransparency(rgba) {
  for (let i = 3; i < rgba.length; i += 4) if (rgba[i] < 255) return true;
  return false;
}

function premultiply(rgba) {
  const out = new Uint8ClampedArray(rgba.length);
  for (let i = 0; i < rgba.length; i += 4) {
    const alpha = rgba[i + 3];
    for (let c = 0; c < 3; c++) {
      const t = rgba[i + c] * alpha + 128; // Pillow's MULDIV255
      out[i + c] = ((t >> 8) + t) >> 8;
    }
    out[i + 3] = alpha;
  }
  return out;
}

function unpremultiply(rgba) {
  const out = new Uint8ClampedArray(rgba.length);
  for (let i = 0; i < rgba.length; i += 4) {
    const alpha = rgba[i + 3];
    for (let c = 0; c < 3; c++) out[i + c] = alpha === 0 ? 0 : Math.min(255, Math.floor((255 * rgba[i + c]) / alpha));
    out[i + 3] = alpha;
  }
  return out;
}

// --- steps 3 and 4: alpha and gray ---------------------------------------------------------

/** Steps 3 and 4: RGBA bytes to gray levels, transparency composited against the ink. */
export function toGray(rgba, width, height) {
  const n = width * height;
  const gray = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    // ITU-R 601 luma in Pillow's fixed point.
    gray[i] = (rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 + 0x8000) >> 16;
  }
  if (!hasTransparency(rgba)) return new Gray(gray, width, height);
  const alpha = new Float32Array(n);
  let visible = 0, weighted = 0;
  for (let i = 0; i < n; i++) {
    alpha[i] = f32(rgba[4 * i + 3] / 255);
    visible += alpha[i];
    weighted += f32(gray[i] * alpha[i]);
  }
  // The visible pixels' colour decides the backdrop: light ink goes on black, dark on white.
  const inkLevel = visible > 0 ? weighted / visible : 0;
  const backdrop = inkLevel >= LIGHT_BACKGROUND ? 0 : 255;
  for (let i = 0; i < n; i++) gray[i] = f32(f32(gray[i] * alpha[i]) + f32(backdrop * f32(1 - alpha[i])));
  return new Gray(gray, width, height);
}

// --- numpy's statistics ----------------------------------------------------------------------

function sorted(values) {
  return Float32Array.from(values).sort();
}

/** numpy.percentile (linear interpolation) of an ascending array. */
function percentileSorted(s, q) {
  const index = (q / 100) * (s.length - 1);
  const lo = Math.floor(index), hi = Math.min(lo + 1, s.length - 1), t = index - lo;
  const d = s[hi] - s[lo];
  return t >= 0.5 ? s[hi] - d * (1 - t) : s[lo] + d * t;
}

function median(values) {
  const s = sorted(values), mid = s.length >> 1;
  return s.length % 2 ? s[mid] : f32((s[mid - 1] + s[mid]) / 2);
}

// --- separable filters with edges repeated (scipy's mode="nearest") -------------------------

function alongAxes(gray, filter1d) {
  const { width, height } = gray;
  let data = gray.data;
  // Columns (axis 0) first, then rows (axis 1), as scipy.ndimage does.
  const cols = new Float32Array(data.length), line = new Float64Array(height);
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) line[y] = data[y * width + x];
    const out = filter1d(line);
    for (let y = 0; y < height; y++) cols[y * width + x] = out[y];
  }
  data = cols;
  const rows = new Float32Array(data.length);
  for (let y = 0; y < height; y++) rows.set(filter1d(Float64Array.from(data.subarray(y * width, (y + 1) * width))), y * width);
  return new Gray(rows, width, height);
}

function extended(line, before, after) {
  const n = line.length, out = new Float64Array(n + before + after);
  for (let i = 0; i < out.length; i++) out[i] = line[Math.min(Math.max(i - before, 0), n - 1)];
  return out;
}

function uniform1d(size) {
  const half = size >> 1;
  return (line) => {
    const ext = extended(line, half, size - half - 1), out = new Float64Array(line.length);
    let sum = 0;
    for (let i = 0; i < size; i++) sum += ext[i];
    sum /= size;
    out[0] = sum;
    for (let i = 1; i < line.length; i++) {
      sum += (ext[i + size - 1] - ext[i - 1]) / size;
      out[i] = sum;
    }
    return out;
  };
}

function extreme1d(size, pick) {
  const half = size >> 1;
  return (line) => {
    const ext = extended(line, half, size - half - 1), out = new Float64Array(line.length);
    // A monotonic queue of candidate indices: each value enters and leaves once.
    const queue = new Int32Array(ext.length);
    let head = 0, tail = 0;
    for (let i = 0; i < ext.length; i++) {
      while (tail > head && pick(ext[i], ext[queue[tail - 1]])) tail--;
      queue[tail++] = i;
      if (queue[head] <= i - size) head++;
      if (i >= size - 1) out[i - size + 1] = ext[queue[head]];
    }
    return out;
  };
}

// --- step 5: polarity ------------------------------------------------------------------------

function border(gray) {
  const { data, width: w, height: h } = gray;
  if (Math.min(w, h) < 3) return Float32Array.from(data);
  const ring = [];
  for (let x = 0; x < w; x++) ring.push(data[x]);
  for (let x = 0; x < w; x++) ring.push(data[(h - 1) * w + x]);
  for (let y = 1; y < h - 1; y++) ring.push(data[y * w]);
  for (let y = 1; y < h - 1; y++) ring.push(data[y * w + w - 1]);
  return Float32Array.from(ring);
}

function oddWindow(fraction, gray) {
  return Math.max(3, Math.trunc(fraction * Math.max(gray.width, gray.height)) | 1);
}

/**
 * Step 5's sheet, a photo of a sheet on a darker desk, before its fill test: { sheet, size,
 * area } (the crop less the margin, the piece's pixels and its bounding box's pixels), or null
 * when there is no such piece.
 */
function sheetPiece(gray) {
  const { data, width, height } = gray;
  if (Math.min(width, height) < 8) return null;
  const desk = median(border(gray));
  const middle = [];
  for (let y = height >> 2; y < height - (height >> 2); y++) {
    for (let x = width >> 2; x < width - (width >> 2); x++) middle.push(data[y * width + x]);
  }
  const paper = median(Float32Array.from(middle));
  if (paper - desk < SHEET_CONTRAST) return null;
  // The largest 4-connected piece of the pixels above the midpoint (the first on a tie).
  const cut = (desk + paper) / 2;
  const labels = new Int32Array(data.length);
  let best = 0, bestSize = 0, count = 0;
  const stack = [];
  for (let start = 0; start < data.length; start++) {
    if (labels[start] || !(data[start] > cut)) continue;
    labels[start] = ++count;
    stack.push(start);
    let size = 0;
    while (stack.length) {
      const i = stack.pop(), y = Math.floor(i / width), x = i - y * width;
      size++;
      for (const [yy, xx] of [[y - 1, x], [y + 1, x], [y, x - 1], [y, x + 1]]) {
        const j = yy * width + xx;
        if (yy < 0 || yy >= height || xx < 0 || xx >= width || labels[j] || !(data[j] > cut)) continue;
        labels[j] = count;
        stack.push(j);
      }
    }
    if (size > bestSize) { best = count; bestSize = size; }
  }
  if (bestSize < SHEET_SHARE * data.length) return null;
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (labels[y * width + x] !== best) continue;
      top = Math.min(top, y); bottom = Math.max(bottom, y); left = Math.min(left, x); right = Math.max(right, x);
    }
  }
  const area = (bottom + 1 - top) * (right + 1 - left);
  const margin = Math.trunc(SHEET_MARGIN * Math.max(width, height));
  top += margin; left += margin; bottom += 1 - margin; right += 1 - margin;
  if (bottom - top < 8 || right - left < 8) return null;
  const cropped = new Float32Array((bottom - top) * (right - left));
  for (let y = top; y < bottom; y++) {
    for (let x = left; x < right; x++) cropped[(y - top) * (right - left) + x - left] = data[y * width + x];
  }
  return { sheet: new Gray(cropped, right - left, bottom - top, top, left), size: bestSize, area };
}

/** Step 5: "dark-on-light" when the ink is darker than the paper, else "light-on-dark". */
export function polarityOf(gray) {
  const ring = sorted(border(gray));
  let residual = new Float32Array(gray.data.length);
  if (percentileSorted(ring, 90) - percentileSorted(ring, 10) <= FLAT_BORDER) {
    const paper = f32(median(ring));
    for (let i = 0; i < residual.length; i++) residual[i] = f32(gray.data[i] - paper);
    // The pixels off the paper: a thin digit on a large canvas can be fewer than
    // POLARITY_PERCENTILE of all pixels, which would leave both tails on the paper.
    const off = residual.filter((v) => Math.abs(v) > FLAT_BORDER);
    if (off.length) residual = off;
  } else {
    const mean = alongAxes(gray, uniform1d(oddWindow(POLARITY_WINDOW, gray))).data;
    for (let i = 0; i < residual.length; i++) residual[i] = f32(gray.data[i] - mean[i]);
  }
  const s = sorted(residual);
  // A small digit in a large photo is under POLARITY_PERCENTILE of the pixels: those tails are
  // then the paper's shadows and gradients, alike on both sides, and the rarer tails, where the
  // ink lies, decide when one of them clearly reaches farther.
  let darkest = -percentileSorted(s, SPARSE_POLARITY_PERCENTILE);
  let lightest = percentileSorted(s, 100 - SPARSE_POLARITY_PERCENTILE);
  if (!(darkest >= POLARITY_RATIO * lightest || lightest >= POLARITY_RATIO * darkest)) {
    darkest = -percentileSorted(s, POLARITY_PERCENTILE);
    lightest = percentileSorted(s, 100 - POLARITY_PERCENTILE);
  }
  return darkest > lightest ? "dark-on-light" : "light-on-dark";
}

// --- steps 6 to 8: background, contrast, specks --------------------------------------------

/**
 * Step 6: the paper's level under every pixel, a grey opening wider than any stroke. With
 * `extended` (step 9's edge test), the opening is taken over `ink` extended by half the
 * window on every side (edge pixels repeated) and cropped back.
 */
export function background(ink, size = oddWindow(BG_FRACTION, ink), extended = false) {
  if (extended) {
    const reach = size >> 1, { width, height } = ink, w = width + 2 * reach;
    const paper = background(edgePadded(ink, reach), size).data, out = new Float32Array(width * height);
    for (let y = 0; y < height; y++) out.set(paper.subarray((y + reach) * w + reach, (y + reach) * w + reach + width), y * width);
    return new Gray(out, width, height);
  }
  const eroded = alongAxes(ink, extreme1d(size, (a, b) => a <= b));
  return alongAxes(eroded, extreme1d(size, (a, b) => a >= b));
}

/**
 * Steps 6 to 8: paper to 0, ink to 255, specks and noise removed. Throws NoDigitError.
 * `window` is step 6's opening window; undefined for the first pass's. `extended`: step 6's
 * opening over `ink` extended past its edges.
 */
export function normalise(ink, darkInk = false, window = undefined, extended = false) {
  const { width, height } = ink;
  const n = width * height;
  const paper = background(ink, window, extended).data;
  let values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = Math.min(Math.max(f32(ink.data[i] - paper[i]), 0), 255);
  if (darkInk) {
    // Light falls on ink and paper alike: ink in a shadow keeps its contrast.
    for (let i = 0; i < n; i++) values[i] = f32(values[i] * f32(255 / Math.max(f32(255 - paper[i]), MIN_LIGHT)));
  }
  // The ink covers a minority of the pixels, so their median and MAD are the paper's noise.
  const middle = median(values);
  const deviations = new Float32Array(n);
  for (let i = 0; i < n; i++) deviations[i] = Math.abs(f32(values[i] - middle));
  const mad = median(deviations);
  const floor = middle + NOISE_MADS * 1.4826 * mad;
  const ordered = sorted(values);
  let peak = percentileSorted(ordered, PEAK_PERCENTILE);
  if (peak - floor < MIN_CONTRAST) {
    // Under PEAK_PERCENTILE's share of ink (a small digit in a large picture): the peak is
    // paper. Rarer pixels far above the paper's noise, which noise alone never reaches, are ink.
    const sparse = percentileSorted(ordered, SPARSE_PERCENTILE);
    if (sparse - floor >= Math.max(MIN_CONTRAST, SPARSE_SPREADS * 1.4826 * mad)) peak = sparse;
  }
  // The median and MAD are the ink's, not the paper's: step 10 adds paper.
  if (peak <= floor) throw new NoPaperError("no digit found (blank or uniform image)");
  const cut = (floor + peak) / 2;
  const strokes = values.filter((v) => v > cut);
  if (strokes.length === 0 || peak - floor < MIN_CONTRAST) throw new NoDigitError("no digit found (blank or uniform image)");
  const level = percentileSorted(strokes.sort(), INK_PERCENTILE);
  if (level - floor < MIN_CONTRAST) throw new NoDigitError("no digit found (blank or uniform image)");
  const floor32 = f32(floor), gain32 = f32(255 / (level - floor));
  for (let i = 0; i < n; i++) values[i] = Math.min(Math.max(f32(f32(values[i] - floor32) * gain32), 0), 255);

  const cleared = clearLines(values, width, height);
  try {
    return clearBox(keepDigit(cleared, width, height));
  } catch (error) {
    // Clearing left no digit: one line may be a lone stroke ("1"), but several are a ruled
    // page with nothing written on it.
    if (!(error instanceof NoDigitError) || cleared === values || lineCount(values, width, height) > 1) throw error;
    return keepDigit(values, width, height);
  }
}

/** The 8-connected pieces of the pixels above `level`: labels, sizes, and which touch the border. */
function pieces(values, width, height, level) {
  const { labels, sizes } = components(values, width, height, level);
  const onBorder = new Uint8Array(sizes.length);
  for (const label of border({ data: labels, width, height })) if (label) onBorder[label - 1] = 1;
  return { labels, sizes, onBorder };
}

/** `values` within HALO 8-connected steps of the pieces whose sizes in `chosen` reach `least`, 0 elsewhere. */
function halo(values, labels, chosen, least) {
  const { width, height } = values;
  let kept = new Gray(new Float32Array(width * height), width, height);
  labels.forEach((label, i) => { if (label && chosen[label - 1] >= least) kept.data[i] = 1; });
  if (HALO) kept = alongAxes(kept, extreme1d(2 * HALO + 1, (a, b) => a >= b)); // HALO 8-connected steps
  return new Gray(values.data.map((v, i) => (kept.data[i] ? v : 0)), width, height);
}

/** Step 8's specks: keeps the digit's components and their halo. Throws NoDigitError. */
function specks(values) {
  const { labels, sizes, onBorder } = pieces(values.data, values.width, values.height, SPECK_LEVEL);
  // A shadow's edge or a corner of the desk reaches the border; a framed digit does not.
  const inside = sizes.map((size, j) => (onBorder[j] ? 0 : size));
  const chosen = maxOf(inside) >= MIN_DIGIT_PIXELS ? inside : sizes;
  const largest = maxOf(chosen);
  if (largest < MIN_DIGIT_PIXELS) throw new NoDigitError("no digit found (only specks or noise)");
  return halo(values, labels, chosen, SPECK_FRACTION * largest);
}

/**
 * Step 8's specks, and the digit's cores when what they keep reaches the border: a shadow's
 * edge joined to the digit is fainter than the ink, so among the pixels above CORE_LEVEL the
 * digit stands apart from the border. When those pieces apart (the largest at least
 * MIN_DIGIT_PIXELS) outweigh every piece on it (each under SPECK_FRACTION of that largest),
 * the specks step runs again on the pixels within HALO of the pieces apart it would keep.
 */
function keepDigit(values, width, height) {
  const gray = new Gray(values, width, height);
  const kept = specks(gray);
  if (!border(kept).some((v) => v > SPECK_LEVEL)) return kept; // most pictures
  const { labels, sizes, onBorder } = pieces(values, width, height, CORE_LEVEL);
  const inside = sizes.map((size, j) => (onBorder[j] ? 0 : size));
  const largest = maxOf(inside);
  const onIt = maxOf(sizes.filter((size, j) => onBorder[j]));
  if (largest < MIN_DIGIT_PIXELS || onIt >= SPECK_FRACTION * largest) return kept;
  return specks(halo(gray, labels, inside, SPECK_FRACTION * largest));
}

/**
 * Step 8's ruled lines along the rows: a mask (1 = a line's pixel) of `lit`, a row-major
 * width x height mask. A slice is the pixels with y - floor(x k / 64 + 0.5) = r; of all
 * slopes k the one whose counts have the largest sum of squares is used (the first on a tie).
 * With `box`, `lit` is a box's bounding box: a side may also stop short of its ends by
 * ceil(height |k| / 64), as far as the other direction's sides, turned alike, drift.
 */
function rowLines(lit, width, height, box = false) {
  const size = height + 2 * width + 1;
  const sliceOf = (x, y, k) => y - Math.floor((x * k) / 64 + 0.5) + width; // integers / 64: exact
  let best = null;
  for (let k = -LINE_SLOPES; k <= LINE_SLOPES; k++) {
    const counts = new Int32Array(size);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) if (lit[y * width + x]) counts[sliceOf(x, y, k)]++;
    // The slope along which the lines lie gathers their pixels into the fewest, fullest slices.
    let sharpness = 0;
    for (const c of counts) sharpness += c * c;
    if (best === null || sharpness > best.sharpness) best = { k, counts, sharpness };
  }
  const { k, counts } = best;
  const length = new Int32Array(size), first = new Int32Array(size).fill(width), last = new Int32Array(size).fill(-1);
  const firstLit = new Int32Array(size).fill(width), lastLit = new Int32Array(size).fill(-1);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const r = sliceOf(x, y, k);
      length[r]++;
      first[r] = Math.min(first[r], x);
      last[r] = Math.max(last[r], x);
      if (lit[y * width + x]) {
        firstLit[r] = Math.min(firstLit[r], x);
        lastLit[r] = Math.max(lastLit[r], x);
      }
    }
  }
  // A line is thin: the slices LINE_WIDTH away on both sides are mostly paper (or outside).
  const paper = (r) => r < 0 || r >= size || 2 * counts[r] <= length[r];
  const ends = Math.trunc(LINE_END * width) + (box ? Math.floor((height * Math.abs(k) + 63) / 64) : 0);
  // Lit within LINE_END of both ends, in the slice or those beside it (where a line drifts).
  const nearFirst = (r) => Math.min(firstLit[r], r > 0 ? firstLit[r - 1] : width, r + 1 < size ? firstLit[r + 1] : width);
  const nearLast = (r) => Math.max(lastLit[r], r > 0 ? lastLit[r - 1] : -1, r + 1 < size ? lastLit[r + 1] : -1);
  const line = new Uint8Array(size);
  for (let r = 0; r < size; r++) {
    line[r] = counts[r] >= LINE_SHARE * length[r] && 2 * length[r] >= width && paper(r - LINE_WIDTH) &&
      paper(r + LINE_WIDTH) && nearFirst(r) - first[r] <= ends && last[r] - nearLast(r) <= ends ? 1 : 0;
  }
  const found = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) if (lit[y * width + x] && line[sliceOf(x, y, k)]) found[y * width + x] = 1;
  }
  return found;
}

/** Step 8's ruled lines among the pixels above LINE_LEVEL: row lines, and column lines transposed. */
function linesOf(values, width, height, box = false) {
  const lit = Uint8Array.from(values, (v) => (v > LINE_LEVEL ? 1 : 0));
  const rows = rowLines(lit, width, height, box);
  const transposed = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) transposed[x * height + y] = lit[y * width + x];
  return { rows, columnsT: rowLines(transposed, height, width, box) };
}

/** How many ruled lines step 8 finds: the 8-connected pieces of the lines' pixels. */
function lineCount(values, width, height) {
  const { rows, columnsT } = linesOf(values, width, height);
  const onLine = new Float32Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    if (rows[y * width + x] || columnsT[x * height + y]) onLine[y * width + x] = 255;
  }
  return components(onLine, width, height).sizes.length;
}

/**
 * Step 8's ruled lines set to 0 (their pixels and 8-neighbours), except where the pixels
 * LINE_WIDTH away across the line, on both sides, are strokes (above SPECK_LEVEL, not on a
 * line of the other direction). With `box`, `values` is a box's bounding box (see rowLines).
 */
export function clearLines(values, width, height, box = false) {
  const { rows, columnsT } = linesOf(values, width, height, box);
  if (!rows.includes(1) && !columnsT.includes(1)) return values; // most pictures have no lines
  // A stroke: above SPECK_LEVEL and not on a line of the other direction (squared paper).
  const rowStroke = (y, x) => y >= 0 && y < height && x >= 0 && x < width && values[y * width + x] > SPECK_LEVEL &&
    !columnsT[x * height + y];
  const columnStroke = (y, x) => y >= 0 && y < height && x >= 0 && x < width && values[y * width + x] > SPECK_LEVEL &&
    !rows[y * width + x];
  const clear = new Uint8Array(width * height);
  let any = false;
  for (const [line, stroke, dy, dx] of [[(y, x) => rows[y * width + x], rowStroke, LINE_WIDTH, 0],
    [(y, x) => columnsT[x * height + y], columnStroke, 0, LINE_WIDTH]]) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (stroke(y - dy, x - dx) && stroke(y + dy, x + dx)) continue; // a stroke crosses here
        let near = false; // a line pixel within one step (8-neighbours)
        for (let yy = Math.max(0, y - 1); yy <= Math.min(height - 1, y + 1) && !near; yy++) {
          for (let xx = Math.max(0, x - 1); xx <= Math.min(width - 1, x + 1); xx++) if (line(yy, xx)) near = true;
        }
        if (near) { clear[y * width + x] = 1; any = true; }
      }
    }
  }
  return any ? values.map((v, i) => (clear[i] ? 0 : v)) : values;
}

/**
 * Step 8's box: a box drawn around the digit is cleared. It is looked for around all the
 * pixels above SPECK_LEVEL, then around each 8-connected piece of them, largest first (the
 * first on a tie); the first bounding box that holds one keeps only what is inside.
 */
function clearBox(kept) {
  const { data, width, height } = kept;
  const { labels, sizes } = components(data, width, height);
  const boxes = sizes.map(() => ({ top: height, left: width, bottom: 0, right: 0 })); // ends exclusive
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const label = labels[y * width + x];
      if (!label) continue;
      const b = boxes[label - 1];
      b.top = Math.min(b.top, y); b.left = Math.min(b.left, x);
      b.bottom = Math.max(b.bottom, y + 1); b.right = Math.max(b.right, x + 1);
    }
  }
  const all = boxes.reduce((a, b) => ({ top: Math.min(a.top, b.top), left: Math.min(a.left, b.left),
    bottom: Math.max(a.bottom, b.bottom), right: Math.max(a.right, b.right) }));
  const largestFirst = sizes.map((_, i) => i).sort((a, b) => sizes[b] - sizes[a] || a - b);
  for (const box of [all, ...largestFirst.map((i) => boxes[i])]) {
    const h = box.bottom - box.top, w = box.right - box.left;
    const crop = new Float32Array(h * w);
    for (let y = 0; y < h; y++) crop.set(data.subarray((box.top + y) * width + box.left, (box.top + y) * width + box.right), y * w);
    const inside = boxContents(crop, w, h);
    if (inside === null) continue;
    const out = new Float32Array(width * height);
    for (let y = 0; y < h; y++) out.set(inside.subarray(y * w, (y + 1) * w), (box.top + y) * width + box.left);
    return new Gray(out, width, height);
  }
  return kept;
}

/** What clearBox keeps of one bounding box (row-major, width x height), or null when it holds no box. */
function boxContents(crop, width, height) {
  if (Math.min(width, height) < MIN_BOX) return null; // a digit's own strokes would pass for sides
  const { rows, columnsT } = linesOf(crop, width, height, true);
  const any = (mask, from, to) => mask.subarray(from, to).includes(1);
  // Row lines within LINE_WIDTH of the top and the bottom, column lines of the left and the right.
  if (!(any(rows, 0, LINE_WIDTH * width) && any(rows, (height - LINE_WIDTH) * width, height * width) &&
    any(columnsT, 0, LINE_WIDTH * height) && any(columnsT, (width - LINE_WIDTH) * height, width * height))) return null;
  let inside;
  try {
    inside = keepDigit(clearLines(crop, width, height, true), width, height).data;
  } catch (error) {
    if (error instanceof NoDigitError) return null;
    throw error;
  }
  // What a box holds stays clear of its sides; the corners of a boxy "0" would not.
  const { top, bottom, left, right } = inkBox({ data: inside.map((v) => (v > SPECK_LEVEL ? 1 : 0)), width, height });
  return Math.min(top, left, height - 1 - bottom, width - 1 - right) < LINE_WIDTH ? null : inside;
}

function maxOf(values) {
  return values.reduce((a, b) => Math.max(a, b), 0);
}

/** 8-connected components of the pixels above `level`: labels (1-based) and sizes. */
function components(values, width, height, level = SPECK_LEVEL) {
  const labels = new Int32Array(values.length), sizes = [];
  const stack = [];
  for (let start = 0; start < values.length; start++) {
    if (labels[start] || !(values[start] > level)) continue;
    const label = sizes.length + 1;
    let size = 0;
    labels[start] = label;
    stack.push(start);
    while (stack.length) {
      const i = stack.pop(), y = Math.floor(i / width), x = i - y * width;
      size++;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy, xx = x + dx, j = yy * width + xx;
          if (yy < 0 || yy >= height || xx < 0 || xx >= width || labels[j] || !(values[j] > level)) continue;
          labels[j] = label;
          stack.push(j);
        }
      }
    }
    sizes.push(size);
  }
  return { labels, sizes };
}

// --- step 9: the edge test, then a second pass with an opening a few stroke widths wide -------

/**
 * Steps 6 to 8 with the first pass's window, then step 9's edge test: when what they keep
 * touches the border, steps 6-8 run again with step 6's opening extended past the edges
 * (paper lit more brightly towards an edge leaves a band of light there otherwise); when
 * those find no digit (step 10's case aside), there is none. Throws NoDigitError.
 */
export function firstPass(ink, darkInk = false) {
  const values = normalise(ink, darkInk);
  if (Math.max(ink.width, ink.height) >= EDGE_SIDE && border(values).some((v) => v > SPECK_LEVEL)) {
    try {
      normalise(ink, darkInk, undefined, true);
    } catch (error) {
      if (!(error instanceof NoDigitError)) throw error;
      if (!(error instanceof NoPaperError)) throw new NoDigitError("no digit found (only uneven light along an edge)");
    }
  }
  return values;
}

/** Step 9's measure: 2 x the pixels above SPECK_LEVEL / those with a 4-neighbour (or edge) not above. */
export function strokeWidth(values) {
  const { data, width, height } = values;
  const ink = (y, x) => y >= 0 && y < height && x >= 0 && x < width && data[y * width + x] > SPECK_LEVEL;
  let area = 0, outline = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!ink(y, x)) continue;
      area++;
      if (!(ink(y - 1, x) && ink(y + 1, x) && ink(y, x - 1) && ink(y, x + 1))) outline++;
    }
  }
  return (2 * area) / Math.max(outline, 1);
}

/** Step 9: steps 6 to 8 again with a window STROKE_WINDOWS stroke widths wide, when narrower. */
export function refine(ink, values, darkInk = false) {
  const window = Math.max(3, Math.floor(STROKE_WINDOWS * strokeWidth(values)) | 1);
  if (window >= oddWindow(BG_FRACTION, ink)) return values;
  try {
    return normalise(ink, darkInk, window);
  } catch (error) {
    if (error instanceof NoDigitError) return values; // the first pass found one: keep it
    throw error;
  }
}

// --- step 10: a frame of paper around a digit cut out to its own box -------------------------

/**
 * Step 10's test: the mean absolute difference of horizontal and of vertical neighbours,
 * averaged (one of them on a picture one pixel wide or tall), over the mean absolute
 * deviation; 0 for a uniform picture. Noise gives about 1.33-1.41, a digit's strokes under 1.
 */
export function roughness({ data, width, height }) {
  let mean = 0;
  for (let i = 0; i < data.length; i++) mean += data[i];
  mean /= data.length;
  let spread = 0;
  for (let i = 0; i < data.length; i++) spread += Math.abs(data[i] - mean);
  spread /= data.length;
  const steps = [];
  if (height > 1) {
    let sum = 0;
    for (let i = width; i < data.length; i++) sum += Math.abs(data[i] - data[i - width]);
    steps.push(sum / ((height - 1) * width));
  }
  if (width > 1) {
    let sum = 0;
    for (let y = 0; y < height; y++) for (let x = 1; x < width; x++) sum += Math.abs(data[y * width + x] - data[y * width + x - 1]);
    steps.push(sum / (height * (width - 1)));
  }
  return steps.length && spread > 0 ? steps.reduce((a, b) => a + b) / steps.length / spread : 0;
}

/** Step 10's frame: `ink` inside MARGIN x its longer side of step 6's background, carried out from the edge. */
export function framed(ink) {
  const { width, height } = ink;
  const margin = Math.trunc(MARGIN * Math.max(width, height));
  const out = edgePadded(background(ink), margin), w = out.width;
  for (let y = 0; y < height; y++) out.data.set(ink.data.subarray(y * width, (y + 1) * width), (y + margin) * w + margin);
  return out;
}

/** `gray` extended by `margin` pixels on every side, each new pixel the nearest edge pixel (numpy's "edge" pad). */
function edgePadded(gray, margin) {
  const { data, width, height } = gray, w = width + 2 * margin, h = height + 2 * margin;
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(Math.max(y - margin, 0), height - 1);
    for (let x = 0; x < w; x++) out[y * w + x] = data[sy * width + Math.min(Math.max(x - margin, 0), width - 1)];
  }
  return new Gray(out, w, h);
}

/**
 * Steps 6 to 10: the digit alone, paper 0, ink up to 255. When step 7 finds the ink is most of
 * the picture (NoPaperError), steps 6-9 run again inside `framed(ink)`; if they find no digit
 * either, the first refusal stands. Throws NoDigitError.
 */
export function readInk(ink, darkInk = false) {
  try {
    return refine(ink, firstPass(ink, darkInk), darkInk);
  } catch (refusal) {
    if (!(refusal instanceof NoPaperError)) throw refusal;
    // No paper and no strokes: noise all over.
    if (roughness(ink) >= NOISE_ROUGHNESS) throw new NoDigitError("no digit found (only noise)");
    const wide = framed(ink); // MARGIN = 0 frames nothing: the same refusal again
    try {
      return refine(wide, firstPass(wide, darkInk), darkInk);
    } catch (error) {
      if (!(error instanceof NoDigitError)) throw error;
      throw refusal;
    }
  }
}

// --- step 11: stroke width ---------------------------------------------------------------

/** The bounding box of the non-zero pixels (rows top..bottom, columns left..right, inclusive). */
function inkBox({ data, width, height }) {
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (data[y * width + x] !== 0) {
        top = Math.min(top, y); bottom = Math.max(bottom, y);
        left = Math.min(left, x); right = Math.max(right, x);
      }
    }
  }
  return { top, bottom, left, right };
}

/**
 * Step 11: strokes far wider (THICK_STROKE) or thinner (THIN_STROKE) than MNIST's once fitted
 * are brought towards its width: a thick digit loses its soft edge, a thin one is dilated.
 */
export function evenStrokes(values) {
  const { data, width, height } = values;
  const { top, bottom, left, right } = inkBox(values);
  const longer = Math.max(bottom - top, right - left) + 1;
  const fitted = (strokeWidth(values) * BOX) / longer;
  if (fitted > THICK_STROKE) {
    // Step 8 kept pixels above SPECK_LEVEL, so the digit never vanishes.
    const gain = f32(255 / (255 - SPECK_LEVEL));
    return new Gray(data.map((v) => Math.min(Math.max(f32(f32(v - SPECK_LEVEL) * gain), 0), 255)), width, height);
  }
  if (fitted < THIN_STROKE) {
    const size = Math.max(3, Math.trunc(((2 * THIN_STROKE - fitted) * longer) / BOX) | 1);
    return alongAxes(values, extreme1d(size, (a, b) => a >= b));
  }
  return values;
}

// --- steps 12 and 13: fit and centre ---------------------------------------------------------

const roundHalfUp = (x) => Math.floor(x + 0.5);
/** Step 13's shift: floor(offset + 0.5), offset first rounded to CENTRE_DECIMALS (a symmetric digit's half pixel). */
const centreShift = (offset) => Math.floor(Math.floor(offset * 10 ** CENTRE_DECIMALS + 0.5) / 10 ** CENTRE_DECIMALS + 0.5);

/** Area resampling along one axis: each output pixel averages the source span it covers. */
function areaWeights(m, n) {
  const step = m / n, weights = [];
  for (let i = 0; i < n; i++) {
    const lo = i * step, hi = (i + 1) * step, row = new Float64Array(m);
    let total = 0;
    for (let j = 0; j < m; j++) {
      row[j] = Math.max(Math.min(hi, j + 1) - Math.max(lo, j), 0);
      total += row[j];
    }
    for (let j = 0; j < m; j++) row[j] /= total;
    weights.push(row);
  }
  return weights;
}

function areaResize(crop, cropH, cropW, h, w) {
  const wy = areaWeights(cropH, h), wx = areaWeights(cropW, w);
  const tall = new Float64Array(h * cropW);
  for (let i = 0; i < h; i++) {
    for (let x = 0; x < cropW; x++) {
      let sum = 0;
      for (let j = 0; j < cropH; j++) sum += wy[i][j] * crop[j * cropW + x];
      tall[i * cropW + x] = sum;
    }
  }
  const out = new Float64Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let i = 0; i < w; i++) {
      let sum = 0;
      for (let j = 0; j < cropW; j++) sum += wx[i][j] * tall[y * cropW + j];
      out[y * w + i] = sum;
    }
  }
  return out;
}

/** Steps 12 and 13: crops the ink, fits it into BOX, centres it by mass in SIZE x SIZE. */
export function fitAndCentre(values) {
  const { data, width } = values;
  const { top, bottom, left, right } = inkBox(values);
  const cropH = bottom - top + 1, cropW = right - left + 1;
  const crop = new Float64Array(cropH * cropW);
  for (let y = 0; y < cropH; y++) for (let x = 0; x < cropW; x++) crop[y * cropW + x] = data[(top + y) * width + left + x];
  const scale = BOX / Math.max(cropH, cropW);
  const h = Math.max(1, roundHalfUp(cropH * scale)), w = Math.max(1, roundHalfUp(cropW * scale));
  const digit = h === cropH && w === cropW ? crop : areaResize(crop, cropH, cropW, h, w);
  let mass = 0, rowMass = 0, colMass = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = digit[y * w + x];
      mass += v; rowMass += y * v; colMass += x * v;
    }
  }
  let row = (SIZE - h) >> 1, col = (SIZE - w) >> 1;
  const dy = centreShift(CENTRE - (row + rowMass / mass)), dx = centreShift(CENTRE - (col + colMass / mass));
  // Keep the whole digit in the frame.
  row = Math.min(Math.max(row + dy, 0), SIZE - h);
  col = Math.min(Math.max(col + dx, 0), SIZE - w);
  const frame = new Uint8Array(SIZE * SIZE);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) frame[(row + y) * SIZE + col + x] = Math.min(Math.max(roundHalfUp(digit[y * w + x]), 0), 255);
  }
  return frame;
}

// --- the whole contract ----------------------------------------------------------------------

/**
 * Steps 5 to 11: the digit alone, its box in `gray`'s pixels and the part of `gray` it was read
 * from (step 5's sheet, or all of it); boxes as { top, left, bottom, right }, ends exclusive.
 */
function digitOf(gray, polarity) {
  const piece = sheetPiece(gray);
  if (piece && piece.size >= SHEET_FILL * piece.area) return digitOn(piece.sheet, polarity);
  if (piece && piece.size >= SHADED_SHEET_FILL * piece.area) {
    try {
      return digitOn(piece.sheet, polarity);
    } catch (error) {
      // A bold light digit fills its box almost as a shaded sheet does.
      if (!(error instanceof NoDigitError)) throw error;
    }
  }
  return digitOn(gray, polarity);
}

/** Steps 5 (polarity) to 11 on `sheet`, a crop of the picture or all of it: `digitOf`'s result. */
function digitOn(sheet, polarity) {
  if (polarity === "auto") polarity = polarityOf(sheet);
  const darkInk = polarity === "dark-on-light";
  const ink = darkInk ? new Gray(sheet.data.map((v) => f32(255 - v)), sheet.width, sheet.height) : sheet;
  const values = evenStrokes(readInk(ink, darkInk));
  const { top, bottom, left, right } = inkBox(values);
  return {
    values,
    box: { top: top + sheet.top, left: left + sheet.left, bottom: bottom + 1 + sheet.top, right: right + 1 + sheet.left },
    area: { top: sheet.top, left: sheet.left, bottom: sheet.top + sheet.height, right: sheet.left + sheet.width },
  };
}

// --- step 15: no bar and no block ---------------------------------------------------------------

/** Step 15: the 28x28 `pixels` unless their lit part is a bar or a block. Throws NoDigitError. */
export function digitShaped(pixels) {
  const mask = pixels.map((v) => (v > SPECK_LEVEL ? 1 : 0));
  const lit = mask.reduce((a, b) => a + b, 0);
  if (lit === 0) return pixels;
  const { top, bottom, left, right } = inkBox({ data: mask, width: SIZE, height: SIZE });
  const h = bottom - top + 1, w = right - left + 1;
  if (h < FLAT_SHAPE * w || (h <= w && lit >= SOLID_SHAPE * h * w)) {
    throw new NoDigitError("no digit found (a bar or a block, not a digit's shape)");
  }
  return pixels;
}

/** Steps 5 to 13 and 15: a gray image to the model's input, uint8 [28 * 28], light digit on black. */
export function preprocessGray(gray, polarity = "auto") {
  return digitShaped(fitAndCentre(digitOf(gray, polarity).values));
}

/** The pixels of RGBA bytes inside [left, right) x [top, bottom). */
function cropRGBA(rgba, width, { top, left, bottom, right }) {
  const out = new Uint8ClampedArray((bottom - top) * (right - left) * 4);
  for (let y = top; y < bottom; y++) {
    out.set(rgba.subarray((y * width + left) * 4, (y * width + right) * 4), (y - top) * (right - left) * 4);
  }
  return out;
}

/** Steps 2 (the reduction) to 11 for decoded RGBA bytes: the reduction's factor and `digitOf`'s result. */
function readDigit(rgba, width, height, polarity) {
  const factor = Math.ceil(Math.max(width, height) / WORK_SIDE);
  const reduced = reduceRGBA(rgba, width, height, factor);
  return { factor, ...digitOf(toGray(reduced.rgba, reduced.width, reduced.height), polarity) };
}

/** Steps 2 (the reduction) to 15 for decoded RGBA bytes, such as a canvas's ImageData. */
export function preprocessRGBA(rgba, width, height, polarity = "auto") {
  const { factor, values, box, area } = readDigit(rgba, width, height, polarity);
  const first = fitAndCentre(values);
  const longer = Math.max(box.bottom - box.top, box.right - box.left);
  if (factor === 1 || longer > ZOOM_SIDE) return digitShaped(first);
  // Step 14: a small digit in a reduced picture, read again from the picture's own pixels,
  // from a crop around it that stays on the sheet.
  const margin = Math.trunc(ZOOM_MARGIN * longer);
  const crop = {
    top: Math.max(box.top - margin, area.top) * factor,
    left: Math.max(box.left - margin, area.left) * factor,
    bottom: Math.min(Math.min(box.bottom + margin, area.bottom) * factor, height),
    right: Math.min(Math.min(box.right + margin, area.right) * factor, width),
  };
  try {
    const w = crop.right - crop.left, h = crop.bottom - crop.top;
    return digitShaped(fitAndCentre(readDigit(cropRGBA(rgba, width, crop), w, h, polarity).values));
  } catch (error) {
    if (error instanceof NoDigitError) return digitShaped(first);
    throw error;
  }
}
