/**
 * The whole application across three simulated hosts (network namespaces
 * joined by a switch, `tests/netns/mod.ts`): two data sources (hosts A and
 * B, `_source_agent.ts` running `_e2e_source.ts` in a Worker) and one
 * aggregator (host C, `_aggregator_agent.ts` running `_e2e_aggregator.ts`
 * in a Worker), over real mDNS, gRPC and SNTP.
 *
 * Each source's clock is the system clock plus an injected offset (A:
 * +250 ms, B: −400 ms); its snapshot at source time `t` is a pure function
 * of its name and `t` (`_e2e_signal.ts`), submitted every 10 ms with a
 * seeded jitter (often out of order). The aggregator agent checks every
 * rebuilt frame bit for bit, and reports every source timestamp it received
 * with its local timestamp and arrival time.
 *
 * Faults, in order: A's link down for ~3 s; A killed (SIGKILL) and started
 * again on another port; the aggregator's Worker crashed and started again.
 * At the end, every timestamp a source submitted while the aggregator ran is
 * accounted for: received, or submitted during an outage the aggregator
 * reported (from the last submission it had received before it reported
 * the source lost, to the moment it streamed again).
 *
 * What the test relies on, and why:
 *
 * - The aggregator's subscriptions end when no message comes for
 *   {@linkcode IDLE_MS} (`idleTimeoutMs`; the source sends keyframes every
 *   second), and it then marks the source failed. TCP rides out a 3 s
 *   outage, so without it the aggregator would neither lose nor reconnect
 *   A: its frames would just come late.
 * - After `ip link set eth0 up`, A's multicast route is restored: the kernel
 *   deletes it with the link, and mDNS sends by the routing table (Deno has
 *   no `IP_MULTICAST_IF`), so a source restarted afterwards would be mute.
 * - `clockReady` resolves after the SNTP start burst (its first sample
 *   alone was up to 31 ms off while the source was busy with the
 *   handshake). Local times are held to {@linkcode LOCAL_TOLERANCE_MICROS}
 *   from the sync on; the figures show the first {@linkcode SETTLE_MS}
 *   apart.
 *
 * Set `TSERCOM_E2E_DUMP=<file>` to write every agent event there (JSON).
 *
 * @module
 */

import { assert, assertEquals } from "../_assert.ts";
import { type SimHost, withHosts } from "../netns/mod.ts";
import { type AgentEvent, type AgentProcess, startAgent } from "../_agent_process.ts";
import { CallerId } from "../../rpc/caller_id.ts";

const SOURCE_AGENT = new URL("./_source_agent.ts", import.meta.url).pathname;
const AGGREGATOR_AGENT = new URL("./_aggregator_agent.ts", import.meta.url).pathname;

/** How long a stream may be silent before the aggregator reconnects, ms. */
const IDLE_MS = 1_000;
/** How many of the newest snapshots a keyframe carries (covers the 25 ms jitter). */
const KEYFRAME_DEPTH = 8;
/** How far (ms) an offset estimate may be from the injected offset. */
const OFFSET_TOLERANCE_MS = 10;
/** How far (µs) a frame's local timestamp may be from its source time minus the offset. */
const LOCAL_TOLERANCE_MICROS = 20_000;
/**
 * How long after a (re)connection's first offset estimate the clock is taken as settled, ms:
 * `clockReady` resolves at the first SNTP sample, the start burst (4 samples, 50 ms apart)
 * refines it, and a backward correction is slewed at 5 % (25 ms in 500 ms).
 */
const SETTLE_MS = 1_000;
/** How long a frame may take from submission to the aggregator agent, at most, ms. */
const MAX_LATENCY_MS = 500;

interface SourceSpec {
  readonly name: string;
  readonly offsetMs: number;
  readonly port: number;
  readonly id: string;
}

interface Frame {
  readonly ts: number;
  readonly local: number;
  readonly at: number;
}

function startSource(host: SimHost, spec: SourceSpec, type: string, port: number): AgentProcess {
  return startAgent(host, [
    Deno.execPath(),
    "run",
    "-A",
    "--no-check",
    "--unstable-net",
    SOURCE_AGENT,
    "--name",
    spec.name,
    "--id",
    spec.id,
    "--type",
    type,
    `--port=${port}`,
    `--offset-ms=${spec.offsetMs}`,
    `--keyframe-depth=${KEYFRAME_DEPTH}`,
  ]);
}

