/**
 * Tests of the demo's live dashboard (examples/_dashboard.ts and
 * examples/dashboard/): its HTTP routes and event stream, then the page
 * itself in a real headless Chromium (Debian `chromium`, driven by
 * playwright-core) fed by a deterministic simulation of the demo.
 *
 * The screenshot goes to `$TSERCOM_SCREENSHOT_DIR/dashboard.png`, by default
 * `tests/examples/out/dashboard.png`.
 *
 * @module
 */

import type { Page } from "playwright-core";
import { type ProbeGlobal, screenshotPath, withChromium } from "./_chromium.ts";
import { type Dashboard, startDashboard } from "../../examples/_dashboard.ts";
import type { DemoEvent, PeerState, PeerSummary } from "../../examples/_demo_protocol.ts";
import { assert, assertEquals, assertRejects } from "../_assert.ts";

// ---------------------------------------------------------------------------
// A deterministic simulation of the demo
// ---------------------------------------------------------------------------

/** Simulated start: 2026-01-01 09:30:00 UTC. */
const T0 = Date.UTC(2026, 0, 1, 9, 30, 0);
const TICK_MS = 100;
const IMU_BATCH = 20;
const IMU_PERIOD_MS = 5; // 200 Hz: one batch of 20 per 100 ms tick
const DEPTH_SIZE = 64;
const WINDOW_MS = 10_000;

interface SimulatedPeer {
  readonly id: string;
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly offsetMicros: number;
  readonly latencyMs: number;
  readonly resyncs: number;
  /** Phase of its IMU signals, radians. */
  readonly phase: number;
}

const SIMULATED_PEERS: readonly SimulatedPeer[] = [
  {
    id: "5c1f0a2e-0001",
    name: "sensor-1",
    address: "10.77.0.2",
    port: 50051,
    offsetMicros: 1234,
    latencyMs: 3.4,
    resyncs: 0,
    phase: 0,
  },
  {
    id: "9b7d4e13-0002",
    name: "sensor-2",
    address: "10.77.0.3",
    port: 50052,
    offsetMicros: -567.8,
    latencyMs: 4.6,
    resyncs: 1,
    phase: 1.3,
  },
];

/** One event of the simulation and the tick (of {@linkcode TICK_MS}) it belongs to. */
interface Simulated {
  readonly tick: number;
  readonly event: DemoEvent;
}

/** A small seeded generator (mulberry32), uniform in [0, 1). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return function next(): number {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A 64×64 depth frame: a tilted floor with a ball moving across it, a few pixels without a reading. */
function depthFrame(peer: SimulatedPeer, t: number, random: () => number): number[] {
  const mm: number[] = [];
  const s = (t - T0) / 1000;
  const cx = DEPTH_SIZE / 2 + 20 * Math.sin(0.6 * s + peer.phase);
  const cy = DEPTH_SIZE / 2 + 10 * Math.cos(0.4 * s + peer.phase);
  const r = 12;
  for (let y = 0; y < DEPTH_SIZE; y++) {
    for (let x = 0; x < DEPTH_SIZE; x++) {
      if (random() < 0.01) {
        mm.push(0);
        continue;
      }
      let d = 3000 - 30 * y + 4 * x;
      const dx = x - cx;
      const dy = y - cy;
      const inside = r * r - dx * dx - dy * dy;
      if (inside > 0) d = Math.min(d, 700 - 20 * Math.sqrt(inside));
      mm.push(Math.round(d + (random() - 0.5) * 10));
    }
  }
  return mm;
}

/**
 * The demo as the launcher would relay it, over `seconds` simulated seconds:
 * `"started"`, each peer going discovered → connected → synced → streaming,
 * IMU batches of 20 samples every tick (200 Hz), a 64×64 depth frame every
 * half second, a `"summary"` every second, and at the end sensor-2 lost and
 * a stale, late change of sensor-1 (older than the last summary).
 */
