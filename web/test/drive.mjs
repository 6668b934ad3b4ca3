// Drives the page in a real headless Chromium and reports what it answered, as JSON.
//
//   node test/drive.mjs REQUEST.json RESULT.json
//
// REQUEST: {url, mnist: [[784 values]...], images: [{name, base64}], drawings: [[stroke...]...],
// screenshot, reader: {stretched: [[96*96*3 RGB values]...], files: [{name, base64}]}}; a stroke
// is a list of [x, y] points in 0..1 of the canvas. RESULT: {mnist: [[10 output bytes]...],
// images: [{name, digit, probabilities, pixels} | {name, error}], reader: {pixels: [[11
// probabilities]...], labels: [{name, label}]}, drawings: [shown answer...], errors: [page
// errors]}. The test (tests/test_web.py) asserts.
import { readFileSync, writeFileSync } from "node:fs";

import { chromium } from "playwright-core";

const [requestPath, resultPath] = process.argv.slice(2);
const request = JSON.parse(readFileSync(requestPath, "utf8"));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // --no-sandbox: Chromium's sandbox refuses to start as root (CI containers run as root).
  args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
});
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 800, height: 560 } });
  page.on("pageerror", (error) => errors.push(String(error)));
  page.on("console", (message) => { if (message.type() === "error") errors.push(message.text()); });
  await page.goto(request.url);
  await page.waitForFunction(() => window.tinymnist !== undefined);
  await page.evaluate(() => window.tinymnist.ready);

  const mnist = await page.evaluate(async (images) => {
    const out = [];
    for (const image of images) {
      const { probabilities } = await window.tinymnist.classify(Uint8Array.from(image));
      out.push(probabilities.map((p) => Math.round(p * 256)));
    }
    return out;
  }, request.mnist);

  const images = await page.evaluate(async (files) => {
    const out = [];
    for (const { name, base64 } of files) {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      try {
        const result = await window.tinymnist.classifyImage(new Blob([bytes]));
        out.push({ name, digit: result.digit, probabilities: result.probabilities, pixels: Array.from(result.pixels) });
      } catch (error) {
        out.push({ name, error: error.message });
      }
    }
    return out;
  }, request.images);

  // The reader: RGB bytes already stretched (parity with Python LiteRT), then picture files.
  const reader = await page.evaluate(async ({ stretched, files }) => {
    const pixels = [];
    for (const rgb of stretched) pixels.push((await window.tinymnist.readPixels(Uint8Array.from(rgb))).probabilities);
    const labels = [];
    for (const { name, base64 } of files) {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      labels.push({ name, label: (await window.tinymnist.readImage(new Blob([bytes]))).label });
    }
    return { pixels, labels };
  }, request.reader || { stretched: [], files: [] });

  const drawings = [];
  const box = await page.locator("#canvas").boundingBox();
  for (const strokes of request.drawings) {
    await page.click("#clear");
    for (const stroke of strokes) {
      const [[x0, y0], ...rest] = stroke;
      await page.mouse.move(box.x + x0 * box.width, box.y + y0 * box.height);
      await page.mouse.down();
      for (const [x, y] of rest) await page.mouse.move(box.x + x * box.width, box.y + y * box.height, { steps: 4 });
      await page.mouse.up();
    }
    // Let the last frame's classification finish, then read what the page shows.
    await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
    await page.waitForTimeout(200);
    drawings.push(await page.textContent("#digit"));
  }
  if (request.screenshot) await page.screenshot({ path: request.screenshot });
  writeFileSync(resultPath, JSON.stringify({ mnist, images, reader, drawings, errors }));
} finally {
  await browser.close();
}