function startAggregator(host: SimHost, type: string): AgentProcess {
  return startAgent(host, [
    Deno.execPath(),
    "run",
    "-A",
    "--no-check",
    "--unstable-net",
    AGGREGATOR_AGENT,
    "--type",
    type,
    `--idle-ms=${IDLE_MS}`,
  ]);
}

/** Every timestamp the agents submitted, with the wall time (ms) it was submitted at. */
function submissions(agents: readonly AgentProcess[]): Map<number, number> {
  const sent = new Map<number, number>();
  for (const agent of agents) {
    for (const e of agent.events) {
      if (e.event !== "sent") continue;
      const ts = e.ts as number[];
      const at = e.at as number[];
      for (let i = 0; i < ts.length; i++) sent.set(ts[i], at[i]);
    }
  }
  return sent;
}

/** Every frame of `source` the aggregator agent received, in arrival order. */
function framesOf(aggregator: AgentProcess, source: string): Frame[] {
  const frames: Frame[] = [];
  for (const e of aggregator.events) {
    if (e.event !== "frames" || e.source !== source) continue;
    const ts = e.ts as number[];
    const local = e.local as number[];
    const at = e.at as number[];
    for (let i = 0; i < ts.length; i++) frames.push({ ts: ts[i], local: local[i], at: at[i] });
  }
  return frames;
}

function statesOf(aggregator: AgentProcess, source: string): AgentEvent[] {
  return aggregator.events.filter((e) => e.event === "state" && e.source === source);
}

function isState(source: string, state: string, after = 0): (e: AgentEvent) => boolean {
  return (e) => e.event === "state" && e.source === source && e.state === state && e.t >= after;
}

/** How |local + offset − source time| (µs) came out, before and after the clock settled. */
interface LocalErrors {
  /** The worst error of the frames that arrived at least SETTLE_MS after their sync. */
  settled: number;
  /** The worst error of the frames that arrived sooner (first offset estimate). */
  settling: number;
  /** How many of those were off by LOCAL_TOLERANCE_MICROS or more. */
  settlingOver: number;
}

/**
 * The errors of the local timestamps of `frames`, split at SETTLE_MS after
 * the `synced` state of the connection each frame came over.
 */
function localErrors(
  frames: readonly Frame[],
  states: readonly AgentEvent[],
  offsetMs: number,
): LocalErrors {
  const syncs = states.filter((e) => e.state === "synced").map((e) => e.t);
  const result: LocalErrors = { settled: 0, settling: 0, settlingOver: 0 };
  for (const f of frames) {
    const error = Math.abs(f.local + offsetMs * 1_000 - f.ts);
    const synced = syncs.findLast((t) => t <= f.at) ?? -Infinity;
    if (f.at - synced >= SETTLE_MS) {
      result.settled = Math.max(result.settled, error);
    } else {
      result.settling = Math.max(result.settling, error);
      if (error >= LOCAL_TOLERANCE_MICROS) result.settlingOver++;
    }
  }
  return result;
}

/** `agent.waitFor`, failing with the agent's events other than data (all of them are too many). */
async function wait(
  agent: AgentProcess,
  match: (e: AgentEvent) => boolean,
  timeoutMs: number,
  what: string,
): Promise<AgentEvent> {
  try {
    return await agent.waitFor(match, timeoutMs, what);
  } catch {
    throw new Error(`no ${what} within ${timeoutMs} ms; events: ${summary(agent)}`);
  }
}

/** `agent.next`, failing like {@linkcode wait}. */
async function next(
  agent: AgentProcess,
  match: (e: AgentEvent) => boolean,
  timeoutMs: number,
  what: string,
): Promise<AgentEvent> {
  try {
    return await agent.next(match, timeoutMs, what);
  } catch {
    throw new Error(`no ${what} within ${timeoutMs} ms; events: ${summary(agent)}`);
  }
}

function summary(agent: AgentProcess): string {
  const quiet = new Set(["frames", "sent", "clock"]);
  return JSON.stringify(agent.events.filter((e) => !quiet.has(e.event))).slice(0, 6_000);
}

