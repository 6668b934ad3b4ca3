// The page: a drawing canvas and a photo drop, both read through the preprocessing contract.
import { NoDigitError, SIZE } from "./preprocess.js";
import { classify, classifyImage, preprocessImageData, ready } from "./tinymnist.js";

// The same level as `python -m app predict`: a likeliest digit below it is marked unsure.
const UNSURE_BELOW = 0.6;
// Dark ink on white paper, a pen about as wide, relative to the digit, as MNIST's strokes.
const INK = "#000", PAPER = "#fff", PEN_WIDTH = 18;

const canvas = document.getElementById("canvas");
const context = canvas.getContext("2d", { willReadFrequently: true });
const seen = document.getElementById("seen").getContext("2d");
const digitOut = document.getElementById("digit");
const confidence = document.getElementById("confidence");
const bars = document.getElementById("bars");
const status = document.getElementById("status");

const strokes = []; // each a list of [x, y] in canvas pixels; Undo drops the last one
let drawing = null;
let pending = false;

for (let d = 0; d < 10; d++) {
  bars.insertAdjacentHTML("beforeend", `<li><span>${d}</span><div class="bar"></div><span class="value"></span></li>`);
}

function show(result) {
  if (!result) {
    digitOut.textContent = "–";
    digitOut.classList.remove("unsure");
    confidence.textContent = "draw a digit";
    seen.clearRect(0, 0, SIZE, SIZE);
    bars.querySelectorAll("li").forEach((li) => { li.children[1].style.width = "0"; li.children[2].textContent = ""; });
    return;
  }
  const { digit, probabilities, pixels } = result;
  const p = probabilities[digit];
  digitOut.textContent = String(digit);
  digitOut.classList.toggle("unsure", p < UNSURE_BELOW);
  confidence.textContent = `${(100 * p).toFixed(1)}%${p < UNSURE_BELOW ? " (unsure)" : ""}`;
  bars.querySelectorAll("li").forEach((li, d) => {
    li.children[1].style.width = `${(100 * probabilities[d]).toFixed(1)}%`;
    li.children[2].textContent = `${(100 * probabilities[d]).toFixed(1)}%`;
  });
  const image = seen.createImageData(SIZE, SIZE);
  pixels.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  seen.putImageData(image, 0, 0);
}

function fail(error) {
  show(null);
  confidence.textContent = error instanceof NoDigitError ? "no digit found" : error.message;
}

// --- drawing ---------------------------------------------------------------------------------

function paint() {
  context.fillStyle = PAPER;
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.strokeStyle = INK;
  context.lineWidth = PEN_WIDTH;
  context.lineCap = context.lineJoin = "round";
  for (const points of strokes) {
    context.beginPath();
    context.moveTo(...points[0]);
    // A single tap draws a dot: a zero-length line with round caps.
    for (const point of points.length > 1 ? points.slice(1) : points) context.lineTo(...point);
    context.stroke();
  }
}

async function classifyDrawing() {
  pending = false;
  if (!strokes.length) return show(null);
  try {
    const pixels = preprocessImageData(context.getImageData(0, 0, canvas.width, canvas.height));
    show({ ...(await classify(pixels)), pixels });
  } catch (error) {
    fail(error);
  }
}

function changed() {
  paint();
  if (!pending) {
    pending = true;
    requestAnimationFrame(classifyDrawing); // at most one classification per frame
  }
}

function at(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * (canvas.width / box.width), (event.clientY - box.top) * (canvas.height / box.height)];
}

canvas.addEventListener("pointerdown", (event) => {
  canvas.setPointerCapture(event.pointerId);
  drawing = [at(event)];
  strokes.push(drawing);
  changed();
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  for (const e of event.getCoalescedEvents ? event.getCoalescedEvents() : [event]) drawing.push(at(e));
  changed();
});
for (const type of ["pointerup", "pointercancel"]) canvas.addEventListener(type, () => { drawing = null; });

document.getElementById("undo").addEventListener("click", () => { strokes.pop(); changed(); });
document.getElementById("clear").addEventListener("click", () => { strokes.length = 0; changed(); });

// --- photos ----------------------------------------------------------------------------------

async function classifyFile(file) {
  if (!file) return;
  confidence.textContent = `reading ${file.name}…`;
  try {
    show(await classifyImage(file));
  } catch (error) {
    fail(error);
  }
}

document.getElementById("file").addEventListener("change", (event) => classifyFile(event.target.files[0]));
document.addEventListener("dragover", (event) => { event.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragging");
  classifyFile(event.dataTransfer.files[0]);
});

paint();
ready.then(
  () => { status.textContent = "model loaded: int8 LiteRT, running on WebAssembly in this page"; },
  (error) => { status.textContent = `the model failed to load: ${error.message}`; },
);
