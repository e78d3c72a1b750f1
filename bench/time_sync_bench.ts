/**
 * Time sync benchmarks, on loopback unicast only (127.0.0.1; no multicast, so no namespace is
 * needed).
 *
 * 1. **Server replies per second.** One client socket sends a valid 48-byte NTP version 4 client
 *    request to a {@linkcode TimeSyncServer} and awaits its reply, over and over. The baseline is
 *    the physical limit of the same request/response: a plain UDP echo server written with
 *    `Deno.listenDatagram` (receive, send the same bytes back). The group's summary prints the
 *    server's time per reply as a ratio of the echo's; the replies/s of both and their ratio are
 *    printed when the run ends.
 * 2. **Estimate error under random reply delays.** A UDP proxy on 127.0.0.1 forwards requests to a
 *    {@linkcode TimeSyncServer} whose clock is exactly 2.5 s ahead of the client's (both read the
 *    same {@linkcode SystemClock}), and holds each reply back for a random 0-5 ms (whole
 *    milliseconds from a seeded PRNG) before passing it on: the asymmetric case, where every extra
 *    millisecond of delay biases a sample's offset by half a millisecond. A
 *    {@linkcode TimeSyncClient} (burst 8, 20 ms apart, then every 20 ms, 8 samples kept) runs
 *    until it has taken 40 samples. After each sample, once its window is full, the client's
 *    estimate (the median of the three lowest-delay samples) and the plain mean of the same
 *    samples' offsets (the Python original's estimator, the baseline) are compared with the true
 *    offset; the mean absolute errors and their ratio are printed (lower is better).
 *
 * Every loop is bounded in count (and the second part in time), and every socket is closed.
 *
 * Run with `deno bench -A bench/time_sync_bench.ts`.
 */

import { delay } from "../rpc/_async.ts";
import { SystemClock } from "../rpc/system_clock.ts";
import { TimeSyncClient } from "../rpc/time_sync_client.ts";
import { TimeSyncServer } from "../rpc/time_sync_server.ts";

// ---------------------------------------------------------------------------------------------
// Part 1: server replies per second, against a UDP echo of the same bytes
// ---------------------------------------------------------------------------------------------

/** Round trips per case (after the warm-up). */
const ROUND_TRIPS = 20_000;
/** Warm-up round trips per case. */
const WARMUP = 1_000;
/** A round trip that has not completed after this long fails the bench instead of hanging it. */
const STALL_MS = 2_000;

const LOOPBACK = "127.0.0.1";

/** A valid NTP version 4 client request (LI 0, VN 4, mode 3) with a transmit timestamp. */
const REQUEST = new Uint8Array(48);
REQUEST[0] = (4 << 3) | 3;
{
  const view = new DataView(REQUEST.buffer);
  const nowMs = Date.now();
  view.setUint32(40, Math.floor(nowMs / 1_000) + 2_208_988_800);
  view.setUint32(44, Math.floor((nowMs % 1_000) / 1_000 * 2 ** 32));
}
/** The first byte of a version 4 server reply (LI 0, VN 4, mode 4). */
const REPLY_HEADER = (4 << 3) | 4;

/** A UDP echo server: sends every datagram back to where it came from. */
const echo = Deno.listenDatagram({ transport: "udp", hostname: LOOPBACK, port: 0 });
const echoDone = (async () => {
  const buffer = new Uint8Array(2048);
  for (;;) {
    let packet: Uint8Array;
    let from: Deno.Addr;
    try {
      [packet, from] = await echo.receive(buffer);
    } catch {
      return; // closed
    }
    await echo.send(packet, from).catch(() => {});
  }
})();

const server = new TimeSyncServer({ hostname: LOOPBACK, port: 0 });

