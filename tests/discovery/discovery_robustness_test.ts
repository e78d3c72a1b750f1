/**
 * Robustness of discovery across simulated hosts (network namespaces joined by a bridge, see
 * `tests/netns/mod.ts`): goodbyes, a pulled cable, 200 services from one host, and a flood of
 * random and mutated packets. Nothing reaches the machine's real interfaces.
 *
 * Every step starts its own agents (`_agent.ts`) and stops them, so that the steps do not see
 * each other's services or caches. Times are the agents' event times (`t`, ms, comparable across
 * processes) and the test's own clock on the same basis.
 *
 * @module
 */

import { assert, assertEquals } from "../_assert.ts";
import { type SimHost, startRootCapture, withHosts } from "../netns/mod.ts";
import { type Agent, type AgentEvent, startAgent } from "./_agents.ts";
import { decodeMessage } from "../../discovery/mdns/_codec.ts";
import { nameKey } from "../../discovery/mdns/_types.ts";

const FUZZ_SENDER = new URL("./_fuzz_sender.ts", import.meta.url).pathname;

/** Largest Ethernet frame without FCS on a 1500-byte MTU. */
const MAX_FRAME_BYTES = 1514;
/** Largest IPv4 packet on a 1500-byte MTU. */
const MAX_IP_BYTES = 1500;

function now(): number {
  return performance.timeOrigin + performance.now();
}

function tag(): string {
  return crypto.randomUUID().slice(0, 8);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface Info {
  name: string;
  port: number;
  addresses: string[];
  mdnsName: string;
}

function info(event: AgentEvent): Info {
  return event.info as Info;
}

function ofRef(ref: string, kind: string) {
  return (e: AgentEvent) => e.ref === ref && e.event === kind;
}

interface CachedEntry {
  name: string;
  type: string;
  data: unknown;
  ttl: number;
  receivedAt: number;
  expiresAt: number;
}

let requests = 0;
/** Asks an agent for its querier's cache entries owned by `names`. */
async function cached(agent: Agent, names: string[]): Promise<CachedEntry[]> {
  const ref = `cache-${++requests}`;
  await agent.send({ cmd: "cached", ref, names });
  const event = await agent.waitFor(ofRef(ref, "cached"), 10_000, "a cache dump");
  return event.records as CachedEntry[];
}

interface EngineCounters {
  engine: Record<string, number>;
  querier: Record<string, number>;
  responder: Record<string, number>;
}

/** Asks an agent for its engine's, querier's and responder's counters. */
async function engineCounters(agent: Agent): Promise<EngineCounters> {
  const ref = `counters-${++requests}`;
  await agent.send({ cmd: "engine-counters", ref });
  const event = await agent.waitFor(ofRef(ref, "engine-counters"), 10_000, "the counters");
  return event as unknown as EngineCounters;
}

/** The time of the event at which `ref` had reported `count` distinct added instances. */
function timeOfNthAdded(agent: Agent, ref: string, count: number): number | undefined {
  const seen = new Set<string>();
  for (const event of agent.events) {
    if (event.ref !== ref || event.event !== "added") continue;
    seen.add(info(event).mdnsName);
    if (seen.size === count) return event.t;
  }
  return undefined;
}

function distinctAdded(agent: Agent, ref: string): Set<string> {
  return new Set(agent.events.filter(ofRef(ref, "added")).map((e) => info(e).mdnsName));
}

/** A tcpdump writing a pcap file of the mDNS traffic on a host's eth0. */
interface Capture {
  /** Stops tcpdump (SIGINT to its process group) and returns the pcap file's bytes. */
  stop(): Promise<Uint8Array>;
}

async function startCapture(host: SimHost, file: string): Promise<Capture> {
  // Non-first IP fragments carry no UDP header: catch them too, to prove there are none.
  const filter = "udp port 5353 or (ip[6:2] & 0x3fff != 0)";
  const child = host.spawn(
    ["tcpdump", "-i", "eth0", "-n", "-p", "-U", "-Z", "root", "-s", "0", "-w", file, filter],
    { stdout: "null", stderr: "piped" },
  );
  let stderr = "";
  const reading = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      if (stderr.length < 100_000) stderr += chunk;
    }
  })();
  for (let waited = 0; !stderr.includes("listening on"); waited += 20) {
    if (waited > 5_000) {
      try {
        Deno.kill(-child.pid, "SIGKILL");
      } catch {
        // Gone.
      }
      await child.status;
      throw new Error(`tcpdump on ${host.name} did not start: ${stderr}`);
    }
    await delay(20);
  }
  return {
    async stop() {
      try {
        Deno.kill(-child.pid, "SIGINT");
      } catch {
        // Gone.
      }
      const status = await Promise.race([child.status, delay(5_000).then(() => undefined)]);
      if (status === undefined) {
        Deno.kill(-child.pid, "SIGKILL");
        await child.status;
      }
      await reading;
      return await Deno.readFile(file);
    },
  };
}

