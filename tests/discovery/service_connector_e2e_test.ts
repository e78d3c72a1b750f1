/**
 * ServiceConnector across two simulated hosts with real mDNS and gRPC: host A serves
 * `tsercom.IdService` and publishes it; host B discovers, connects and does the GetId
 * handshake. Runs inside network namespaces (see `tests/netns/mod.ts`).
 *
 * @module
 */

import { assert, assertEquals } from "../_assert.ts";
import { type SimHost, withHosts } from "../netns/mod.ts";
import { CallerId } from "../../rpc/caller_id.ts";

const AGENT = new URL("./_grpc_agent.ts", import.meta.url).pathname;

interface Event {
  event: string;
  t: number;
  [key: string]: unknown;
}

function start(host: SimHost, args: string[]) {
  const child = host.spawn(
    [Deno.execPath(), "run", "-A", "--no-check", "--unstable-net", AGENT, ...args],
    { stdin: "piped", stdout: "piped", stderr: "piped" },
  );
  const events: Event[] = [];
  let stderr = "";
  const writer = child.stdin.getWriter();
  const reading = (async () => {
    let buffer = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline);
        try {
          events.push(JSON.parse(line));
        } catch {
          events.push({ event: "garbage", line, t: 0 });
        }
        buffer = buffer.slice(newline + 1);
      }
    }
  })();
  const erring = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  return {
    events,
    send: (command: Record<string, unknown>) =>
      writer.write(new TextEncoder().encode(JSON.stringify(command) + "\n")),
    async waitFor(match: (e: Event) => boolean, timeoutMs: number, what: string): Promise<Event> {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        const found = events.find(match);
        if (found !== undefined) return found;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`no ${what} within ${timeoutMs} ms: ${JSON.stringify(events)} ${stderr}`);
    },
    kill(): void {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
    },
    async exit(): Promise<string> {
      try {
        await writer.write(new TextEncoder().encode(JSON.stringify({ cmd: "exit" }) + "\n"));
        await writer.close();
      } catch {
        // gone
      }
      const status = await child.status;
      await Promise.all([reading, erring]);
      return status.success
        ? stderr
        : `${stderr}\n(exit code ${status.code}, signal ${status.signal})`;
    },
  };
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