/** Asks the aggregator for its report and checks that no frame differed from the expected snapshot. */
async function assertNoMismatches(aggregator: AgentProcess): Promise<void> {
  await aggregator.send({ cmd: "report" });
  const report = await next(aggregator, (e) => e.event === "report", 5_000, "a report");
  assertEquals(report.mismatches, {}, "frames that differ from the expected snapshot");
}

/** Waits until the aggregator has printed frames that arrived after `wall` (ms). */
async function framesAfter(
  aggregator: AgentProcess,
  source: string,
  wall: number,
  what: string,
): Promise<void> {
  await wait(
    aggregator,
    (e) =>
      e.event === "frames" && e.source === source &&
      (e.at as number[]).some((at) => at > wall),
    10_000,
    what,
  );
}

/** What the final accounting found for one source. */
interface Accounting {
  sent: number;
  received: number;
  dropped: number;
  silent: number[];
  duplicates: number;
  beforeStart: number;
  afterCutoff: number;
  outages: { from: number; to: number; dropped: number }[];
}

/**
 * Sorts every timestamp submitted for `source` up to `cutoff` (wall ms):
 * received; dropped in a reported outage — submitted after the newest
 * submission the aggregator had received before it reported the source
 * lost, and before it reported it streaming again; or silently lost.
 */
function account(
  sent: Map<number, number>,
  frames: readonly Frame[],
  states: readonly AgentEvent[],
  cutoff: number,
): Accounting {
  const received = new Map<number, number>();
  for (const f of frames) received.set(f.ts, (received.get(f.ts) ?? 0) + 1);
  const firstStreaming = states.find((e) => e.state === "streaming")!.t;
  const outages: Accounting["outages"] = [];
  let lostAt: number | undefined;
  for (const e of states) {
    if (e.state === "lost" && lostAt === undefined) lostAt = e.t;
    if (e.state === "streaming" && lostAt !== undefined) {
      // Everything submitted up to the newest submission received before the loss was
      // received (one stream, in order): the outage starts after it.
      let from = -Infinity;
      for (const f of frames) {
        if (f.at > lostAt) continue;
        const at = sent.get(f.ts);
        if (at !== undefined && at > from) from = at;
      }
      outages.push({ from, to: e.t, dropped: 0 });
      lostAt = undefined;
    }
  }
  const result: Accounting = {
    sent: 0,
    received: 0,
    dropped: 0,
    silent: [],
    duplicates: 0,
    beforeStart: 0,
    afterCutoff: 0,
    outages,
  };
  for (const [ts, at] of sent) {
    if (at <= firstStreaming) {
      result.beforeStart++;
      continue;
    }
    if (at > cutoff) {
      result.afterCutoff++;
      continue;
    }
    result.sent++;
    const count = received.get(ts) ?? 0;
    if (count > 0) {
      result.received++;
      result.duplicates += count - 1;
      continue;
    }
    const outage = outages.find((o) => at > o.from && at <= o.to);
    if (outage === undefined) {
      result.silent.push(ts);
    } else {
      outage.dropped++;
      result.dropped++;
    }
  }
  return result;
}