/** One request/response client of one case, with its own socket and tallies. */
class RoundTripper {
  readonly #conn = Deno.listenDatagram({ transport: "udp", hostname: LOOPBACK, port: 0 });
  readonly #buffer = new Uint8Array(2048);
  readonly #target: Deno.NetAddr;
  readonly #expectedHeader: number;
  /** Round trips completed. */
  count = 0;
  /** Their total duration, in milliseconds. */
  totalMs = 0;
  /** When the round trip in flight started, or undefined. */
  startedAt: number | undefined;
  /** Each round trip's duration, in milliseconds (as many as fit). */
  readonly durations = new Float64Array(2 * (ROUND_TRIPS + WARMUP));

  constructor(port: number, expectedHeader: number) {
    this.#target = { transport: "udp", hostname: LOOPBACK, port };
    this.#expectedHeader = expectedHeader;
  }

  async roundTrip(): Promise<void> {
    const start = performance.now();
    this.startedAt = start;
    await this.#conn.send(REQUEST, this.#target);
    const [reply] = await this.#conn.receive(this.#buffer);
    const ms = performance.now() - start;
    if (this.count < this.durations.length) this.durations[this.count] = ms;
    this.totalMs += ms;
    this.count++;
    this.startedAt = undefined;
    if (reply.length !== 48 || reply[0] !== this.#expectedHeader) {
      throw new Error(
        `Cannot go on with the bench as a reply from port ${this.#target.port} has ` +
          `${reply.length} bytes and first byte ${
            reply[0]
          }: wanted 48 bytes and ${this.#expectedHeader}`,
      );
    }
  }

  /** Closes the socket, which makes a pending receive reject. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

const echoClient = new RoundTripper((echo.addr as Deno.NetAddr).port, REQUEST[0]);
const ntpClient = new RoundTripper(server.port, REPLY_HEADER);

// A lost datagram would leave a round trip waiting forever: fail it instead.
const watchdog = setInterval(() => {
  const now = performance.now();
  for (const client of [echoClient, ntpClient]) {
    if (client.startedAt !== undefined && now - client.startedAt > STALL_MS) client.close();
  }
}, STALL_MS / 4);
Deno.unrefTimer(watchdog);

const replyGroup = "loopback request/response, 48 bytes";

Deno.bench({
  name: "UDP echo (Deno.listenDatagram)",
  group: replyGroup,
  baseline: true,
  n: ROUND_TRIPS,
  warmup: WARMUP,
  async fn() {
    await echoClient.roundTrip();
  },
});

Deno.bench({
  name: "TimeSyncServer reply to an NTP v4 request",
  group: replyGroup,
  n: ROUND_TRIPS,
  warmup: WARMUP,
  async fn() {
    await ntpClient.roundTrip();
  },
});

/** Replies per second from the mean round trip. */
function meanRate(client: RoundTripper): number {
  return client.count / client.totalMs * 1_000;
}

/** Replies per second from the median round trip (less sensitive to scheduling noise). */
function medianRate(client: RoundTripper): number {
  const kept = client.durations.slice(0, Math.min(client.count, client.durations.length)).sort();
  return 1_000 / kept[kept.length >> 1];
}

// ---------------------------------------------------------------------------------------------
// Part 2: the client's estimate error when replies are delayed by a random 0-5 ms
// ---------------------------------------------------------------------------------------------

/** The server clock's shift from the client's, in microseconds: the offset to find. */
const SHIFT_MICROS = 2_500_000;
/** Samples the client takes. */
const SAMPLES = 40;
/** Samples the client keeps (its estimate's window). */
const WINDOW = 8;
/** Most extra reply delay, in whole milliseconds. */
const MAX_EXTRA_MS = 5;
/** The PRNG seed. */
const SEED = 0x7353_4e54;
/** The second part gives up (and fails) after this long. */
const PART_2_LIMIT_MS = 20_000;

/** mulberry32: a small seeded PRNG with uniform output in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b_79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function hex(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += byte.toString(16).padStart(2, "0");
  return text;
}

/**
 * A UDP proxy on 127.0.0.1: requests go to the server at once; each reply is held back for a
 * random whole number of milliseconds in 0..{@linkcode MAX_EXTRA_MS} (a timer, so plus its
 * latency; 0 goes back at once) before it goes to the client that asked (matched by the
 * request's transmit timestamp, which the reply echoes).
 */
class DelayingProxy {
  /** The port clients send their requests to. */
  readonly port: number;
  readonly #front = Deno.listenDatagram({ transport: "udp", hostname: LOOPBACK, port: 0 });
  readonly #back = Deno.listenDatagram({ transport: "udp", hostname: LOOPBACK, port: 0 });
  readonly #server: Deno.NetAddr;
  readonly #random: () => number;
  readonly #clients = new Map<string, Deno.Addr>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  readonly #loops: Promise<void>[];
  /** Extra delays drawn, in whole milliseconds. */
  readonly delays: number[] = [];
  /** How long each reply was really held back (timer latency included), in milliseconds. */
  readonly held: number[] = [];

