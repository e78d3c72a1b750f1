/**
 * A data-source agent of the three-host end-to-end test, run on a simulated
 * host: a {@linkcode RuntimeManager} running `_e2e_source.ts` in a Worker.
 *
 * `--name N --id U --type T --port P --offset-ms O --keyframe-depth K`
 *
 * Events on stdout, one JSON line each, with `t` (wall-clock ms):
 * `serving` (`port`, `timePort`), `sent` (every ~100 ms: the timestamps
 * submitted, source clock µs, and the wall time each was submitted at, ms),
 * `id` (each caller id issued), `error` (what the watcher heard), `stopped`
 * (`sent`: the total). Commands on stdin: `{"cmd":"stop"}` stops the source
 * (its last `sent` comes before `stopped`); `{"cmd":"exit"}` stops and exits.
 * Refuses to run outside an isolated network namespace (exit 3).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { isIsolatedNetns } from "../netns/mod.ts";
import { RuntimeManager } from "../../runtime/mod.ts";
import type { E2eSourceParams, SourceRecord } from "./_e2e_source.ts";
import { commands, emit } from "../_agent_io.ts";

if (!(await isIsolatedNetns())) {
  console.error("_source_agent: refusing to use multicast outside an isolated network namespace");
  Deno.exit(3);
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    name: { type: "string" },
    id: { type: "string" },
    type: { type: "string" },
    port: { type: "string", default: "0" },
    "offset-ms": { type: "string", default: "0" },
    "keyframe-depth": { type: "string", default: "8" },
  },
});

const params: E2eSourceParams = {
  name: values.name!,
  id: values.id!,
  serviceType: values.type!,
  port: Number(values.port),
  offsetMicros: Math.round(Number(values["offset-ms"]) * 1_000),
  keyframeDepth: Number(values["keyframe-depth"]),
};
const manager = new RuntimeManager();
manager.watcher.addListener(({ error, source }) => {
  emit({
    event: "error",
    name: error instanceof Error ? error.name : "unknown",
    message: error instanceof Error ? error.message : String(error),
    source,
  });
});
const handle = manager.register(
  { module: import.meta.resolve("./_e2e_source.ts"), export: "E2eSource", params },
  { role: "server", delivery: "stream" },
);

let sentT: number[] = [];
let sentAt: number[] = [];
let total = 0;
function flush(): void {
  if (sentT.length === 0) return;
  emit({ event: "sent", ts: sentT, at: sentAt });
  sentT = [];
  sentAt = [];
}

const reading = (async () => {
  for await (const item of handle.data()) {
    const record = item.value as SourceRecord;
    if (record.kind === "serving") {
      emit({
        event: "serving",
        port: record.port,
        timePort: record.timePort,
        instance: record.instance,
      });
    } else if (record.kind === "sent") {
      sentT.push(...record.t);
      sentAt.push(...record.at);
      total += record.t.length;
    } else if (record.kind === "id") {
      emit({ event: "id", id: record.id });
    }
  }
})().catch((error) => emit({ event: "error", name: "data", message: String(error) }));

await manager.start();
const flusher = setInterval(flush, 100);

let stopping: Promise<void> | undefined;
function stop(): Promise<void> {
  return stopping ??= (async () => {
    await handle.stop().catch(() => {});
    await reading;
    clearInterval(flusher);
    flush();
    emit({ event: "stopped", sent: total });
  })();
}

for await (const command of commands()) {
  if (command.cmd === "stop") await stop();
  else if (command.cmd === "exit") break;
}
await stop();
await manager.shutdown({ deadlineMs: 3_000 });
Deno.exit(0);