Deno.test("three hosts: discovery, exact streams, link loss, restarts and no silent data loss", async (t) => {
  const began = Date.now();
  await withHosts(3, async ([hostA, hostB, hostC]) => {
    const type = `_e2e-${crypto.randomUUID().slice(0, 6)}._tcp`;
    const specA: SourceSpec = {
      name: "sensor-A",
      offsetMs: 250,
      port: 50_101,
      id: CallerId.random().toString(),
    };
    const specB: SourceSpec = {
      name: "sensor-B",
      offsetMs: -400,
      port: 50_201,
      id: CallerId.random().toString(),
    };
    const specs = [specA, specB];
    const agentsA = [startSource(hostA, specA, type, specA.port)];
    const agentsB = [startSource(hostB, specB, type, specB.port)];
    let aggregator: AgentProcess | undefined;
    let aggregatorAgent: AgentProcess | undefined;
    const figures: Record<string, unknown> = {};
    try {
      const servingA = await wait(agentsA[0], (e) => e.event === "serving", 15_000, "A serving");
      const servingB = await wait(agentsB[0], (e) => e.event === "serving", 15_000, "B serving");
      assertEquals([servingA.port, servingB.port], [specA.port, specB.port]);
      const spawnedAt = Date.now();
      aggregator = startAggregator(hostC, type);
      const agg = aggregator;
      aggregatorAgent = agg;

      await t.step(
        "1. the aggregator discovers both sources within 5 s, gets a caller id from each and measures their clock offsets",
        async () => {
          for (const [spec, source] of [[specA, agentsA[0]], [specB, agentsB[0]]] as const) {
            const connected = await wait(
              agg,
              isState(spec.name, "connected"),
              10_000,
              `${spec.name} connected`,
            );
            const found = connected.t - spawnedAt;
            figures[`${spec.name} discovered+connected (ms after the aggregator was spawned)`] =
              found;
            assert(found < 5_000, `${spec.name} was connected ${found} ms after spawning`);
            assertEquals(connected.callerId, spec.id, "the caller id is the source's TXT id");
            assertEquals(connected.port, spec.port);
            assertEquals(connected.address, spec === specA ? hostA.address : hostB.address);
            const issued = String(connected.issuedId);
            assert(CallerId.tryParse(issued) !== null, `GetId answered ${issued}`);
            const ids = await wait(source, (e) => e.event === "id", 5_000, "an issued id");
            assertEquals(ids.id, issued, "the id the source issued over GetId");
            const synced = await wait(agg, isState(spec.name, "synced"), 10_000, "synced");
            figures[`${spec.name} first offset estimate (ms)`] = Number(synced.offsetMicros) /
              1_000;
            // The first estimate comes from one sample; the start burst (4 samples, 50 ms apart)
            // settles it: read the estimate reported half a second later.
            const clock = await wait(
              agg,
              (e) => e.event === "clock" && e.source === spec.name && e.t >= synced.t + 500,
              5_000,
              `${spec.name}'s settled offset`,
            );
            const offsetMs = Number(clock.offsetMicros) / 1_000;
            figures[`${spec.name} offset estimate (ms)`] = offsetMs;
            assert(
              Math.abs(offsetMs - spec.offsetMs) <= OFFSET_TOLERANCE_MS,
              `${spec.name}: offset ${offsetMs} ms, injected ${spec.offsetMs} ms`,
            );
            await wait(agg, isState(spec.name, "streaming"), 10_000, `${spec.name} streaming`);
          }
        },
      );

      await t.step(
        "2. over 3 s every snapshot is rebuilt exactly, none is missing, and local times match the offsets",
        async () => {
          const from = Date.now();
          // 300 steps of A (3 s), counted in what A submitted.
          const last = await wait(
            agentsA[0],
            (e) => e.event === "sent" && e.t >= from + 3_000,
            10_000,
            "3 s of submissions",
          );
          const cutoff = last.t - MAX_LATENCY_MS;
          await framesAfter(agg, specA.name, last.t, "A's frames to catch up");
          await framesAfter(agg, specB.name, last.t, "B's frames to catch up");
          await assertNoMismatches(agg);
          for (const [spec, agents] of [[specA, agentsA], [specB, agentsB]] as const) {
            const sent = submissions(agents);
            const frames = framesOf(agg, spec.name);
            const got = new Set(frames.map((f) => f.ts));
            const streaming = statesOf(agg, spec.name).find((e) => e.state === "streaming")!;
            const window = [...sent].filter(([, at]) => at > streaming.t && at <= cutoff);
            const missing = window.filter(([ts]) => !got.has(ts));
            figures[`${spec.name} step 2: submitted / received`] = `${window.length} / ${
              window.length - missing.length
            }`;
            assert(window.length >= 250, `only ${window.length} submissions in 3 s`);
            assertEquals(missing.map(([ts]) => ts), [], `${spec.name}: submitted, not received`);
            const errors = localErrors(frames, statesOf(agg, spec.name), spec.offsetMs);
            figures[`${spec.name} step 2: worst |local + offset - source time| (ms)`] = {
              settled: errors.settled / 1_000,
              firstSecond: errors.settling / 1_000,
            };
            assert(
              Math.max(errors.settled, errors.settling) < LOCAL_TOLERANCE_MICROS,
              `${spec.name}: local time off by ${Math.max(errors.settled, errors.settling)} µs`,
            );
          }
        },
      );

      await t.step(
        "3. with A's link down for 3 s the aggregator loses A, reconnects after the link is up and resumes exactly; B is unaffected",
        async () => {
          const downAt = Date.now();
          const down = await hostA.run(["ip", "link", "set", "eth0", "down"]);
          assert(down.success, down.stderr);
          const lost = await wait(
            agg,
            isState(specA.name, "lost", downAt),
            IDLE_MS + 5_000,
            "A lost",
          );
          figures["A link down → reported lost (ms)"] = lost.t - downAt;
          // The link stays down while A submits 3 s of snapshots.
          await wait(
            agentsA[0],
            (e) => e.event === "sent" && e.t >= downAt + 3_000,
            10_000,
            "3 s of A's submissions",
          );
          const upAt = Date.now();
          // Up again, with the multicast route the harness gave it (the kernel deleted it with
          // the link; mDNS has no IP_MULTICAST_IF in Deno and follows the routing table).
          const up = await hostA.run([
            "sh",
            "-c",
            "ip link set eth0 up && ip route replace 224.0.0.0/4 dev eth0",
          ]);
          assert(up.success, up.stderr);
          const streaming = await wait(
            agg,
            isState(specA.name, "streaming", upAt),
            15_000,
            "A streaming again",
          );
          figures["A link up → streaming again (ms)"] = streaming.t - upAt;
          assertEquals(streaming.port, specA.port);
          await framesAfter(agg, specA.name, streaming.t + 500, "A's frames after the reconnect");
          await assertNoMismatches(agg);
          const framesA = framesOf(agg, specA.name);
          assert(framesA.some((f) => f.at > streaming.t), "A's frames resumed");
          // B: never lost, and every snapshot it submitted while A was down arrived.
          const lostB = statesOf(agg, specB.name).filter((e) => e.state === "lost");
          assertEquals(lostB.length, 0, "B was never lost");
          const gotB = new Set(framesOf(agg, specB.name).map((f) => f.ts));
          const windowB = [...submissions(agentsB)].filter(([, at]) =>
            at >= downAt && at <= streaming.t
          );
          assert(windowB.length >= 250, `B submitted only ${windowB.length} while A was down`);
          assertEquals(windowB.filter(([ts]) => !gotB.has(ts)).map(([ts]) => ts), [], "B missing");
        },
      );

      await t.step(
        "4. A killed and restarted on another port is followed there (same caller id) and resumes",
        async () => {
          const before = statesOf(agg, specA.name).length;
          const killedAt = Date.now();
          agentsA[0].kill(); // SIGKILL: no goodbye, no GOAWAY
          await agentsA[0].exit();
          const restartPort = specA.port + 1;
          const restarted = startSource(hostA, specA, type, restartPort);
          agentsA.push(restarted);
          const serving = await wait(restarted, (e) => e.event === "serving", 15_000, "A again");
          assertEquals(serving.port, restartPort);
          const lost = await wait(agg, isState(specA.name, "lost", killedAt), 10_000, "A lost");
          figures["A killed → reported lost (ms)"] = lost.t - killedAt;
          const streaming = await wait(
            agg,
            (e) => isState(specA.name, "streaming", killedAt)(e) && e.port === restartPort,
            15_000,
            "A streaming from its new port",
          );
          figures["A killed → streaming from the new port (ms)"] = streaming.t - killedAt;
          figures["A restarted (serving) → streaming (ms)"] = streaming.t - serving.t;
          assertEquals(streaming.callerId, specA.id);
          assertEquals(streaming.timePort, serving.timePort, "the new time port, from TXT");
          assert(statesOf(agg, specA.name).length > before);
          await framesAfter(agg, specA.name, streaming.t + 500, "A's frames from the new port");
          await assertNoMismatches(agg);
        },
      );

      await t.step(
        "5. the aggregator's Worker crashes; a new aggregator runtime rediscovers both sources and resumes",
        async () => {
          const crashAt = Date.now();
          await agg.send({ cmd: "crash" });
          const crashed = await wait(agg, (e) => e.event === "crashed", 5_000, "the crash");
          const error = agg.events.find((e) =>
            e.event === "error" && e.name === "WorkerCrashedError" && e.t >= crashAt
          );
          assert(error !== undefined, "the watcher reported a WorkerCrashedError");
          figures["crash command → WorkerCrashedError (ms)"] = crashed.t - crashAt;
          await wait(agg, (e) => e.event === "started" && e.gen === 2, 10_000, "generation 2");
          for (const spec of specs) {
            const streaming = await wait(
              agg,
              (e) => isState(spec.name, "streaming", crashAt)(e) && e.gen === 2,
              10_000,
              `${spec.name} streaming in generation 2`,
            );
            figures[`${spec.name} crash → streaming again (ms)`] = streaming.t - crashAt;
            await framesAfter(agg, spec.name, streaming.t + 500, `${spec.name}'s frames`);
          }
          // Nothing else reached generation 1's watcher once the Worker was gone: the agent
          // shuts the old manager down from inside the watcher listener, and finds it failed.
          const others = agg.events
            .filter((e) =>
              e.event === "error" && e.gen === 1 && e.t >= crashAt &&
              e.name !== "WorkerCrashedError"
            )
            .map((e) => `${e.name}: ${e.message}`);
          figures["other errors after the crash"] = others;
          assertEquals(others, [], "unexpected errors");
          await assertNoMismatches(agg);
        },
      );

      await t.step(
        "no silent data loss: every submitted snapshot was received or fell in a reported outage",
        async () => {
          const cutoff = Date.now();
          for (const spec of specs) {
            await framesAfter(agg, spec.name, cutoff + MAX_LATENCY_MS, `${spec.name}'s last`);
          }
          await agg.send({ cmd: "report" });
          const report = await next(agg, (e) => e.event === "report", 5_000, "the last report");
          // The aggregator first: its channels close before the sources' servers stop.
          const aggErr = await agg.exit();
          aggregator = undefined;
          for (const agent of [agentsA.at(-1)!, agentsB[0]]) await agent.exit();
          figures["aggregator stderr"] = aggErr.trim().slice(0, 500);
          assertEquals(report.mismatches, {}, "frames that differ from the expected snapshot");
          for (const [spec, agents] of [[specA, agentsA], [specB, agentsB]] as const) {
            const frames = framesOf(agg, spec.name);
            const result = account(
              submissions(agents),
              frames,
              statesOf(agg, spec.name),
              cutoff,
            );
            const errors = localErrors(frames, statesOf(agg, spec.name), spec.offsetMs);
            figures[`${spec.name} accounting`] = {
              sent: result.sent,
              received: result.received,
              dropped: result.dropped,
              duplicates: result.duplicates,
              framesReceived: frames.length,
              outages: result.outages.map((o) => ({
                ms: Number.isFinite(o.from) ? o.to - o.from : null,
                dropped: o.dropped,
              })),
              "worst |local + offset - source time| (ms)": {
                settled: errors.settled / 1_000,
                firstSecond: errors.settling / 1_000,
                framesOver20msInFirstSecond: errors.settlingOver,
              },
            };
            assertEquals(result.silent, [], `${spec.name}: lost outside any reported outage`);
            assertEquals(result.received + result.dropped, result.sent);
            assert(
              Math.max(errors.settled, errors.settling) < LOCAL_TOLERANCE_MICROS,
              `${spec.name}: local time off by ${Math.max(errors.settled, errors.settling)} µs`,
            );
            // A went through three outages (link, restart, crash), B through one (crash).
            assertEquals(result.outages.length, spec === specA ? 3 : 1);
          }
        },
      );
    } finally {
      // The aggregator first: its channels close before the sources' servers stop.
      await aggregator?.exit();
      for (const agent of [...agentsA, ...agentsB]) await agent.exit();
      figures["total runtime (s)"] = (Date.now() - began) / 1_000;
      const dump = Deno.env.get("TSERCOM_E2E_DUMP");
      if (dump) {
        const all = {
          agg: aggregatorAgent?.events,
          A: agentsA.map((a) => a.events),
          B: agentsB.map((a) => a.events),
        };
        Deno.writeTextFileSync(dump, JSON.stringify(all));
      }
      console.log(JSON.stringify(figures, null, 2));
    }
  });
});
