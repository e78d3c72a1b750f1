/**
 * `deno task demo`, run as a user runs it: the launcher creates its own
 * private network namespace (nothing reaches a real network), starts two
 * data sources and an aggregator in Workers, and prints what it sees.
 */

import assert from "node:assert/strict";

const DEMO = new URL("../../examples/demo.ts", import.meta.url).pathname;
const PERMISSIONS = ["--allow-run", "--allow-read", "--allow-net=127.0.0.1", "--allow-sys=uid"];

async function runDemo(args: string[], timeoutMs: number) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMISSIONS, DEMO, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

/** The seconds stamp of the first line matching `pattern`, or undefined. */
function secondsOf(stdout: string, pattern: RegExp): number | undefined {
  for (const line of stdout.split("\n")) {
    if (!pattern.test(line)) continue;
    const stamp = line.match(/^\[\s*([\d.]+) s\]/);
    if (stamp) return Number(stamp[1]);
  }
  return undefined;
}

Deno.test("the demo runs sandboxed, finds both sources within 5 s and streams", async (t) => {
  const { code, stdout, stderr } = await runDemo(["--sources", "2", "--duration", "8"], 60_000);
  const context = `stdout:\n${stdout}\nstderr:\n${stderr}`;

  await t.step("it says it runs in a private network namespace", () => {
    assert.match(stdout, /network: a private network namespace/, context);
  });

  await t.step("both sources are discovered, connected and synced within 5 s", () => {
    for (const name of ["sensor-1", "sensor-2"]) {
      const discovered = secondsOf(
        stdout,
        new RegExp(`discovered ${name} at 127\\.0\\.0\\.1:\\d+`),
      );
      assert.ok(discovered !== undefined && discovered < 5, `${name} discovered late\n${context}`);
      const synced = secondsOf(stdout, new RegExp(`${name}: clock synced over SNTP`));
      assert.ok(synced !== undefined && synced < 5, `${name} synced late\n${context}`);
    }
  });

  await t.step("live rates appear within 5 s, near 100 Hz IMU and 10 Hz depth", () => {
    const first = secondsOf(stdout, /live:/);
    assert.ok(first !== undefined && first < 5, context);
    const rows = stdout.split("\n").filter((line) => /^\s+sensor-\d\s+streaming/.test(line));
    const last = new Map<string, string[]>();
    for (const row of rows) {
      const cells = row.trim().split(/\s+/);
      last.set(cells[0], cells);
    }
    assert.deepEqual([...last.keys()].sort(), ["sensor-1", "sensor-2"], context);
    for (const cells of last.values()) {
      // peer state address offset "ms" imuHz depthHz latency "ms" updates resyncs
      const imuHz = Number(cells[5]);
      const depthHz = Number(cells[6]);
      assert.ok(imuHz >= 80 && imuHz <= 120, `imu ${imuHz} Hz\n${context}`);
      assert.ok(depthHz >= 8 && depthHz <= 12, `depth ${depthHz} Hz\n${context}`);
      assert.equal(cells[10], "0", `no resyncs expected\n${context}`);
    }
  });

  await t.step("it stops cleanly after --duration", () => {
    assert.match(stdout, /runtimes stopped/, context);
    assert.equal(code, 0, context);
    assert.doesNotMatch(stdout, /error:/, context);
  });
});

Deno.test("the demo refuses bad arguments with a message and exit code 2", async () => {
  const { code, stderr } = await runDemo(["--sources", "0"], 30_000);
  assert.equal(code, 2);
  assert.match(stderr, /--sources must be an integer in 1\.\.8: current value is 0/);
});

Deno.test("Ctrl-C stops the demo cleanly", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMISSIONS, DEMO, "--sources", "1"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let stdout = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  // Read until the first live table, then press Ctrl-C.
  while (!stdout.includes("live:")) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  assert.match(stdout, /live:/, stdout);
  child.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  const status = await child.status;
  const context = `stdout:\n${stdout}\nstderr:\n${await stderr}`;
  assert.match(stdout, /Ctrl-C: stopping/, context);
  assert.match(stdout, /sensor-1: lost/, context);
  assert.match(stdout, /runtimes stopped/, context);
  assert.equal(status.code, 0, context);
});
