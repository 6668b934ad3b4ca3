// Runs the JavaScript contract on decoded pictures, as a port would: node contract.mjs REQUEST RESULT.
// REQUEST lists {file, width, height}: raw RGBA bytes, EXIF orientation already applied.
// RESULT gets, for each, the 784 pixels of preprocessRGBA or the message it refused with.
import fs from "node:fs";
import path from "node:path";

import { NoDigitError, preprocessRGBA } from "../preprocess.js";

const [requestPath, resultPath] = process.argv.slice(2);
const pictures = JSON.parse(fs.readFileSync(requestPath, "utf8"));
const results = pictures.map(({ file, width, height }) => {
  const rgba = new Uint8ClampedArray(fs.readFileSync(path.resolve(path.dirname(requestPath), file)));
  try {
    return { pixels: Array.from(preprocessRGBA(rgba, width, height)) };
  } catch (error) {
    if (!(error instanceof NoDigitError)) throw error;
    return { refusal: error.message };
  }
});
fs.writeFileSync(resultPath, JSON.stringify(results));
