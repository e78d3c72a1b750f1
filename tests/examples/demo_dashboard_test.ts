/**
 * The real demo with `--dashboard`, watched by a headless Chromium: the
 * launcher runs two sources and an aggregator in its own network namespace
 * and serves the page on 127.0.0.1; the page must list both peers, plot
 * their IMU streams and draw their depth frames. Saves a screenshot to
 * `$TSERCOM_SCREENSHOT_DIR/demo_dashboard.png` (default
 * `tests/examples/out/demo_dashboard.png`).
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { type ProbeGlobal, screenshotPath, withChromium } from "./_chromium.ts";

const DEMO = fileURLToPath(new URL("../../examples/demo.ts", import.meta.url));

Deno.test("the demo's dashboard lists the live peers and plots them in Chromium", async () => {
  const demo = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-run",
      "--allow-read",
      "--allow-net=127.0.0.1",
      "--allow-sys=uid",
      DEMO,
      "--sources",
      "2",
      "--dashboard",
      "--port",
      "0",
      "--duration",
      "45",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(90_000),
  }).spawn();
  const stderr = new Response(demo.stderr).text();
  const reader = demo.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  const readUntil = async (pattern: RegExp) => {
    while (!pattern.test(stdout)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`The demo ended before ${pattern}:\n${stdout}\n${await stderr}`);
      stdout += value;
    }
    return stdout.match(pattern)!;
  };
  try {
    const url = (await readUntil(/dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/))[1];
    await withChromium({ width: 1280, height: 1100 }, async (browser) => {
      const page = browser.pages()[0] ?? await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (error) => errors.push(String(error)));
      await page.goto(url, { waitUntil: "load" });
      // Both peers listed and streaming.
      await page.waitForFunction(
        () => {
          const rows = (globalThis as ProbeGlobal).__dashboard?.rows() ?? [];
          return rows.length === 2 && rows.every((row) => row.state === "streaming");
        },
        undefined,
        { timeout: 20_000, polling: 100 },
      ).catch(async (error) => {
        const state = await page.evaluate(() => (globalThis as ProbeGlobal).__dashboard?.rows());
        throw new Error(`The page shows ${JSON.stringify(state)}\n${stdout}`, { cause: error });
      });
      const rows = await page.evaluate(() => (globalThis as ProbeGlobal).__dashboard!.rows());
      assert.deepEqual(rows.map((row) => row.name ?? row.peer).sort(), ["sensor-1", "sensor-2"]);
      // Two seconds of smoothed IMU (100 Hz) in each chart, and depth frames drawn.
      const ids = rows.map((row) => row.id);
      await page.waitForFunction(
        (ids: string[]) => {
          const probe = (globalThis as ProbeGlobal).__dashboard!;
          return ids.every((id) => probe.points(id) >= 200 && probe.depthFrames(id) >= 2);
        },
        ids,
        { timeout: 20_000, polling: 100 },
      );
      const path = screenshotPath("demo_dashboard.png");
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await page.screenshot({ path, fullPage: true });
      assert.ok((await Deno.stat(path)).size > 10 * 1024, `the screenshot ${path} is too small`);
      assert.deepEqual(errors, []);
    });
  } finally {
    demo.kill("SIGINT");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += value;
    }
    await demo.status;
  }
  assert.match(stdout, /runtimes stopped/, `${stdout}\n${await stderr}`);
});