  constructor(serverPort: number, random: () => number) {
    this.port = (this.#front.addr as Deno.NetAddr).port;
    this.#server = { transport: "udp", hostname: LOOPBACK, port: serverPort };
    this.#random = random;
    this.#loops = [this.#forwardRequests(), this.#forwardReplies()];
  }

  async #forwardRequests(): Promise<void> {
    for (;;) {
      let packet: Uint8Array;
      let from: Deno.Addr;
      try {
        [packet, from] = await this.#front.receive();
      } catch {
        return; // closed
      }
      if (packet.length < 48) continue;
      this.#clients.set(hex(packet.subarray(40, 48)), from);
      await this.#back.send(packet, this.#server).catch(() => {});
    }
  }

  async #forwardReplies(): Promise<void> {
    for (;;) {
      let packet: Uint8Array;
      try {
        [packet] = await this.#back.receive();
      } catch {
        return; // closed
      }
      if (packet.length < 48) continue;
      const key = hex(packet.subarray(24, 32));
      const client = this.#clients.get(key);
      if (client === undefined) continue;
      this.#clients.delete(key);
      const extraMs = Math.floor(this.#random() * (MAX_EXTRA_MS + 1));
      this.delays.push(extraMs);
      if (extraMs === 0) {
        // No timer: a zero-delay timer still waits for the next turn of the event loop.
        this.held.push(0);
        await this.#front.send(packet, client).catch(() => {});
        continue;
      }
      const heldFrom = performance.now();
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        this.held.push(performance.now() - heldFrom);
        this.#front.send(packet, client).catch(() => {});
      }, extraMs);
      this.#timers.add(timer);
    }
  }

  /** Drops the replies still held back, closes both sockets and waits for the loops to end. */
  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#front.close();
    this.#back.close();
    await Promise.all(this.#loops);
  }
}

/** The errors, in µs, of both estimators after each sample once the window is full. */
interface EstimateErrors {
  ours: number[];
  mean: number[];
  delays: number[];
  held: number[];
}

async function measureEstimateErrors(): Promise<EstimateErrors> {
  const local = new SystemClock();
  const timeServer = new TimeSyncServer({
    hostname: LOOPBACK,
    port: 0,
    clock: { now: () => local.now() + SHIFT_MICROS },
  });
  const proxy = new DelayingProxy(timeServer.port, mulberry32(SEED));
  const client = new TimeSyncClient(LOOPBACK, {
    port: proxy.port,
    local,
    burst: 8,
    burstIntervalMs: 20,
    periodMs: 20,
    maxSamples: WINDOW,
    timeoutMs: 1_000,
  });
  const errors: EstimateErrors = { ours: [], mean: [], delays: [], held: [] };
  try {
    const giveUp = performance.now() + PART_2_LIMIT_MS;
    let seen = 0;
    // Samples come at least 20 ms apart: polling every millisecond sees each one.
    while (seen < SAMPLES && performance.now() < giveUp) {
      await delay(1);
      const taken = client.counters.samples;
      if (taken === seen) continue;
      seen = taken;
      const samples = client.samples;
      const estimate = client.offsetMicros;
      if (samples.length < WINDOW || estimate === undefined) continue;
      const mean = samples.reduce((sum, s) => sum + s.offsetMicros, 0) / samples.length;
      errors.ours.push(Math.abs(estimate - SHIFT_MICROS));
      errors.mean.push(Math.abs(mean - SHIFT_MICROS));
    }
    if (seen < SAMPLES) {
      throw new Error(
        `Cannot measure the estimate error as the client took ${seen} samples in ` +
          `${PART_2_LIMIT_MS} ms: wanted ${SAMPLES} (failures: ${client.counters.failures})`,
      );
    }
  } finally {
    await client.close();
    await proxy.close();
    await timeServer.close();
  }
  errors.delays = proxy.delays;
  errors.held = proxy.held;
  return errors;
}

