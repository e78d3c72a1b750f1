/**
 * ServiceConnector across two simulated hosts with real mDNS and gRPC: host A serves
 * `tsercom.IdService` and publishes it; host B discovers, connects and does the GetId
 * handshake. Runs inside network namespaces (see `tests/netns/mod.ts`).
 *
 * @module
 */

import { assert, assertEquals } from "../_assert.ts";
import { type SimHost, withHosts } from "../netns/mod.ts";
import { type AgentProcess, startAgent } from "../_agent_process.ts";
import { CallerId } from "../../rpc/caller_id.ts";

const AGENT = new URL("./_grpc_agent.ts", import.meta.url).pathname;

function start(host: SimHost, args: string[]): AgentProcess {
  return startAgent(host, [
    Deno.execPath(),
    "run",
    "-A",
    "--no-check",
    "--unstable-net",
    AGENT,
    ...args,
  ]);
}

Deno.test("ServiceConnector connects, handshakes, follows a restart and a removal", async (t) => {
  await withHosts(2, async ([hostA, hostB]) => {
    const type = `_sc-${crypto.randomUUID().slice(0, 8)}._tcp`;
    const id = CallerId.random().toString();
    const client = start(hostB, ["connect", "--type", type]);
    let server = start(hostA, ["serve", "--type", type, "--label", "svc", "--id", id]);
    try {
      await client.waitFor((e) => e.event === "listening", 10_000, "the connector");
      const serving = await server.waitFor((e) => e.event === "serving", 10_000, "the server");

      await t.step(
        "a discovered service is connected and handshaken, with its TXT id",
        async () => {
          const connected = await client.waitFor(
            (e) => e.event === "connected",
            10_000,
            "a channel",
          );
          assertEquals(connected.callerId, id);
          assertEquals(connected.target, `${hostA.address}:${serving.port}`);
          assert(CallerId.tryParse(String(connected.handshakeId)) !== null, "GetId answered");
        },
      );

      await t.step(
        "a server killed and restarted on a new port is reconnected within 5 s",
        async () => {
          const before = client.events.filter((e) => e.event === "connected").length;
          const killedAt = performance.timeOrigin + performance.now();
          server.kill(); // SIGKILL: no goodbye, no GOAWAY, the connection just dies
          server = start(hostA, ["serve", "--type", type, "--label", "svc", "--id", id]);
          const again = await server.waitFor(
            (e) => e.event === "serving",
            10_000,
            "the new server",
          );
          assert(again.port !== serving.port);
          const reconnected = await client.waitFor(
            (e) => e.event === "connected" && e.port === again.port,
            10_000,
            "the reconnection",
          );
          assertEquals(reconnected.callerId, id);
          assert(reconnected.t - killedAt < 5_000, `took ${reconnected.t - killedAt} ms`);
          assertEquals(
            client.events.filter((e) => e.event === "connected").length,
            before + 1,
            "exactly one new channel",
          );
        },
      );

      await t.step("removing the service notifies the client", async () => {
        await server.send({ cmd: "unpublish" });
        const gone = await client.waitFor(
          (e) => e.event === "disconnected" && e.reason === "removed",
          5_000,
          "the removal",
        );
        assertEquals(gone.callerId, id);
      });
    } finally {
      const errors = [await server.exit(), await client.exit()];
      if (Deno.env.get("SC_DEBUG")) console.log(JSON.stringify(client.events.map((e) => e.event)));
      for (const stderr of errors) assertEquals(stderr.trim(), "", "an agent wrote to stderr");
    }
  });
});