function simulateDemo(seconds: number): Simulated[] {
  const random = seeded(0x7e5c0);
  const out: Simulated[] = [];
  const ticks = Math.round(seconds * 1000 / TICK_MS);
  const lifecycle: Record<number, PeerState> = {
    1: "discovered",
    2: "connected",
    3: "synced",
    4: "streaming",
  };
  const stats = SIMULATED_PEERS.map(() => ({
    state: "discovered" as PeerState,
    updates: 0,
    imuTimes: [] as number[],
    depthTimes: [] as number[],
  }));
  function summary(i: number, now: number, state: PeerState): PeerSummary {
    const peer = SIMULATED_PEERS[i];
    const st = stats[i];
    const streaming = state === "streaming";
    return {
      id: peer.id,
      name: peer.name,
      address: peer.address,
      port: peer.port,
      state,
      offsetMicros: state === "discovered" || state === "connected" ? null : peer.offsetMicros,
      imuHz: st.imuTimes.filter((t) => t > now - 1000).length,
      depthHz: st.depthTimes.filter((t) => t > now - 1000).length,
      latencyMs: streaming ? peer.latencyMs : null,
      updates: st.updates,
      resyncs: streaming || state === "lost" ? peer.resyncs : 0,
    };
  }

  out.push({ tick: 0, event: { type: "started", sandbox: "netns", sources: 2, at: T0 } });
  for (let tick = 1; tick <= ticks; tick++) {
    const now = T0 + tick * TICK_MS;
    SIMULATED_PEERS.forEach((peer, i) => {
      const st = stats[i];
      const next = lifecycle[tick];
      if (next !== undefined) {
        st.state = next;
        out.push({ tick, event: { type: "peer", peer: summary(i, now, next), at: now + i } });
      }
      if (st.state !== "streaming") return;
      const t: number[] = [];
      const v: number[][] = [];
      for (let k = 0; k < IMU_BATCH; k++) {
        // The samples of the last tick: (now - 100 ms, now], sensor-2 1 ms earlier.
        const time = now - TICK_MS + (k + 1) * IMU_PERIOD_MS - i;
        const s = (time - T0) / 1000;
        const noise = () => (random() - 0.5) * 0.05;
        t.push(time);
        v.push([
          0.8 * Math.sin(2 * Math.PI * 0.5 * s + peer.phase) + noise(),
          0.5 * Math.cos(2 * Math.PI * 0.3 * s + peer.phase) + noise(),
          9.81 + 0.2 * Math.sin(2 * Math.PI * 1.1 * s) + noise(),
          0.3 * Math.sin(2 * Math.PI * 0.7 * s + peer.phase) + noise(),
          0.2 * Math.cos(2 * Math.PI * 0.9 * s) + noise(),
          0.1 * Math.sin(2 * Math.PI * 1.7 * s + peer.phase) + noise(),
        ].map((x) => Math.round(x * 1e4) / 1e4));
      }
      st.imuTimes.push(...t);
      st.updates++;
      out.push({ tick, event: { type: "imu", peer: peer.id, t, v } });
      if (tick % 5 === 0) {
        const depthTime = now - 20 - i;
        st.depthTimes.push(depthTime);
        st.updates++;
        out.push({
          tick,
          event: {
            type: "depth",
            peer: peer.id,
            t: depthTime,
            width: DEPTH_SIZE,
            height: DEPTH_SIZE,
            mm: depthFrame(peer, depthTime, random),
          },
        });
      }
    });
    if (tick % 10 === 0) {
      out.push({
        tick,
        event: {
          type: "summary",
          peers: SIMULATED_PEERS.map((_, i) => summary(i, now, stats[i].state)),
          at: now,
        },
      });
    }
  }
  const end = T0 + (ticks + 1) * TICK_MS;
  out.push({
    tick: ticks + 1,
    event: { type: "peer", peer: { ...summary(1, end, "lost"), imuHz: 0, depthHz: 0 }, at: end },
  });
  // A stale state change delivered late: older than the last summary, so not shown.
  out.push({
    tick: ticks + 1,
    event: { type: "peer", peer: summary(0, end - 5_000, "synced"), at: end - 5_000 },
  });
  return out;
}