interface WireReport {
  frames: number;
  maxFrame: number;
  maxIp: number;
  maxUdpPayload: number;
  fragments: number;
  undecodable: number;
}

/** Reads an Ethernet pcap file (microsecond or nanosecond, either byte order). */
function analysePcap(bytes: Uint8Array): WireReport {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, true);
  const little = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  assert(
    little || view.getUint32(0, false) === 0xa1b2c3d4 || view.getUint32(0, false) === 0xa1b23c4d,
    "a pcap file",
  );
  assertEquals(view.getUint32(20, little), 1, "the capture's link type is Ethernet");
  const report: WireReport = {
    frames: 0,
    maxFrame: 0,
    maxIp: 0,
    maxUdpPayload: 0,
    fragments: 0,
    undecodable: 0,
  };
  for (let at = 24; at + 16 <= bytes.length;) {
    const included = view.getUint32(at + 8, little);
    const original = view.getUint32(at + 12, little);
    const frame = bytes.subarray(at + 16, at + 16 + included);
    at += 16 + included;
    report.frames++;
    report.maxFrame = Math.max(report.maxFrame, original);
    if (frame.length < 34 || frame[12] !== 0x08 || frame[13] !== 0x00) continue; // IPv4 only
    const ip = frame.subarray(14);
    const ipView = new DataView(ip.buffer, ip.byteOffset, ip.byteLength);
    const total = ipView.getUint16(2);
    report.maxIp = Math.max(report.maxIp, total);
    const fragment = ipView.getUint16(6);
    if ((fragment & 0x3fff) !== 0) report.fragments++;
    if ((fragment & 0x1fff) !== 0 || ip[9] !== 17) continue;
    const headerBytes = (ip[0] & 0x0f) * 4;
    const udpLength = ipView.getUint16(headerBytes + 4);
    report.maxUdpPayload = Math.max(report.maxUdpPayload, udpLength - 8);
    if ((fragment & 0x2000) !== 0) continue; // the rest is in other fragments
    try {
      decodeMessage(ip.slice(headerBytes + 8, headerBytes + udpLength));
    } catch {
      report.undecodable++;
    }
  }
  return report;
}

Deno.test("discovery stays correct under goodbyes, pulled cables, scale and garbage", async (t) => {
  // Proof that none of this reaches the machine's real interfaces.
  const rootCapture = await startRootCapture("udp port 5353");
  let leaked: number | undefined;
  try {
    await scenarios(t);
  } finally {
    leaked = (await rootCapture.stop()).receivedByFilter;
  }
  assertEquals(leaked, 0, "mDNS packets seen outside the simulated hosts");
});

