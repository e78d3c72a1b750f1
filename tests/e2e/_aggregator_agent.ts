/**
 * The aggregator agent of the three-host end-to-end test, run on a
 * simulated host: a {@linkcode RuntimeManager} running `_e2e_aggregator.ts`
 * in a Worker. Every item the runtime sends is seen through the manager's
 * `onData`; every rebuilt frame is checked against
 * {@linkcode expectedSnapshot} (exact float32 bits).
 *
 * `--type T --idle-ms I`
 *
 * When the manager's watcher reports that the Worker crashed
 * (`WorkerCrashedError`), the agent reports every source it had as lost,
 * and registers and starts a new aggregator runtime (a new manager, as a
 * started manager takes no registrations).
 *
 * Events on stdout, one JSON line each, with `t` (wall-clock ms):
 * `started` (`gen`: the runtime's generation, from 1), `state` (a source's
 * state: `source`, `state`, `offsetMicros`, `port`, `timePort`, `issuedId`,
 * `reason`, `local`: the item's local timestamp, µs), `frames` (every
 * ~100 ms per source: `ts`, the source timestamps, µs; `local`, the local
 * timestamps, µs; `at`, the arrival wall times, ms), `clock` (a source's
 * current offset estimate, twice a second), `mismatch` (the first
 * 20 frames that differ from the expected snapshot), `crashed`, `error`,
 * `report` (`mismatches` and `frames` per source), `stopped`.
 *
 * Commands on stdin: `{"cmd":"crash"}` (the runtime closes its own Worker),
 * `{"cmd":"report"}`, `{"cmd":"exit"}`. Refuses to run outside an isolated
 * network namespace (exit 3).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { isIsolatedNetns } from "../netns/mod.ts";
import { type RemoteDataItem, type RuntimeHandle, RuntimeManager } from "../../runtime/mod.ts";
import type { AggregatorRecord, E2eAggregatorParams } from "./_e2e_aggregator.ts";
import { expectedSnapshot, firstDifference } from "./_e2e_signal.ts";
import { commands, emit } from "../_agent_io.ts";

if (!(await isIsolatedNetns())) {
  console.error(
    "_aggregator_agent: refusing to use multicast outside an isolated network namespace",
  );
  Deno.exit(3);
}

const { values } = parseArgs({
  args: Deno.args,
  options: { type: { type: "string" }, "idle-ms": { type: "string", default: "1500" } },
});
const params: E2eAggregatorParams = {
  serviceType: values.type!,
  idleMs: Number(values["idle-ms"]),
};

/** Frames not printed yet, per source. */
const pending = new Map<string, { ts: number[]; local: number[]; at: number[] }>();
const frames = new Map<string, number>();
const mismatches = new Map<string, number>();
/** The last state of each source, per generation of the runtime. */
const states = new Map<string, { gen: number; state: string }>();
let reportedMismatches = 0;

function flush(): void {
  for (const [source, batch] of pending) {
    if (batch.ts.length > 0) emit({ event: "frames", source, ...batch });
  }
  pending.clear();
}

function onItem(item: RemoteDataItem<unknown>, gen: number): void {
  const record = item.value as AggregatorRecord;
  if (record.kind === "state") {
    flush(); // the frames that came before it are printed before it
    states.set(record.source, { gen, state: record.state });
    emit({
      event: "state",
      gen,
      source: record.source,
      state: record.state,
      offsetMicros: record.offsetMicros,
      address: record.address,
      port: record.port,
      timePort: record.timePort,
      issuedId: record.issuedId,
      reason: record.reason,
      callerId: item.callerId.toString(),
      local: item.timestamp,
    });
    return;
  }
  if (record.kind === "clock") {
    emit({ event: "clock", gen, source: record.source, offsetMicros: record.offsetMicros });
    return;
  }
  const { source, t } = record;
  let index: number;
  try {
    index = firstDifference(record.values, expectedSnapshot(source, t));
  } catch {
    index = 0; // not a step timestamp at all
  }
  frames.set(source, (frames.get(source) ?? 0) + 1);
  if (index >= 0) {
    mismatches.set(source, (mismatches.get(source) ?? 0) + 1);
    if (reportedMismatches++ < 20) {
      emit({
        event: "mismatch",
        source,
        ts: t,
        index,
        got: Array.from(record.values),
        want: Array.from(expectedSnapshot(source, t - (t % 10_000))),
      });
    }
  }
  let batch = pending.get(source);
  if (batch === undefined) pending.set(source, batch = { ts: [], local: [], at: [] });
  batch.ts.push(t);
  batch.local.push(item.timestamp);
  batch.at.push(Date.now());
}

let generation = 0;
let manager: RuntimeManager | undefined;
let handle: RuntimeHandle | undefined;
let exiting = false;

/** Registers and starts a new aggregator runtime, in a new manager. */
function launch(): void {
  const gen = ++generation;
  const next = new RuntimeManager();
  let crashed = false;
  next.watcher.addListener(({ error, source }) => {
    const name = error instanceof Error ? error.name : "unknown";
    emit({
      event: "error",
      gen,
      name,
      message: error instanceof Error ? error.message : String(error),
      source,
    });
    if (name !== "WorkerCrashedError" || crashed || exiting || gen !== generation) return;
    crashed = true;
    flush();
    emit({ event: "crashed", gen });
    // The dead runtime cannot say it lost its sources: say it for it.
    for (const [source, last] of states) {
      if (last.gen !== gen || last.state === "lost") continue;
      states.set(source, { gen, state: "lost" });
      emit({
        event: "state",
        gen,
        source,
        state: "lost",
        offsetMicros: null,
        reason: `${name}: the aggregator's Worker crashed`,
        synthetic: true,
      });
    }
    next.shutdown({ deadlineMs: 1_000 }).catch(() => {});
    launch();
  });
  handle = next.register(
    { module: import.meta.resolve("./_e2e_aggregator.ts"), export: "E2eAggregator", params },
    { role: "client", dataTimeoutMicros: 10_000_000, dataCapacity: 4_096 },
    { onData: (item) => onItem(item, gen) },
  );
  manager = next;
  next.start().then(
    () => emit({ event: "started", gen }),
    (error) => emit({ event: "error", gen, name: "start", message: String(error) }),
  );
}

launch();
const flusher = setInterval(flush, 100);

for await (const command of commands()) {
  if (command.cmd === "crash") {
    await handle!.onEvent({ cmd: "crash" }).catch((error) =>
      emit({ event: "error", name: "crash", message: String(error) })
    );
  } else if (command.cmd === "report") {
    flush();
    emit({
      event: "report",
      frames: Object.fromEntries(frames),
      mismatches: Object.fromEntries(mismatches),
    });
  } else if (command.cmd === "exit") {
    break;
  }
}
exiting = true;
// The aggregator first: its channels close before the sources' servers stop.
await handle!.stop().catch(() => {});
await manager!.shutdown({ deadlineMs: 3_000 });
clearInterval(flusher);
flush();
emit({ event: "stopped" });
Deno.exit(0);
