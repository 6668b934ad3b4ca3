// The digit classifier on LiteRT.js, and the page's small API: window.tinymnist.
//
//   await tinymnist.ready;                       // the model is loaded
//   await tinymnist.classify(pixels);            // Uint8Array(784): MNIST-style, row-major
//   await tinymnist.classifyImage(blob);         // any image Blob, through the contract
//   await tinymnist.readImage(blob);             // any image Blob, through the reader model
//
// The first two resolve to {digit, probabilities} (classifyImage adds `pixels`, the 28x28 the
// model saw); classifyImage rejects with "no digit found (...)" for a blank or noise-only image.
// readImage stretches the picture to the reader's square, as MediaPipe does, and resolves to
// {label, digit, probabilities}: label "0"-"9" or "none", digit null for "none".
import { loadAndCompile, loadLiteRt, Tensor } from "@litertjs/core";

import { MAX_PIXELS, NoDigitError, SIZE, preprocessRGBA } from "./preprocess.js";

// The wasm runtime and the model are served beside this file: the page works offline.
const WASM = new URL("./node_modules/@litertjs/core/wasm/", import.meta.url).href;
const MODEL = new URL("./model_int8.tflite", import.meta.url).href;
// The reader: uint8 RGB [1, 96, 96, 3] in, 11 float32 probabilities (digits, then "none") out.
const READER = new URL("./digit_reader.tflite", import.meta.url).href;
const READER_SIDE = 96;
const READER_LABELS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "none"];
// The int8 model takes raw pixels (uint8, scale 1) and gives uint8 probabilities: TFLite
// quantizes a softmax output with scale 1/256 and zero point 0.
const OUTPUT_SCALE = 1 / 256;

let model = null;
let reader = null;

async function load() {
  await loadLiteRt(WASM);
  model = await loadAndCompile(MODEL, { accelerator: "wasm" });
  reader = await loadAndCompile(READER, { accelerator: "wasm" });
  const given = reader.getInputDetails()[0];
  if (given.dtype !== "uint8" || given.shape.join() !== [1, READER_SIDE, READER_SIDE, 3].join()) {
    throw new Error(`${READER} is not the digit reader (input ${given.dtype}[${given.shape}])`);
  }
  const input = model.getInputDetails()[0], output = model.getOutputDetails()[0];
  if (input.dtype !== "uint8" || output.dtype !== "uint8" || input.shape.join() !== [1, SIZE, SIZE, 1].join()) {
    throw new Error(`${MODEL} is not the int8 digit model (input ${input.dtype}[${input.shape}], output ${output.dtype})`);
  }
}

const ready = load();

/** Classifies one preprocessed image: 784 uint8 values, light digit on black, row-major. */
async function classify(pixels) {
  await ready;
  if (!pixels || pixels.length !== SIZE * SIZE) {
    throw new Error(`classify expects ${SIZE * SIZE} pixel values, got ${pixels ? pixels.length : pixels}`);
  }
  const input = new Tensor(Uint8Array.from(pixels), [1, SIZE, SIZE, 1]);
  let outputs;
  try {
    outputs = await model.run(input);
  } finally {
    input.delete();
  }
  const bytes = outputs[0].toTypedArray().slice();
  for (const tensor of outputs) tensor.delete();
  const probabilities = Array.from(bytes, (b) => b * OUTPUT_SCALE);
  let digit = 0;
  for (let d = 1; d < probabilities.length; d++) if (probabilities[d] > probabilities[digit]) digit = d;
  return { digit, probabilities };
}

/** Decodes an image Blob to RGBA bytes, EXIF orientation applied, colours as stored. */
async function decode(blob) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, {
      imageOrientation: "from-image",
      premultiplyAlpha: "none",
      colorSpaceConversion: "none",
    });
  } catch {
    throw new Error("not an image (the browser cannot decode it)");
  }
  const { width, height } = bitmap;
  if (width * height > MAX_PIXELS) {
    bitmap.close();
    throw new Error(`image too large (${width}x${height} pixels, at most ${MAX_PIXELS.toLocaleString("en")})`);
  }
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return context.getImageData(0, 0, width, height);
}

/** The contract's input for canvas pixels (ImageData), e.g. a drawing. */
function preprocessImageData(image) {
  return preprocessRGBA(image.data, image.width, image.height);
}

/** Applies the preprocessing contract to any image Blob, then classifies it. */
async function classifyImage(blob) {
  const pixels = preprocessImageData(await decode(blob));
  return { ...(await classify(pixels)), pixels };
}

/** Reads RGB bytes of a picture already stretched to READER_SIDE x READER_SIDE. */
async function readPixels(rgb) {
  await ready;
  if (!rgb || rgb.length !== READER_SIDE * READER_SIDE * 3) {
    throw new Error(`readPixels expects ${READER_SIDE * READER_SIDE * 3} RGB values, got ${rgb ? rgb.length : rgb}`);
  }
  const input = new Tensor(Uint8Array.from(rgb), [1, READER_SIDE, READER_SIDE, 3]);
  let outputs;
  try {
    outputs = await reader.run(input);
  } finally {
    input.delete();
  }
  const probabilities = Array.from(outputs[0].toTypedArray());
  for (const tensor of outputs) tensor.delete();
  let best = 0;
  for (let k = 1; k < probabilities.length; k++) if (probabilities[k] > probabilities[best]) best = k;
  const label = READER_LABELS[best];
  return { label, digit: label === "none" ? null : best, probabilities };
}

/** Stretches an image Blob to the reader's square (no aspect kept, as MediaPipe does) and reads it. */
async function readImage(blob) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: "from-image", colorSpaceConversion: "none" });
  } catch {
    throw new Error("not an image (the browser cannot decode it)");
  }
  const canvas = new OffscreenCanvas(READER_SIDE, READER_SIDE);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.imageSmoothingQuality = "low"; // bilinear, as LiteRT's and MediaPipe's resizers
  context.drawImage(bitmap, 0, 0, READER_SIDE, READER_SIDE);
  bitmap.close();
  const rgba = context.getImageData(0, 0, READER_SIDE, READER_SIDE).data;
  const rgb = new Uint8Array(READER_SIDE * READER_SIDE * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) rgb.set([rgba[i], rgba[i + 1], rgba[i + 2]], j);
  return readPixels(rgb);
}

window.tinymnist = { ready, classify, classifyImage, readImage, readPixels, preprocessImageData, NoDigitError };
export { ready, classify, classifyImage, readImage, readPixels, preprocessImageData, NoDigitError };