async function scenarios(t: Deno.TestContext): Promise<void> {
  await withHosts(3, async ([hostA, hostB, hostC]) => {
    const running = new Set<Agent>();
    const start = async (host: SimHost) => {
      const agent = await startAgent(host, { shared: true });
      running.add(agent);
      return agent;
    };
    const stop = async (...agents: Agent[]) => {
      for (const agent of agents) {
        if (!running.delete(agent)) continue;
        const stderr = await agent.exit();
        assertEquals(stderr.trim(), "", "an agent wrote to stderr");
      }
    };
    const tmp = await Deno.makeTempDir({ prefix: "tsercom-robustness-" });
    try {
      await t.step("a goodbye removes the service on the other host within 2 s", async () => {
        const a = await start(hostA);
        const b = await start(hostB);
        try {
          const type = `_rb-${tag()}._tcp`;
          await b.send({ cmd: "listen", ref: "l", type });
          await b.waitFor(ofRef("l", "listening"), 5_000);
          await a.send({ cmd: "publish", ref: "p", port: 40_001, type, instanceName: "bye" });
          await b.waitFor(ofRef("l", "added"), 10_000, "the service");
          const sentAt = now();
          await a.send({ cmd: "unpublish", ref: "p" });
          const removed = await b.waitFor(ofRef("l", "removed"), 5_000, "the removal");
          const unpublished = await a.waitFor(ofRef("p", "unpublished"), 5_000);
          const latency = removed.t - sentAt;
          console.log(
            `goodbye: removed ${latency.toFixed(0)} ms after the unpublish command ` +
              `(${(removed.t - unpublished.t).toFixed(0)} ms after close() resolved)`,
          );
          assert(String(removed.name).startsWith("bye"));
          assert(latency < 2_000, `removal took ${latency} ms, wanted < 2000 ms`);
        } finally {
          await stop(a, b);
        }
      });

      await t.step(
        "a pulled cable removes the service when its TTL runs out, and plugging it back finds it again",
        async () => {
          const ttl = 3;
          const a = await start(hostA);
          const b = await start(hostB);
          let cableOut = false;
          const link = async (state: "up" | "down") => {
            const out = await hostA.run(["ip", "link", "set", "eth0", state]);
            assert(out.success, `ip link set eth0 ${state}: ${out.stderr}`);
            if (state === "up") {
              // Linux deletes the routes through an interface that goes down and restores only
              // those of its addresses: put back the multicast route of the harness.
              const route = await hostA.run([
                "ip",
                "route",
                "replace",
                "224.0.0.0/4",
                "dev",
                "eth0",
              ]);
              assert(route.success, `ip route replace: ${route.stderr}`);
            }
            cableOut = state === "down";
          };
          try {
            await a.send({ cmd: "reopen", ttl: { host: ttl, service: ttl, other: ttl } });
            const { hostName } = await a.waitFor((e) => e.event === "reopened", 10_000);
            const type = `_rb-${tag()}._tcp`;
            await b.send({ cmd: "listen", ref: "l", type });
            await b.waitFor(ofRef("l", "listening"), 5_000);
            await a.send({ cmd: "publish", ref: "p", port: 40_002, type, instanceName: "cable" });
            const published = await a.waitFor(ofRef("p", "published"), 10_000);
            const { instanceName } = published;
            await b.waitFor(ofRef("l", "added"), 10_000, "the service");

            // Pull the cable in the steady state, once A's three announcements (0 s, 1 s, 3 s)
            // are over and B keeps its records by refresh queries; and just after B refreshed
            // them, so that the removal cannot be mistaken for one before the TTL: when every
            // record B needs (the PTR, the SRV, the address) has at least 60 % of its TTL left.
            await delay(Math.max(0, published.t + 3_300 - now()));
            const names = [`${type}.local`, String(instanceName), String(hostName)];
            let lastChance = 0;
            for (let tries = 0;; tries++) {
              assert(tries < 100, "B's records were never all fresh at once");
              const records = (await cached(b, names)).filter((r) =>
                ["PTR", "SRV", "A"].includes(r.type)
              );
              const types = new Set(records.map((r) => r.type));
              lastChance = Math.min(...records.map((r) => r.expiresAt));
              if (types.size === 3 && lastChance - now() >= 0.6 * ttl * 1000) break;
              await delay(50);
            }
            const pulledAt = now();
            await link("down");
            const removed = await b.waitFor(
              ofRef("l", "removed"),
              (ttl + 3) * 1000,
              "the removal after the cable was pulled",
            );
            const afterPull = removed.t - pulledAt;
            console.log(
              `pulled cable (TTL ${ttl} s): removed ${afterPull.toFixed(0)} ms after the pull, ` +
                `${(removed.t - lastChance).toFixed(0)} ms after the first record's expiry`,
            );
            assert(
              afterPull >= 0.5 * ttl * 1000,
              `removed ${afterPull} ms after the pull: before half the TTL`,
            );
            assert(
              removed.t >= lastChance - 50,
              `removed ${lastChance - removed.t} ms before any record expired`,
            );
            assert(
              afterPull <= ttl * 1000 + 1_500,
              `removed ${afterPull} ms after the pull, wanted within the TTL + 1.5 s`,
            );

            const unplugged = await engineCounters(a);
            const pluggedAt = now();
            await link("up");
            // The socket's membership of the mDNS group survives the interface going down and up.
            const groups = await hostA.run(["ip", "maddr", "show", "dev", "eth0"]);
            assert(groups.stdout.includes("224.0.0.251"), `A left the group: ${groups.stdout}`);
            // B finds it again at its next continuous query at the latest (RFC 6762 §5.2: 1 s,
            // 2 s, 4 s, 8 s … after the browse started, so at most ~8 s from here).
            const again = await b.waitFor(
              (e) => e.ref === "l" && e.event === "added" && e.t > removed.t,
              12_000,
              "the service again after the cable was plugged back",
            );
            const plugged = await engineCounters(a);
            const listening = b.events.find(ofRef("l", "listening"))!;
            console.log(
              `pulled cable: plugged back ${(pluggedAt - listening.t).toFixed(0)} ms after B ` +
                `started browsing, found again ${(again.t - pluggedAt).toFixed(0)} ms later; A ` +
                `while unplugged ${JSON.stringify(unplugged.engine)}, after ${
                  JSON.stringify(plugged.engine)
                }; A's probes ${unplugged.responder.probes} → ${plugged.responder.probes}, ` +
                `announcements ${unplugged.responder.announcements} → ${plugged.responder.announcements}`,
            );
            assertEquals(info(again).addresses, [hostA.address]);
          } finally {
            if (cableOut) await link("up");
            await stop(a, b);
          }
        },
      );

      await t.step({
        name: "a responder announces again once its cable is plugged back (RFC 6762 §8.3)",
        fn: async () => {
          const a = await start(hostA);
          let cableOut = false;
          try {
            await a.send({ cmd: "publish", ref: "p", port: 40_003, type: `_rb-${tag()}._tcp` });
            await a.waitFor(ofRef("p", "published"), 10_000);
            // Let the three announcements (0 s, 1 s, 3 s) end.
            await delay(3_500);
            const before = await engineCounters(a);
            cableOut = (await hostA.run(["ip", "link", "set", "eth0", "down"])).success;
            await delay(1_000);
            assert((await hostA.run(["ip", "link", "set", "eth0", "up"])).success);
            cableOut = false;
            await hostA.run(["ip", "route", "replace", "224.0.0.0/4", "dev", "eth0"]);
            let after = before;
            for (
              let i = 0;
              i < 40 && after.responder.announcements === before.responder.announcements;
              i++
            ) {
              await delay(200);
              after = await engineCounters(a);
            }
            assert(
              after.responder.announcements > before.responder.announcements,
              "A did not announce again within 8 s of its link coming back",
            );
          } finally {
            if (cableOut) await hostA.run(["ip", "link", "set", "eth0", "up"]);
            await hostA.run(["ip", "route", "replace", "224.0.0.0/4", "dev", "eth0"]);
            await stop(a);
          }
        },
      });

      await t.step(
        "200 services of one host are all discovered by another within 3 s, in packets within the MTU",
        async () => {
          const count = 200;
          const captureA = await startCapture(hostA, `${tmp}/a.pcap`);
          const captureB = await startCapture(hostB, `${tmp}/b.pcap`);
          let captures: Capture[] = [captureA, captureB];
          const mine: Agent[] = [];
          try {
            // Published first, then B starts listening.
            let a = await start(hostA);
            let b = await start(hostB);
            mine.push(a, b);
            const type1 = `_rb-${tag()}._tcp`;
            const publishSent1 = now();
            await a.send({ cmd: "publish-many", ref: "m1", type: type1, count, port: 41_000 });
            const published1 = await a.waitFor(ofRef("m1", "published-many"), 30_000);
            const listenSent = now();
            await b.send({ cmd: "listen", ref: "l1", type: type1 });
            await b.waitFor(
              (e) => ofRef("l1", "added")(e) && distinctAdded(b, "l1").size >= count,
              15_000,
              `${count} services`,
            );
            const all1 = timeOfNthAdded(b, "l1", count)!;
            const listenToAll = all1 - listenSent;

            // A fresh pair: B listens first, then A publishes.
            await stop(b, a);
            a = await start(hostA);
            b = await start(hostB);
            mine.push(a, b);
            const type2 = `_rb-${tag()}._tcp`;
            await b.send({ cmd: "listen", ref: "l2", type: type2 });
            await b.waitFor(ofRef("l2", "listening"), 5_000);
            const publishSent2 = now();
            await a.send({ cmd: "publish-many", ref: "m2", type: type2, count, port: 42_000 });
            const published2 = await a.waitFor(ofRef("m2", "published-many"), 30_000);
            await b.waitFor(
              (e) => ofRef("l2", "added")(e) && distinctAdded(b, "l2").size >= count,
              15_000,
              `${count} services`,
            );
            const all2 = timeOfNthAdded(b, "l2", count)!;
            const countersA = await engineCounters(a);
            const countersB = await engineCounters(b);
            assertEquals(distinctAdded(b, "l2").size, count);
            assertEquals(b.events.filter((e) => e.event === "removed").length, 0);
            await stop(b, a);

            const reports = [];
            for (const capture of captures) reports.push(analysePcap(await capture.stop()));
            captures = [];
            console.log(
              `scale: published first (publish-many took ${
                (published1.t - publishSent1).toFixed(0)
              } ms): all ${count} discovered ${listenToAll.toFixed(0)} ms after the listen ` +
                `command; listening first: all discovered ${
                  (all2 - published2.t).toFixed(0)
                } ms after the last publish() resolved, ${
                  (all2 - publishSent2).toFixed(0)
                } ms after the publish command`,
            );
            console.log(
              `scale: wire on A ${JSON.stringify(reports[0])}, on B ${JSON.stringify(reports[1])}`,
            );
            console.log(
              `scale: A sent ${countersA.engine.sent} (send errors ${countersA.engine.sendErrors}), ` +
                `B sent ${countersB.engine.sent}; B querier ${JSON.stringify(countersB.querier)}`,
            );
            assert(listenToAll < 3_000, `listener started late: ${listenToAll} ms, wanted < 3000`);
            assert(
              all2 - published2.t < 3_000,
              `listener first: ${all2 - published2.t} ms, wanted < 3000`,
            );
            for (const report of reports) {
              assert(report.frames > 0, "the capture saw the traffic");
              assertEquals(report.fragments, 0, "no IP fragments");
              assert(report.maxFrame <= MAX_FRAME_BYTES, `a ${report.maxFrame}-byte frame`);
              assert(report.maxIp <= MAX_IP_BYTES, `a ${report.maxIp}-byte IP packet`);
              assertEquals(report.undecodable, 0, "every datagram decodes");
            }
          } finally {
            await stop(...mine.reverse());
            for (const capture of captures) await capture.stop().catch(() => undefined);
          }
        },
      );

      await t.step(
        "10,000 random and mutated packets crash nothing, cache nothing malformed, and the service still answers",
        async () => {
          const a = await start(hostA);
          const b = await start(hostB);
          const agents = [a, b];
          try {
            const type = `_rb-${tag()}._tcp`;
            await a.send({ cmd: "publish", ref: "p", port: 40_004, type, instanceName: "sturdy" });
            const { instanceName } = await a.waitFor(ofRef("p", "published"), 10_000);
            await a.send({ cmd: "listen", ref: "fa", type: "_fuzz._tcp" });
            await b.send({ cmd: "listen", ref: "fb", type: "_fuzz._tcp" });
            await b.send({ cmd: "listen", ref: "l", type });
            await b.waitFor(ofRef("l", "added"), 10_000, "the service");

            const out = await hostC.run(
              [
                Deno.execPath(),
                "run",
                "-A",
                "--no-check",
                "--unstable-net",
                FUZZ_SENDER,
                "--seed",
                "20240607",
                "--count",
                "10000",
                "--probe-type",
                `${type}.local`,
                "--probe-instance",
                String(instanceName),
              ],
              { timeout: 40_000 },
            );
            assert(out.success, `the fuzz sender failed: ${out.stderr}`);
            const summary = JSON.parse(out.stdout.trim().split("\n").at(-1)!) as {
              sent: number;
              sendErrors: number;
              decodedOk: number;
              decodeFailed: number;
              failedOnly: string[];
              controls: string[];
              kinds: Record<string, number>;
            };
            assert(summary.sent >= 10_000, `only ${summary.sent} packets sent`);

            // Wait until both have read everything (their `received` stops moving), bounded.
            let counters = await Promise.all(agents.map(engineCounters));
            for (let round = 0; round < 20; round++) {
              await delay(200);
              const next = await Promise.all(agents.map(engineCounters));
              const settled = next.every((c, i) =>
                c.engine.received === counters[i].engine.received
              );
              counters = next;
              if (settled) break;
            }
            const [countersA, countersB] = counters;
            // Datagrams the kernel dropped because a socket's receive buffer was full (per host).
            const overflows = await Promise.all([hostA, hostB].map(async (host) => {
              const snmp = (await host.run(["cat", "/proc/net/snmp"])).stdout.split("\n")
                .filter((line) => line.startsWith("Udp:")).map((line) => line.split(/\s+/));
              return snmp.length === 2 ? snmp[1][snmp[0].indexOf("RcvbufErrors")] : "?";
            }));
            console.log(
              `fuzz: UDP receive buffer overflows on A ${overflows[0]}, on B ${overflows[1]}`,
            );
            console.log(
              `fuzz: sent ${summary.sent} (${summary.decodedOk} decode, ${summary.decodeFailed} ` +
                `do not; ${summary.failedOnly.length} marker names only in the latter; ` +
                `${summary.controls.length} controls); kinds ${JSON.stringify(summary.kinds)}`,
            );
            for (const [name, c] of [["A", countersA], ["B", countersB]] as const) {
              console.log(
                `fuzz: ${name} engine ${JSON.stringify(c.engine)}; querier ${
                  JSON.stringify(c.querier)
                }; responder ${JSON.stringify(c.responder)}`,
              );
            }
            for (const c of [countersA, countersB]) {
              assert(c.engine.received >= summary.sent / 2, "the packets reached the agents");
              assert(c.engine.decodeErrors > 0, "malformed packets were counted");
              assertEquals(c.engine.handlerErrors, 0, "no handler error");
              assertEquals(c.querier.internalErrors, 0, "no querier internal error");
              assertEquals(c.querier.listenerErrors, 0, "no listener error");
            }
            assertEquals(countersA.responder.conflicts, 0, "A saw no conflict");

            // Nothing named only in packets that failed to decode is cached.
            const failed = new Set(summary.failedOnly);
            for (const [name, agent] of [["A", a], ["B", b]] as const) {
              const records = await cached(agent, [...failed, "_fuzz._tcp.local"]);
              const bad = records.filter((r) =>
                failed.has(nameKey(r.name)) ||
                (r.type === "PTR" && failed.has(nameKey(String(r.data))))
              );
              assertEquals(bad, [], `${name} cached records of undecodable packets`);
              const controls = await cached(agent, summary.controls);
              const controlsCached = new Set(controls.map((r) => nameKey(r.name))).size;
              console.log(
                `fuzz: ${name} caches ${records.length} records of the fuzz type or failed names; ` +
                  `${controlsCached}/${summary.controls.length} controls cached`,
              );
              assert(controlsCached > 0, `${name} cached none of the valid control packets`);
            }

            // Still alive, still answering: a fresh listener on C finds A's service.
            const c = await start(hostC);
            agents.push(c);
            await c.send({ cmd: "listen", ref: "l", type });
            const found = await c.waitFor(ofRef("l", "added"), 10_000, "the service after fuzzing");
            assertEquals([info(found).mdnsName, info(found).port], [String(instanceName), 40_004]);
            assertEquals(b.events.filter(ofRef("l", "removed")).length, 0, "B never lost it");
          } finally {
            await stop(...agents);
          }
        },
      );
    } finally {
      for (const agent of running) await agent.exit().catch(() => "");
      await Deno.remove(tmp, { recursive: true }).catch(() => undefined);
    }
  });
}