/** How many IMU samples of a peer lie in the page's window: t ≥ newest − 10 s. */
function expectedPoints(events: readonly Simulated[], peerId: string): number {
  const times = events.flatMap(({ event }) =>
    event.type === "imu" && event.peer === peerId ? event.t : []
  );
  const newest = Math.max(...times);
  return times.filter((t) => t >= newest - WINDOW_MS).length;
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** Rejects with a message naming `what` if `promise` has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Lets the event loop run (I/O included) once. */
function macrotask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** One Server-Sent Events message. */
interface SseMessage {
  data?: string;
  comment?: string;
  retry?: number;
}

/** A minimal Server-Sent Events client over fetch, for the tests. */
class SseClient {
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";

  private constructor(reader: ReadableStreamDefaultReader<string>) {
    this.#reader = reader;
  }

  static async connect(url: string): Promise<{ client: SseClient; response: Response }> {
    const response = await fetch(new URL("events", url));
    assertEquals(response.status, 200);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    return { client: new SseClient(reader), response };
  }

  /** The next message, or `undefined` when the stream has ended. */
  async next(timeoutMs = 5_000): Promise<SseMessage | undefined> {
    while (!this.#buffer.includes("\n\n")) {
      const chunk = await within(this.#reader.read(), timeoutMs, "the next SSE message");
      if (chunk.done) return undefined;
      this.#buffer += chunk.value;
    }
    const end = this.#buffer.indexOf("\n\n");
    const block = this.#buffer.slice(0, end);
    this.#buffer = this.#buffer.slice(end + 2);
    const message: SseMessage = {};
    for (const line of block.split("\n")) {
      if (line.startsWith("data: ")) message.data = (message.data ?? "") + line.slice(6);
      else if (line.startsWith(":")) message.comment = line.slice(1).trim();
      else if (line.startsWith("retry: ")) message.retry = Number(line.slice(7));
    }
    return message;
  }

  /** The next `data:` message as an event (skipping comments and `retry:`). */
  async nextEvent(timeoutMs = 5_000): Promise<DemoEvent | undefined> {
    for (;;) {
      const message = await this.next(timeoutMs);
      if (message === undefined) return undefined;
      if (message.data !== undefined) return JSON.parse(message.data) as DemoEvent;
    }
  }

  /**
   * Whether the stream ends (cleanly or cut off) within `timeoutMs`, events
   * before the end ignored.
   */
  async ended(timeoutMs = 5_000): Promise<boolean> {
    try {
      for (;;) {
        const chunk = await within(this.#reader.read(), timeoutMs, "the end of the stream");
        if (chunk.done) return true;
      }
    } catch (error) {
      if (error instanceof Error && error.message.startsWith("Timed out")) return false;
      return true; // the connection was cut
    }
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

const started: DemoEvent = { type: "started", sandbox: "netns", sources: 2, at: 1_000 };

function peerSummary(id: string, state: PeerState, updates = 0): PeerSummary {
  return {
    id,
    name: `name-${id}`,
    address: "10.0.0.2",
    port: 50051,
    state,
    offsetMicros: null,
    imuHz: 0,
    depthHz: 0,
    latencyMs: null,
    updates,
    resyncs: 0,
  };
}

/** A 64×64 depth frame, about 20 KB as JSON. */
function bigDepth(t: number): DemoEvent {
  return {
    type: "depth",
    peer: "a",
    t,
    width: 64,
    height: 64,
    mm: Array.from({ length: 64 * 64 }, (_, i) => 1000 + i),
  };
}

function depth(peer: string, t: number): DemoEvent {
  return { type: "depth", peer, t, width: 2, height: 2, mm: [500, 600, 700, 0] };
}

// ---------------------------------------------------------------------------
// The server, without a browser
// ---------------------------------------------------------------------------

Deno.test("the dashboard server", async (t) => {
  await t.step("GET / serves the page, titled 'tsercom live'", async () => {
    await using dashboard = await startDashboard();
    assert(dashboard.url.startsWith("http://127.0.0.1:"), dashboard.url);
    const response = await fetch(dashboard.url);
    const html = await response.text();
    assertEquals(response.status, 200);
    assertEquals(response.headers.get("content-type"), "text/html; charset=utf-8");
    assert(html.includes("<title>tsercom live</title>"), "the page has its title");
    assert(html.includes('src="uplot.js"') && html.includes('src="app.js"'), "loads its scripts");
    assert(
      response.headers.get("content-security-policy")?.includes("connect-src 'self'"),
      "the page may only talk to its own server",
    );
  });

  await t.step("GET /uplot.js and /uplot.css serve uPlot's browser build", async () => {
    await using dashboard = await startDashboard();
    const js = await fetch(new URL("uplot.js", dashboard.url));
    const code = await js.text();
    assertEquals(js.status, 200);
    assertEquals(js.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert(code.length > 10_000, `uplot.js has ${code.length} characters`);
    assert(code.startsWith("/*! https://github.com/leeoniya/uPlot"), code.slice(0, 60));
    assert(code.includes("var uPlot="), "it is the IIFE build that defines the uPlot global");
    const css = await fetch(new URL("uplot.css", dashboard.url));
    assertEquals(css.status, 200);
    assertEquals(css.headers.get("content-type"), "text/css; charset=utf-8");
    assert((await css.text()).includes(".uplot"), "uPlot's style sheet");
  });

  await t.step("GET /app.js and /style.css serve the page's script and style", async () => {
    await using dashboard = await startDashboard();
    const app = await fetch(new URL("app.js", dashboard.url));
    assertEquals(app.status, 200);
    assert((await app.text()).includes("__dashboard"), "the page's script");
    const style = await fetch(new URL("style.css", dashboard.url));
    assertEquals(style.status, 200);
    assert((await style.text()).includes(".imu-chart"), "the page's style");
  });

  await t.step("unknown paths are 404 and other methods 405", async () => {
    await using dashboard = await startDashboard();
    for (const path of ["nope", "uplot.js/x", "index.html", "events/1", "favicon.ico"]) {
      const response = await fetch(new URL(path, dashboard.url));
      await response.body?.cancel();
      assertEquals(response.status, 404, path);
    }
    const post = await fetch(dashboard.url, { method: "POST", body: "x" });
    await post.body?.cancel();
    assertEquals(post.status, 405);
    assertEquals(post.headers.get("allow"), "GET, HEAD");
  });

  await t.step(
    "a browser connecting late gets started, the latest summary, newer peer changes and the newest depth frames, then live events",
    async () => {
      await using dashboard = await startDashboard();
      const lateLost: DemoEvent = { type: "peer", peer: peerSummary("b", "lost", 9), at: 2_500 };
      const newestDepth = depth("a", 2_600);
      const latestSummary: DemoEvent = {
        type: "summary",
        peers: [peerSummary("a", "streaming", 7), peerSummary("b", "streaming", 8)],
        at: 2_000,
      };
      dashboard.publish(started);
      dashboard.publish({ type: "peer", peer: peerSummary("a", "connected"), at: 1_100 });
      dashboard.publish({
        type: "summary",
        peers: [peerSummary("a", "connected"), peerSummary("b", "discovered")],
        at: 1_500,
      });
      dashboard.publish({ type: "peer", peer: peerSummary("a", "synced"), at: 1_800 });
      dashboard.publish(depth("a", 1_900));
      dashboard.publish(latestSummary);
      // Older than the latest summary: not replayed.
      dashboard.publish({ type: "peer", peer: peerSummary("a", "connected"), at: 1_950 });
      dashboard.publish({ type: "imu", peer: "a", t: [2_100], v: [[1, 2, 3, 4, 5, 6]] });
      dashboard.publish(lateLost);
      dashboard.publish(newestDepth);

      const { client } = await SseClient.connect(dashboard.url);
      try {
        assertEquals(await client.next(), { retry: 2000 });
        assertEquals(await client.nextEvent(), started);
        assertEquals(await client.nextEvent(), latestSummary);
        assertEquals(await client.nextEvent(), lateLost);
        assertEquals(await client.nextEvent(), newestDepth);
        const live: DemoEvent = { type: "imu", peer: "a", t: [2_700], v: [[6, 5, 4, 3, 2, 1]] };
        dashboard.publish(live);
        assertEquals(await client.nextEvent(), live);
      } finally {
        await client.cancel();
      }
    },
  );

  await t.step("every published event reaches every connected browser, in order", async () => {
    await using dashboard = await startDashboard();
    const a = await SseClient.connect(dashboard.url);
    const b = await SseClient.connect(dashboard.url);
    try {
      await within(dashboard.waitForClients(2), 5_000, "two clients");
      assertEquals(dashboard.clients, 2);
      const events = simulateDemo(1).map(({ event }) => event);
      for (const event of events) dashboard.publish(event);
      for (const { client } of [a, b]) {
        const received: DemoEvent[] = [];
        while (received.length < events.length) received.push((await client.nextEvent())!);
        assertEquals(received, events);
      }
      assertEquals(dashboard.dropped, 0);
    } finally {
      await a.client.cancel();
      await b.client.cancel();
    }
  });

  await t.step("a browser that leaves is no longer counted", async () => {
    await using dashboard = await startDashboard();
    const { client } = await SseClient.connect(dashboard.url);
    await within(dashboard.waitForClients(1), 5_000, "one client");
    await client.cancel();
    for (let i = 0; i < 200 && dashboard.clients > 0; i++) await macrotask();
    assertEquals(dashboard.clients, 0);
  });

  await t.step("idle streams get a comment line as heartbeat", async () => {
    await using dashboard = await startDashboard({ heartbeatMs: 20 });
    const { client } = await SseClient.connect(dashboard.url);
    try {
      assertEquals(await client.next(), { retry: 2000 });
      const message = await client.next();
      assert(message?.comment?.startsWith("heartbeat"), JSON.stringify(message));
      assertEquals(message?.data, undefined);
    } finally {
      await client.cancel();
    }
  });

  await t.step(
    "a browser that stops reading gets events dropped instead of an unbounded backlog",
    async () => {
      const dashboard = await startDashboard({ maxBufferedBytes: 256 * 1024 });
      const port = Number(new URL(dashboard.url).port);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(
          new TextEncoder().encode(`GET /events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`),
        );
        await within(dashboard.waitForClients(1), 5_000, "the raw client");
        // ~20 KB each, 5 per turn of the event loop: what the socket takes
        // leaves the queue, so drops start once the socket buffers are full.
        let published = 0;
        while (dashboard.dropped === 0 && published < 5_000) {
          for (let i = 0; i < 5; i++) dashboard.publish(bigDepth(published++));
          await macrotask();
        }
        assert(dashboard.dropped > 0, `nothing dropped after ${published} events`);
        const before = dashboard.dropped;
        for (let i = 0; i < 100; i++) dashboard.publish(bigDepth(published++));
        assertEquals(dashboard.dropped, before + 100);
        // The stuck browser does not keep close() waiting.
        await within(dashboard.close(), 5_000, "close() with a stuck browser");
        assertEquals(dashboard.clients, 0);
      } finally {
        conn.close();
        await dashboard.close();
      }
    },
  );

  await t.step(
    "a browser that catches up after drops gets the latest state again, then live events",
    async () => {
      await using dashboard = await startDashboard({ maxBufferedBytes: 256 * 1024 });
      const { client } = await SseClient.connect(dashboard.url);
      try {
        dashboard.publish(started);
        assertEquals(await client.next(), { retry: 2000 });
        assertEquals(await client.nextEvent(), started);
        // Stop reading until events are dropped.
        let published = 0;
        while (dashboard.dropped === 0 && published < 5_000) {
          for (let i = 0; i < 5; i++) dashboard.publish(bigDepth(published++));
          await macrotask();
        }
        assert(dashboard.dropped > 0, `nothing dropped after ${published} events`);
        const newest = bigDepth(published++);
        dashboard.publish(newest);
        // Read again; publish a marker until it arrives (the first marker
        // published once the backlog has drained carries the snapshot).
        const received: DemoEvent[] = [];
        const marker: DemoEvent = { type: "imu", peer: "a", t: [-1], v: [[0, 0, 0, 0, 0, 0]] };
        const reading = (async () => {
          for (;;) {
            const event = await client.nextEvent(10_000);
            if (event === undefined) throw new Error("the stream ended");
            received.push(event);
            if (event.type === "imu") return;
          }
        })();
        let done = false;
        reading.finally(() => done = true);
        for (let i = 0; i < 5_000 && !done; i++) {
          dashboard.publish(marker);
          await macrotask();
        }
        await reading;
        assertEquals(received.slice(-3), [started, newest, marker]);
        const depths = received.filter((event) => event.type === "depth");
        assert(depths.length < published, `${depths.length} of ${published} frames arrived`);
      } finally {
        await client.cancel();
      }
    },
  );

  await t.step("close() ends open event streams, stops the server and is idempotent", async () => {
    const dashboard = await startDashboard();
    const { client } = await SseClient.connect(dashboard.url);
    try {
      dashboard.publish(started);
      assertEquals(await client.next(), { retry: 2000 });
      assertEquals(await client.nextEvent(), started);
      const first = dashboard.close();
      assert(dashboard.close() === first, "a second close() returns the same promise");
      await within(first, 5_000, "close()");
      assert(await client.ended(), "the open stream ended");
      assertEquals(dashboard.clients, 0);
      dashboard.publish(started); // ignored once closed
      await assertRejects(() => fetch(dashboard.url), TypeError);
      await assertRejects(() => dashboard.waitForClients(1), Error, "closed");
    } finally {
      await client.cancel();
      await dashboard.close();
    }
  });

  await t.step("aborting the signal closes the dashboard", async () => {
    const controller = new AbortController();
    const dashboard = await startDashboard({ signal: controller.signal });
    const waiting = dashboard.waitForClients(1).then(() => "connected", (error) => error);
    controller.abort();
    await within(dashboard.close(), 5_000, "close() after abort");
    const outcome = await waiting;
    assert(outcome instanceof Error, String(outcome));
    assert(outcome.message.includes("closed before enough browsers connected"), outcome.message);
    await assertRejects(() => fetch(dashboard.url), TypeError);
  });

  await t.step("options are checked before anything listens", async () => {
    await assertRejects(
      () => startDashboard({ port: 70_000 }),
      RangeError,
      "'port' must be an integer in 0..65535: current value is 70000",
    );
    await assertRejects(
      () => startDashboard({ hostname: "" }),
      TypeError,
      "'hostname' must be a non-empty string",
    );
    await assertRejects(
      () => startDashboard({ maxBufferedBytes: 0 }),
      RangeError,
      "'maxBufferedBytes' must be a positive integer: current value is 0",
    );
    const aborted = new AbortController();
    aborted.abort(new Error("stop before starting"));
    await assertRejects(
      () => startDashboard({ signal: aborted.signal }),
      Error,
      "stop before starting",
    );
  });
});

// ---------------------------------------------------------------------------
// The page, in a real headless Chromium
// ---------------------------------------------------------------------------

/** Waits until `predicate` holds in the page; on timeout, says what and shows the page's state. */
async function waitForPage<A>(
  page: Page,
  what: string,
  predicate: (arg: A) => boolean,
  arg: A,
): Promise<void> {
  try {
    await page.waitForFunction(predicate as (arg: unknown) => boolean, arg as unknown, {
      timeout: 10_000,
      polling: 50,
    });
  } catch (error) {
    const state = await page.evaluate((ids) => {
      const probe = (globalThis as ProbeGlobal).__dashboard;
      if (probe === undefined) return "window.__dashboard is missing";
      return {
        peers: probe.peers(),
        rows: probe.rows(),
        points: ids.map((id) => probe.points(id)),
        depthFrames: ids.map((id) => probe.depthFrames(id)),
        received: probe.received(),
        ignored: probe.ignored(),
      };
    }, SIMULATED_PEERS.map((peer) => peer.id)).catch((e) => String(e));
    throw new Error(`The page never showed ${what}; it shows ${JSON.stringify(state)}`, {
      cause: error,
    });
  }
}

Deno.test("the dashboard page plots a simulated demo in headless Chromium", async () => {
  const simulation = simulateDemo(12);
  let dashboard: Dashboard | undefined;
  try {
    dashboard = await startDashboard({ port: 0 });
    const served = dashboard;
    await withChromium({ width: 1280, height: 900 }, async (context) => {
      const dashboard = served;
      // The page may only talk to the dashboard: anything else is refused and recorded.
      const origin = new URL(dashboard.url).origin;
      const foreign: string[] = [];
      await context.route("**/*", (route) => {
        const url = route.request().url();
        if (new URL(url).origin === origin) return route.continue();
        foreign.push(url);
        return route.abort();
      });
      const page = context.pages()[0] ?? await context.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (error) => pageErrors.push(String(error)));
      page.on("console", (message) => {
        if (message.type() === "error") pageErrors.push(message.text());
      });

      const response = await page.goto(dashboard.url, { waitUntil: "load" });
      assertEquals(response?.status(), 200);
      assertEquals(await page.title(), "tsercom live");
      await within(dashboard.waitForClients(1), 10_000, "the page's event stream");
      assertEquals(dashboard.clients, 1);

      // Publish tick by tick, letting the event loop (and so the socket) run in between.
      let tick = 0;
      for (const { tick: at, event } of simulation) {
        if (at !== tick) {
          tick = at;
          await macrotask();
        }
        dashboard.publish(event);
      }
      assertEquals(dashboard.dropped, 0);

      const [one, two] = SIMULATED_PEERS;
      await waitForPage(page, "every event", (n) => {
        return (globalThis as ProbeGlobal).__dashboard?.received() === n;
      }, simulation.length);
      await waitForPage(page, "both peers", (names) => {
        return JSON.stringify((globalThis as ProbeGlobal).__dashboard?.peers()) ===
          JSON.stringify(names);
      }, [one.name, two.name]);
      await waitForPage(page, "sensor-2 lost", (id) => {
        return (globalThis as ProbeGlobal).__dashboard?.rows().find((row) => row.id === id)
          ?.state === "lost";
      }, two.id);
      for (const peer of SIMULATED_PEERS) {
        const expected = expectedPoints(simulation, peer.id);
        assertEquals(expected, 2001); // 10 s at 200 Hz, both ends included
        await waitForPage(page, `${expected} IMU points for ${peer.name}`, ([id, n]) => {
          return (globalThis as ProbeGlobal).__dashboard?.points(id as string) === n;
        }, [peer.id, expected] as const);
        await waitForPage(page, `a depth frame for ${peer.name}`, (id) => {
          return ((globalThis as ProbeGlobal).__dashboard?.depthFrames(id) ?? 0) > 0;
        }, peer.id);
      }

      const rows = await page.evaluate(() => (globalThis as ProbeGlobal).__dashboard!.rows());
      const updates = (id: string) =>
        String(simulation.filter(({ event }) => "peer" in event && event.peer === id).length);
      assertEquals(rows, [
        {
          id: one.id,
          name: "sensor-1",
          state: "streaming",
          address: "10.77.0.2:50051",
          offset: "1.23",
          imuHz: "200",
          depthHz: "2",
          latency: "3.4",
          updates: updates(one.id),
          resyncs: "0",
        },
        {
          id: two.id,
          name: "sensor-2",
          state: "lost",
          address: "10.77.0.3:50052",
          offset: "-0.57",
          imuHz: "0",
          depthHz: "0",
          latency: "—",
          updates: updates(two.id),
          resyncs: "1",
        },
      ]);
      assertEquals(
        await page.evaluate(() => (globalThis as ProbeGlobal).__dashboard!.ignored()),
        0,
      );

      // The DOM the brief promises: a chart and a depth canvas per peer.
      for (const peer of SIMULATED_PEERS) {
        const chart = page.locator(`.imu-chart[data-peer="${peer.id}"]`);
        assertEquals(await chart.count(), 1);
        assertEquals(await chart.locator("canvas").count(), 1, "uPlot drew into the container");
        const depthCanvas = page.locator(`canvas.depth-frame[data-peer="${peer.id}"]`);
        assertEquals(await depthCanvas.count(), 1);
        assertEquals(
          await depthCanvas.evaluate((
            c,
          ) => [(c as unknown as { width: number }).width, c.clientWidth]),
          [64, 192],
        );
      }
      assertEquals(
        await page.locator("#sandbox").textContent(),
        "netns (private network namespace)",
      );

      const path = screenshotPath("dashboard.png");
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await page.screenshot({ path, fullPage: true });
      const { size } = await Deno.stat(path);
      assert(size > 10 * 1024, `the screenshot ${path} has only ${size} bytes`);

      assertEquals(foreign, [], "requests that did not go to the dashboard");
      assertEquals(pageErrors, [], "errors in the page");
    });
  } finally {
    await dashboard?.close();
  }
});
