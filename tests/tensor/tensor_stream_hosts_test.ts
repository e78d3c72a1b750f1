/**
 * A tensor stream across two simulated hosts (network namespaces joined by
 * a switch): 10,000 snapshots submitted in random order are rebuilt exactly
 * at every timestamp; a receiver killed mid-stream and started again
 * converges to the sender's newest state within one keyframe interval.
 *
 * @module
 */

import { assert, assertEquals } from "../_assert.ts";
import { type SimHost, withHosts } from "../netns/mod.ts";
import { type AgentEvent, type AgentProcess, startAgent } from "../_agent_process.ts";

const AGENT = new URL("./_stream_agent.ts", import.meta.url).pathname;
const KEYFRAME_MS = 1_000;

function start(host: SimHost, args: string[]): AgentProcess {
  return startAgent(host, [Deno.execPath(), "run", "-A", "--no-check", AGENT, ...args]);
}

Deno.test("a tensor stream across two hosts: exact under reordering, convergent after a restart", async (t) => {
  await withHosts(2, async ([hostA, hostB]) => {
    const common = ["--seed", "20261202", "--base", String(Date.now() * 1000)];
    const source = start(hostA, ["serve", ...common, "--keyframe-ms", String(KEYFRAME_MS)]);
    let receiver: ReturnType<typeof start> | undefined;
    try {
      const { port } = await source.next((e) => e.event === "serving", 15_000, "the server");
      const follow = ["follow", ...common, "--address", hostA.address, "--port", String(port)];
      receiver = start(hostB, follow);
      await receiver.next((e) => e.event === "subscribed", 15_000, "the subscription");

      await t.step("10,000 snapshots submitted in random order are rebuilt exactly", async () => {
        await source.send({ cmd: "play", phase: 1 });
        await source.next((e) => e.event === "played", 60_000, "phase 1");
        // The last messages may still be on their way: ask until nothing is missing. A
        // snapshot equal to the one before it sends no chunk (as in the original), so the
        // receiver has no snapshot of its own there: the agent counts those as "unchanged".
        let checked: AgentEvent | undefined;
        for (let i = 0; i < 50; i++) {
          await receiver!.send({ cmd: "check" });
          checked = await receiver!.next((e) => e.event === "checked", 10_000, "a check");
          if (checked.missing === 0 && checked.wrong === 0) break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        assertEquals([checked?.wrong, checked?.missing], [0, 0]);
        assert(Number(checked?.unchanged) < 100, `${checked?.unchanged} unchanged snapshots`);
      });

      await t.step(
        "a receiver killed mid-stream and restarted converges within one keyframe interval",
        async () => {
          await source.send({ cmd: "play", phase: 2 });
          await source.next((e) => e.event === "progress" && e.played === 500, 30_000, "500");
          receiver!.kill(); // SIGKILL: the stream just dies
          await receiver!.exit();
          receiver = start(hostB, follow);
          const subscribed = await receiver.next(
            (e) => e.event === "subscribed",
            15_000,
            "the new subscription",
          );
          const keyframe = await receiver.next((e) => e.event === "keyframe", 15_000, "a keyframe");
          assert(
            keyframe.t - subscribed.t <= KEYFRAME_MS,
            `the first keyframe came ${keyframe.t - subscribed.t} ms after subscribing`,
          );
          await source.next((e) => e.event === "played", 60_000, "phase 2");
          let checked: AgentEvent | undefined;
          for (let i = 0; i < 50; i++) {
            await receiver.send({ cmd: "newest", upTo: 2_000 });
            checked = await receiver.next((e) => e.event === "checked", 10_000, "a check");
            if (checked.missing === 0 && checked.wrong === 0) break;
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
          assertEquals([checked?.wrong, checked?.missing], [0, 0], "the sender's newest state");
        },
      );
    } finally {
      // The receiver first: its channel closes before the server stops.
      await receiver?.exit();
      await source.exit();
    }
  });
});