function average(values: number[]): number {
  return values.reduce((sum, v) => sum + v, 0) / values.length;
}

let estimateRuns = 0;

/** Measures once and prints one line: both estimators' errors and their ratio. */
async function reportEstimateErrors(): Promise<void> {
  const run = ++estimateRuns;
  const { ours, mean, delays, held } = await measureEstimateErrors();
  const oursAvg = average(ours);
  const meanAvg = average(mean);
  console.log(
    `estimate error run ${run} (true offset +${SHIFT_MICROS / 1_000_000} s, ${ours.length} ` +
      `estimates with a full window of ${WINDOW}, replies held back ${
        average(delays).toFixed(2)
      } ms on average as drawn, ${
        average(held).toFixed(2)
      } ms as timed, seed ${SEED}): mean |error| TimeSyncClient ${oursAvg.toFixed(0)} µs ` +
      `(max ${Math.max(...ours).toFixed(0)}), plain mean (baseline) ${meanAvg.toFixed(0)} µs ` +
      `(max ${Math.max(...mean).toFixed(0)}), ratio ${(oursAvg / meanAvg).toFixed(3)} ` +
      `(lower is better)`,
  );
}

// `deno bench` calls the function a few times even with `n: 1`: each call is a full measurement
// (the same seeded delays) and prints its own line, so the runs also show the spread.
Deno.bench({
  name: `TimeSyncClient estimate error, ${SAMPLES} samples, replies delayed 0-${MAX_EXTRA_MS} ms`,
  group: "estimate error (printed per run; the time is one whole run)",
  n: 1,
  warmup: 0,
  fn: reportEstimateErrors,
});

// ---------------------------------------------------------------------------------------------
// The end of the run: part 1's replies/s, and every socket closed
// ---------------------------------------------------------------------------------------------

globalThis.addEventListener("unload", () => {
  clearInterval(watchdog);
  if (echoClient.count > 0 && ntpClient.count > 0) {
    const echoMean = meanRate(echoClient);
    const ntpMean = meanRate(ntpClient);
    const echoMedian = medianRate(echoClient);
    const ntpMedian = medianRate(ntpClient);
    const counters = server.counters;
    console.log(
      [
        "loopback request/response (every round trip, warm-up included), replies/s from the " +
        "mean | median round trip:",
        `  UDP echo (baseline): ${echoMean.toFixed(0)} | ${echoMedian.toFixed(0)} replies/s ` +
        `over ${echoClient.count} round trips`,
        `  TimeSyncServer:      ${ntpMean.toFixed(0)} | ${ntpMedian.toFixed(0)} replies/s ` +
        `over ${ntpClient.count} round trips (the server counted ${counters.received} ` +
        `received, ${counters.answered} answered)`,
        `  ratio TimeSyncServer / echo replies/s: ${(ntpMean / echoMean).toFixed(3)} | ${
          (ntpMedian / echoMedian).toFixed(3)
        }`,
      ].join("\n"),
    );
  }
  echoClient.close();
  ntpClient.close();
  echo.close();
  // Closing is synchronous; the receive loops end on their own right after.
  server.close().catch(() => {});
  echoDone.catch(() => {});
});
