/**
 * The demo's runtimes (private): one {@linkcode RuntimeManager} with N
 * {@linkcode SensorSource}s and one {@linkcode SensorAggregator}, each in its
 * own Worker. The launcher (`demo.ts`) runs this inside a private network
 * namespace and reads its progress, one {@linkcode DemoEvent} per line of
 * stdout. It stops when stdin closes, on SIGINT or SIGTERM, or after
 * `--duration` seconds.
 *
 * `deno run -A examples/_demo_node.ts --sources 2 [--jitter 15] [--seed 1]
 * [--host 0.0.0.0] [--sandbox netns|lan] [--duration 10]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { CallerId } from "../rpc/mod.ts";
import { type RemoteDataItem, RuntimeManager } from "../runtime/mod.ts";
import type { DemoEvent, DemoSandbox, PeerState, PeerSummary } from "./_demo_protocol.ts";
import type { SensorData } from "./sensor_aggregator.ts";
import type { SensorSourceParams } from "./sensor_source.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    sources: { type: "string", default: "1" },
    jitter: { type: "string", default: "15" },
    seed: { type: "string", default: "1" },
    host: { type: "string", default: "0.0.0.0" },
    sandbox: { type: "string", default: "netns" },
    duration: { type: "string" },
  },
});
const sources = Number(args.sources);
const sandbox = args.sandbox as DemoSandbox;

function send(event: DemoEvent): void {
  console.log(JSON.stringify(event));
}

/** What the node knows of one source. */
class Peer {
  name = "";
  address = "";
  port = 0;
  state: PeerState = "discovered";
  offsetMicros: number | null = null;
  updates = 0;
  resyncs = 0;
  /** Arrival times (ms) of the IMU and depth frames of the last second. */
  imuArrivals: number[] = [];
  depthArrivals: number[] = [];
  latencies: number[] = [];
  imuT: number[] = [];
  imuV: number[][] = [];
  depth: { t: number; values: Int16Array } | undefined;

  constructor(readonly id: string) {}

  summary(now: number): PeerSummary {
    const cut = now - 1_000;
    this.imuArrivals = this.imuArrivals.filter((t) => t > cut);
    this.depthArrivals = this.depthArrivals.filter((t) => t > cut);
    const sorted = [...this.latencies].sort((a, b) => a - b);
    this.latencies = [];
    return {
      id: this.id,
      name: this.name,
      address: this.address,
      port: this.port,
      state: this.state,
      offsetMicros: this.offsetMicros,
      imuHz: this.imuArrivals.length,
      depthHz: this.depthArrivals.length,
      latencyMs: sorted.length === 0 ? null : sorted[sorted.length >> 1],
      updates: this.updates,
      resyncs: this.resyncs,
    };
  }
}

const peers = new Map<string, Peer>();
const manager = new RuntimeManager();
manager.watcher.addListener(({ error, source }) => {
  const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  send({
    type: "error",
    message: source === undefined ? what : `${source}: ${what}`,
    at: Date.now(),
  });
});

for (let i = 1; i <= sources; i++) {
  const params: SensorSourceParams = {
    name: `sensor-${i}`,
    id: CallerId.random().toString(),
    host: args.host,
    seed: Number(args.seed) * 1_000 + i,
    jitterMs: Number(args.jitter),
  };
  manager.register(
    { module: import.meta.resolve("./sensor_source.ts"), export: "SensorSource", params },
    { role: "server", delivery: "stream", timeSyncPort: 0, timeSyncHostname: args.host },
  );
}
// Every item, as it lands: the aggregator's "new data" follows the newest
// timestamp per source, and a late IMU frame is older than a depth frame.
const aggregator = manager.register(
  { module: import.meta.resolve("./sensor_aggregator.ts"), export: "SensorAggregator" },
  { role: "client", dataTimeoutMicros: 5_000_000 },
  { onData: (item) => onItem(item) },
);

function onItem(item: RemoteDataItem<unknown>): void {
  const id = item.callerId.toString();
  let peer = peers.get(id);
  if (peer === undefined) peers.set(id, peer = new Peer(id));
  const now = Date.now();
  const data = item.value as SensorData;
  switch (data.kind) {
    case "state":
      peer.name = data.name;
      peer.address = data.address;
      peer.port = data.port;
      peer.state = data.state;
      if (data.offsetMicros !== null) peer.offsetMicros = data.offsetMicros;
      send({ type: "peer", peer: peer.summary(now), at: now });
      break;
    case "stats":
      peer.offsetMicros = data.offsetMicros;
      peer.updates = data.updates;
      peer.resyncs = data.resyncs;
      break;
    case "imu":
      peer.imuArrivals.push(now);
      peer.latencies.push(now - item.timestamp / 1_000);
      peer.imuT.push(item.timestamp / 1_000);
      peer.imuV.push(Array.from(data.values, (v) => Math.round(v * 1_000) / 1_000));
      break;
    case "depth":
      peer.depthArrivals.push(now);
      peer.depth = { t: item.timestamp / 1_000, values: data.values };
      break;
  }
}

/** Halves a 64×64 frame to 32×32 (the mean of each 2×2 block). */
function downsample(values: Int16Array): { width: number; height: number; mm: number[] } {
  const mm: number[] = [];
  for (let y = 0; y < 64; y += 2) {
    for (let x = 0; x < 64; x += 2) {
      const k = y * 64 + x;
      mm.push((values[k] + values[k + 1] + values[k + 64] + values[k + 65]) >> 2);
    }
  }
  return { width: 32, height: 32, mm };
}

const stopping = Promise.withResolvers<void>();
let stopRequested = false;
function requestStop(): void {
  if (stopRequested) return;
  stopRequested = true;
  stopping.resolve();
}
Deno.addSignalListener("SIGINT", requestStop);
Deno.addSignalListener("SIGTERM", requestStop);
// The launcher closes our stdin to ask us to stop (and when it dies).
(async () => {
  for await (const _ of Deno.stdin.readable) { /* nothing is sent on it */ }
  requestStop();
})().catch(requestStop);
if (args.duration !== undefined) setTimeout(requestStop, Number(args.duration) * 1_000);

await manager.start();
send({ type: "started", sandbox, sources, at: Date.now() });

const plots = setInterval(() => {
  for (const peer of peers.values()) {
    if (peer.imuT.length === 0) continue;
    send({ type: "imu", peer: peer.id, t: peer.imuT, v: peer.imuV });
    peer.imuT = [];
    peer.imuV = [];
  }
}, 100);
const frames = setInterval(() => {
  for (const peer of peers.values()) {
    if (peer.depth === undefined) continue;
    send({ type: "depth", peer: peer.id, t: peer.depth.t, ...downsample(peer.depth.values) });
    peer.depth = undefined;
  }
}, 500);
const summaries = setInterval(() => {
  const now = Date.now();
  send({ type: "summary", peers: [...peers.values()].map((p) => p.summary(now)), at: now });
}, 1_000);

await stopping.promise;
clearInterval(plots);
clearInterval(frames);
clearInterval(summaries);
// The aggregator first: its channels close before the sources' servers stop.
await aggregator.stop().catch(() => {});
await manager.shutdown({ deadlineMs: 5_000 });
send({ type: "stopped", at: Date.now() });
Deno.exit(0);
