// The digit classifier on LiteRT.js, and the page's small API: window.tinymnist.
//
//   await tinymnist.ready;                       // the model is loaded
//   await tinymnist.classify(pixels);            // Uint8Array(784): MNIST-style, row-major
//   await tinymnist.classifyImage(blob);         // any image Blob, through the contract
//
// Both resolve to {digit, probabilities} (classifyImage adds `pixels`, the 28x28 the model
// saw); classifyImage rejects with "no digit found (...)" for a blank or noise-only image.
import { loadAndCompile, loadLiteRt, Tensor } from "@litertjs/core";

import { MAX_PIXELS, NoDigitError, SIZE, preprocessRGBA } from "./preprocess.js";

// The wasm runtime and the model are served beside this file: the page works offline.
const WASM = new URL("./node_modules/@litertjs/core/wasm/", import.meta.url).href;
const MODEL = new URL("./model_int8.tflite", import.meta.url).href;
// The int8 model takes raw pixels (uint8, scale 1) and gives uint8 probabilities: TFLite
// quantizes a softmax output with scale 1/256 and zero point 0.
const OUTPUT_SCALE = 1 / 256;

let model = null;

async function load() {
  await loadLiteRt(WASM);
  model = await loadAndCompile(MODEL, { accelerator: "wasm" });
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

window.tinymnist = { ready, classify, classifyImage, preprocessImageData, NoDigitError };
export { ready, classify, classifyImage, preprocessImageData, NoDigitError };
