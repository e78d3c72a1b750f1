/**
 * `deno task demo`: tsercom's quick start, live. Data sources advertise
 * themselves over mDNS and stream a 6-axis IMU (200 Hz) and a 64×64 depth
 * camera (10 Hz) over gRPC, with jittered, out-of-order delivery; an
 * aggregator discovers them, connects, gets a caller id from each, syncs its
 * clock with theirs, and rebuilds and smooths the streams. Every runtime
 * runs in its own Worker, under one RuntimeManager.
 *
 * By default everything runs inside a private network namespace, so trying
 * the demo never sends a packet to your network; `--lan` uses the real
 * network instead.
 *
 * ```sh
 * deno task demo [--sources N] [--dashboard] [--port P] [--lan] [--duration S]
 * ```
 *
 * - `--sources N`: how many data sources (1–8; default 2).
 * - `--dashboard`: serve a live page on http://127.0.0.1:P (plots, peers).
 * - `--port P`: the dashboard's port (default 8080; 0 picks a free one).
 * - `--lan`: run on the real network (mDNS on your LAN).
 * - `--duration S`: stop after S seconds (default: run until Ctrl-C).
 * - `--jitter MS`: how late a sample may be delivered (default 15).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type Dashboard, startDashboard } from "./_dashboard.ts";
import { type DemoEvent, parseDemoEvent, type PeerSummary } from "./_demo_protocol.ts";
import { planSandbox } from "./_sandbox.ts";

const USAGE =
  "usage: deno task demo [--sources N] [--dashboard] [--port P] [--lan] [--duration S] [--jitter MS]";

function fail(message: string): never {
  console.error(`demo: ${message}\n${USAGE}`);
  Deno.exit(2);
}

const { values: args } = (() => {
  try {
    return parseArgs({
      args: Deno.args,
      options: {
        sources: { type: "string", default: "2" },
        dashboard: { type: "boolean", default: false },
        port: { type: "string", default: "8080" },
        lan: { type: "boolean", default: false },
        duration: { type: "string" },
        jitter: { type: "string", default: "15" },
        seed: { type: "string", default: "1" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
})();
if (args.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const sources = Number(args.sources);
if (!Number.isInteger(sources) || sources < 1 || sources > 8) {
  fail(`--sources must be an integer in 1..8: current value is ${args.sources}`);
}
const port = Number(args.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  fail(`--port must be an integer in 0..65535: current value is ${args.port}`);
}
const duration = args.duration === undefined ? undefined : Number(args.duration);
if (duration !== undefined && !(duration > 0)) {
  fail(`--duration must be a number of seconds > 0: current value is ${args.duration}`);
}
const jitter = Number(args.jitter);
if (!(jitter >= 0 && jitter <= 1_000)) {
  fail(`--jitter must be a number of milliseconds in 0..1000: current value is ${args.jitter}`);
}

// Where the runtimes run -----------------------------------------------------------------------

let prefix: readonly string[] = [];
let sandbox: "netns" | "lan" = "lan";
if (args.lan) {
  console.log("network: your LAN (--lan): the sources advertise over mDNS on your network");
} else {
  const plan = await planSandbox();
  if (plan.ok) {
    prefix = plan.prefix;
    sandbox = "netns";
    console.log(
      "network: a private network namespace; no packet reaches your network (--lan to use it)",
    );
  } else {
    console.log(
      `network: your LAN, as no sandbox is possible here (${plan.reason}); ` +
        "the sources advertise over mDNS on your network",
    );
  }
}
console.log(
  `starting ${sources} data source${
    sources === 1 ? "" : "s"
  } and an aggregator, each in its own Worker`,
);

let dashboard: Dashboard | undefined;
if (args.dashboard) {
  dashboard = await startDashboard({ hostname: "127.0.0.1", port });
  console.log(`dashboard: ${dashboard.url}`);
}

const node = new URL("./_demo_node.ts", import.meta.url);
const nodeArgs = [
  "run",
  "--allow-net",
  "--allow-read",
  "--allow-env",
  "--allow-sys",
  node.pathname,
  "--sources",
  String(sources),
  "--jitter",
  String(jitter),
  "--seed",
  String(args.seed),
  "--host",
  sandbox === "netns" ? "127.0.0.1" : "0.0.0.0",
  "--sandbox",
  sandbox,
];
if (sandbox === "netns") {
  // The namespace has no route out: fetch every module the sandboxed part
  // and its Workers import (npm packages included) before going in.
  const modules = ["./_demo_node.ts", "./sensor_source.ts", "./sensor_aggregator.ts"]
    .concat("../runtime/_worker_main.ts")
    .map((path) => new URL(path, import.meta.url).pathname);
  const cached = await new Deno.Command(Deno.execPath(), {
    args: ["cache", "--quiet", ...modules],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!cached.success) {
    console.error(new TextDecoder().decode(cached.stderr));
    fail("could not fetch the demo's modules before entering the sandbox");
  }
}
const command = [...prefix, Deno.execPath(), ...nodeArgs];
const child = new Deno.Command(command[0], {
  args: command.slice(1),
  stdin: "piped",
  stdout: "piped",
  stderr: "inherit",
}).spawn();

// Stopping --------------------------------------------------------------------------------------

let stopAsked = false;
const childStdin = child.stdin.getWriter();
function stop(why: string): void {
  if (stopAsked) {
    console.log("demo: stopping now");
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    return;
  }
  stopAsked = true;
  console.log(`\n${why}: stopping (again to force)`);
  // Closing its stdin asks the sandboxed part to stop cleanly.
  childStdin.close().catch(() => {});
}
Deno.addSignalListener("SIGINT", () => stop("Ctrl-C"));
Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
const timer = duration === undefined
  ? undefined
  : setTimeout(() => stop(`${duration} s passed`), duration * 1_000);

// Output ----------------------------------------------------------------------------------------

const started = performance.now();
function elapsed(): string {
  return `[${((performance.now() - started) / 1_000).toFixed(1).padStart(5)} s]`;
}

function ms(micros: number | null): string {
  if (micros === null) return "—";
  const value = micros / 1_000;
  return `${value >= 0 ? "+" : ""}${value.toFixed(2)} ms`;
}

function table(peers: readonly PeerSummary[]): string {
  const head = "  peer        state      address               offset       imu Hz  depth Hz" +
    "  latency   updates  resyncs";
  const rows = peers.map((p) =>
    "  " + [
      p.name.padEnd(11),
      p.state.padEnd(10),
      `${p.address}:${p.port}`.padEnd(21),
      ms(p.offsetMicros).padStart(10),
      String(p.imuHz).padStart(8),
      String(p.depthHz).padStart(9),
      (p.latencyMs === null ? "—" : `${p.latencyMs.toFixed(0)} ms`).padStart(9),
      String(p.updates).padStart(9),
      String(p.resyncs).padStart(8),
    ].join(" ")
  );
  return [head, ...rows].join("\n");
}

let summaries = 0;
function show(event: DemoEvent): void {
  switch (event.type) {
    case "started":
      console.log(`${elapsed()} runtimes started (${event.sandbox})`);
      break;
    case "peer": {
      const p = event.peer;
      const what = p.state === "connected"
        ? `discovered ${p.name} at ${p.address}:${p.port} over mDNS; connected, caller id handshake done`
        : p.state === "synced"
        ? `${p.name}: clock synced over SNTP, offset ${ms(p.offsetMicros)}`
        : p.state === "streaming"
        ? `${p.name}: streaming imu (200 Hz, smoothed to 100 Hz) and depth (10 Hz)`
        : `${p.name}: ${p.state}`;
      console.log(`${elapsed()} ${what}`);
      break;
    }
    case "summary":
      // Every second for the first few, then every five.
      if (summaries++ < 3 || summaries % 5 === 0) {
        console.log(`${elapsed()} live:\n${table(event.peers)}`);
      }
      break;
    case "error":
      console.log(`${elapsed()} error: ${event.message}`);
      break;
    case "stopped":
      console.log(`${elapsed()} runtimes stopped`);
      break;
  }
}

const decoder = new TextDecoderStream();
let buffer = "";
for await (const text of child.stdout.pipeThrough(decoder)) {
  buffer += text;
  let newline;
  while ((newline = buffer.indexOf("\n")) >= 0) {
    const line = buffer.slice(0, newline);
    buffer = buffer.slice(newline + 1);
    const event = parseDemoEvent(line);
    if (event === undefined) {
      if (line.trim() !== "") console.log(line);
      continue;
    }
    dashboard?.publish(event);
    show(event);
  }
}
const status = await child.status;
clearTimeout(timer);
await dashboard?.close();
Deno.exit(status.success || stopAsked ? 0 : status.code || 1);
