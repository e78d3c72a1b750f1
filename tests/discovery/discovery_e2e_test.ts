/**
 * The discovery catalogue of `spec/net.md` §7.1, across simulated hosts: real mDNS over UDP
 * multicast between network namespaces joined by a bridge (see `tests/netns/mod.ts`). Nothing
 * reaches the machine's real interfaces.
 *
 * Host A publishes, host B listens, host C does either when a scenario needs a third party. Each
 * scenario uses a fresh random service type, so scenarios do not see each other's services.
 *
 * @module
 */

import { assert, assertEquals } from "../_assert.ts";
import { withHosts } from "../netns/mod.ts";
import { type Agent, type AgentEvent, startAgent } from "./_agents.ts";

function tag(): string {
  return crypto.randomUUID().slice(0, 8);
}

function isIp(text: unknown): boolean {
  return typeof text === "string" && (/^\d{1,3}(\.\d{1,3}){3}$/.test(text) || text.includes(":"));
}

interface Info {
  name: string;
  port: number;
  addresses: string[];
  mdnsName: string;
  txt: Record<string, string | null>;
  id?: string;
}

function info(event: AgentEvent): Info {
  return event.info as Info;
}

function addedFor(ref: string, startsWith: string) {
  return (e: AgentEvent) =>
    e.event === "added" && e.ref === ref && info(e).mdnsName.startsWith(startsWith);
}

Deno.test("discovery catalogue (spec §7.1) across simulated hosts", async (t) => {
  await withHosts(3, async ([hostA, hostB, hostC]) => {
    const agents: Agent[] = [];
    const start = async (host: typeof hostA, shared = false) => {
      const agent = await startAgent(host, { shared });
      agents.push(agent);
      return agent;
    };
    try {
      const a = await start(hostA, true);
      const b = await start(hostB, true);
      const c = await start(hostC, true);

      await t.step("1. register then discover: listener first, then publisher", async () => {
        const type = `_e2e-${tag()}._tcp`;
        const label = `TestInstance_${tag()}`;
        await b.send({ cmd: "listen", ref: "l1", type });
        await b.waitFor((e) => e.event === "listening" && e.ref === "l1", 5_000);
        await a.send({
          cmd: "publish",
          ref: "p1",
          port: 50_001,
          type,
          readableName: `Readable ${label}`,
          instanceName: label,
        });
        const added = await b.waitFor(addedFor("l1", label), 10_000, "service 1");
        assertEquals(info(added).name, `Readable ${label}`);
        assertEquals(info(added).port, 50_001);
        assert(info(added).addresses.length > 0 && info(added).addresses.every(isIp));
        assertEquals(info(added).addresses, [hostA.address], "only A's own address, no loopback");
        assert(typeof info(added).id === "string", "the TXT carries a caller id");
        assertEquals(b.events.filter((e) => e.ref === "l1" && e.event === "added").length, 1);
      });

      await t.step("2. concurrent publish, selective unpublish", async () => {
        const type = `_e2e-${tag()}._tcp`;
        await b.send({ cmd: "listen", ref: "l2", type });
        await b.waitFor((e) => e.event === "listening" && e.ref === "l2", 5_000);
        await Promise.all([
          a.send({
            cmd: "publish",
            ref: "p2a",
            port: 50_010,
            type,
            readableName: "Two A",
            instanceName: "two-a",
          }),
          a.send({
            cmd: "publish",
            ref: "p2b",
            port: 50_011,
            type,
            readableName: "Two B",
            instanceName: "two-b",
          }),
        ]);
        await b.waitFor(addedFor("l2", "two-a"), 15_000, "two-a");
        await b.waitFor(addedFor("l2", "two-b"), 15_000, "two-b");
        await a.send({ cmd: "unpublish", ref: "p2a" });
        const removed = await b.waitFor(
          (e) => e.event === "removed" && e.ref === "l2",
          10_000,
          "the removal of two-a",
        );
        assert(String(removed.name).startsWith("two-a"));
        const removedNames = b.events.filter((e) => e.ref === "l2" && e.event === "removed")
          .map((e) => e.name);
        assertEquals(removedNames, [removed.name], "two-b is still there");
      });

      await t.step("3. an update is reflected: a new instance on a new port", async () => {
        const type = `_e2e-${tag()}._tcp`;
        await b.send({ cmd: "listen", ref: "l3", type });
        await a.send({
          cmd: "publish",
          ref: "p3",
          port: 50_002,
          type,
          readableName: "v1",
          instanceName: "base",
        });
        await b.waitFor(addedFor("l3", "base"), 10_000, "v1");
        await a.send({ cmd: "unpublish", ref: "p3" });
        await a.send({
          cmd: "publish",
          ref: "p3v2",
          port: 50_003,
          type,
          readableName: "v2",
          instanceName: "base_v2",
        });
        const v2 = await b.waitFor(addedFor("l3", "base_v2"), 10_000, "v2");
        assertEquals([info(v2).name, info(v2).port], ["v2", 50_003]);
        assert(b.events.filter((e) => e.ref === "l3" && e.event === "added").length >= 2);
      });

      await t.step("4. unpublished: a new listener sees nothing", async () => {
        const type = `_e2e-${tag()}._tcp`;
        await b.send({ cmd: "listen", ref: "l4", type });
        await a.send({ cmd: "publish", ref: "p4", port: 50_004, type, instanceName: "gone" });
        await b.waitFor(addedFor("l4", "gone"), 10_000, "the service");
        await b.send({ cmd: "unlisten", ref: "l4" });
        await a.send({ cmd: "unpublish", ref: "p4" });
        await a.waitFor((e) => e.event === "unpublished" && e.ref === "p4", 5_000);
        await c.send({ cmd: "listen", ref: "l4c", type });
        // The pass condition is silence: nothing may be added within 3 s.
        const seen = await c.waitFor((e) => e.ref === "l4c" && e.event === "added", 3_000).then(
          (e) => e,
          () => undefined,
        );
        assertEquals(seen, undefined);
      });

      await t.step("5. many publishers, one listener", async () => {
        const type = `_e2e-${tag()}._tcp`;
        await b.send({ cmd: "listen", ref: "l5", type });
        await a.send({
          cmd: "publish",
          ref: "p5a",
          port: 50_005,
          type,
          readableName: "Five A",
          instanceName: "five-a",
        });
        await c.send({
          cmd: "publish",
          ref: "p5c",
          port: 50_006,
          type,
          readableName: "Five C",
          instanceName: "five-c",
        });
        const fiveA = await b.waitFor(addedFor("l5", "five-a"), 15_000, "five-a");
        const fiveC = await b.waitFor(addedFor("l5", "five-c"), 15_000, "five-c");
        assertEquals([info(fiveA).name, info(fiveA).port, info(fiveA).addresses], [
          "Five A",
          50_005,
          [hostA.address],
        ]);
        assertEquals([info(fiveC).name, info(fiveC).port, info(fiveC).addresses], [
          "Five C",
          50_006,
          [hostC.address],
        ]);
      });

      await t.step(
        "6. one publisher, many listeners started later (queries are answered)",
        async () => {
          const type = `_e2e-${tag()}._tcp`;
          await a.send({ cmd: "publish", ref: "p6", port: 50_007, type, instanceName: "six" });
          await a.waitFor((e) => e.event === "published" && e.ref === "p6", 10_000);
          await b.send({ cmd: "listen", ref: "l6b", type });
          await c.send({ cmd: "listen", ref: "l6c", type });
          await b.waitFor(addedFor("l6b", "six"), 10_000, "six on B");
          await c.waitFor(addedFor("l6c", "six"), 10_000, "six on C");
          assertEquals(b.events.filter((e) => e.ref === "l6b" && e.event === "added").length, 1);
          assertEquals(c.events.filter((e) => e.ref === "l6c" && e.event === "added").length, 1);
        },
      );

      await t.step("7. publisher after listener", async () => {
        const type = `_e2e-${tag()}._tcp`;
        await b.send({ cmd: "listen", ref: "l7", type });
        await b.waitFor((e) => e.event === "listening" && e.ref === "l7", 5_000);
        await a.send({
          cmd: "publish",
          ref: "p7",
          port: 50_008,
          type,
          readableName: "Seven",
          instanceName: "seven",
        });
        const seven = await b.waitFor(addedFor("l7", "seven"), 10_000, "seven");
        assertEquals([info(seven).name, info(seven).port], ["Seven", 50_008]);
        assert(info(seven).addresses.every(isIp));
      });
    } finally {
      const errors = await Promise.all(agents.map((agent) => agent.exit()));
      for (const [k, stderr] of errors.entries()) {
        assertEquals(stderr.trim(), "", `agent ${k} wrote to stderr`);
      }
    }
  });
});
