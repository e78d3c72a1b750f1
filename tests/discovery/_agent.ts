/**
 * A discovery agent for end-to-end tests, run as a subprocess on a simulated host (a network
 * namespace of the harness). It reads one JSON command per line on stdin and prints one JSON
 * event per line on stdout:
 *
 * - `{"cmd":"publish","ref":R,"port":P,"type":T,"readableName"?:N,"instanceName"?:I,"id"?:U}`
 *   → `{"event":"published","ref":R,"instanceName":…,"t":ms}`
 * - `{"cmd":"unpublish","ref":R}` → `{"event":"unpublished","ref":R,"t":ms}`
 * - `{"cmd":"listen","ref":R,"type":T}` → `{"event":"listening","ref":R,"t":ms}`, then
 *   `{"event":"added"|"updated"|"removed","ref":R,"info":…,"changed"?:[…],"t":ms}`
 * - `{"cmd":"unlisten","ref":R}` → `{"event":"unlistened","ref":R}`
 * - `{"cmd":"counters"}` → `{"event":"counters","counters":…}`
 * - `{"cmd":"exit"}` → closes everything (goodbyes) and exits 0.
 *
 * Robustness commands (`discovery_robustness_test.ts`; they need `--shared`):
 *
 * - `{"cmd":"reopen","ttl"?:{host?,service?,other?}}` → closes the shared {@linkcode Mdns}
 *   (nothing may be published or listened to yet) and opens a new one with these record TTLs
 *   → `{"event":"reopened","hostName":…}`
 * - `{"cmd":"publish-many","ref":R,"type":T,"count":N,"port":P}` → publishes instances
 *   `R-0` … `R-(N-1)` at once → `{"event":"published-many","ref":R,"instanceNames":[…]}`; they
 *   are withdrawn when the shared {@linkcode Mdns} closes at exit, in one batch of goodbyes
 *   (closing them one by one would take 125 ms each)
 * - `{"cmd":"cached","ref":R,"names":[…]}` → the querier's cache entries owned by those names
 *   → `{"event":"cached","ref":R,"records":[{name,type,data,ttl,receivedAt,expiresAt}]}`
 *   (times in ms like `t`)
 * - `{"cmd":"engine-counters","ref":R}` →
 *   `{"event":"engine-counters","ref":R,"engine":…,"querier":…,"responder":…}`
 *
 * With `--shared`, every publisher and listener uses one {@linkcode Mdns}; otherwise each opens
 * its own. `t` is `performance.timeOrigin + performance.now()` in ms, comparable across hosts.
 * It refuses to run (exit 3) outside an isolated namespace, so its multicast stays inside.
 *
 * @module
 */

import { isIsolatedNetns } from "../netns/mod.ts";
import { engineOf } from "../../discovery/mdns.ts";
import {
  InstanceListener,
  InstancePublisher,
  Mdns,
  type ServiceInfo,
} from "../../discovery/mod.ts";

if (!(await isIsolatedNetns())) {
  console.error("_agent: refusing to use multicast outside an isolated network namespace");
  Deno.exit(3);
}

let shared = Deno.args.includes("--shared") ? await Mdns.open() : undefined;
const publishers = new Map<string, InstancePublisher>();
const listeners = new Map<string, InstanceListener>();

function now(): number {
  return performance.timeOrigin + performance.now();
}

function emit(event: Record<string, unknown>): void {
  console.log(JSON.stringify({ ...event, t: now() }));
}

function plain(info: ServiceInfo): Record<string, unknown> {
  return { ...info, addresses: [...info.addresses] };
}

async function handle(command: Record<string, unknown>): Promise<boolean> {
  const ref = String(command.ref ?? "");
  switch (command.cmd) {
    case "publish": {
      const publisher = new InstancePublisher(Number(command.port), String(command.type), {
        readableName: command.readableName as string | undefined,
        instanceName: command.instanceName as string | undefined,
        id: command.id as string | undefined,
        mdns: shared,
      });
      publishers.set(ref, publisher);
      await publisher.publish();
      emit({ event: "published", ref, instanceName: publisher.instanceName });
      return true;
    }
    case "unpublish": {
      await publishers.get(ref)?.close();
      publishers.delete(ref);
      emit({ event: "unpublished", ref });
      return true;
    }
    case "listen": {
      const listener = new InstanceListener(
        {
          onServiceAdded: (info) => emit({ event: "added", ref, info: plain(info) }),
          onServiceUpdated: (info, changed) =>
            emit({ event: "updated", ref, info: plain(info), changed }),
          onServiceRemoved: (name, info) =>
            emit({ event: "removed", ref, name, info: plain(info) }),
        },
        String(command.type),
        { mdns: shared },
      );
      listeners.set(ref, listener);
      await listener.start();
      emit({ event: "listening", ref });
      return true;
    }
    case "unlisten": {
      await listeners.get(ref)?.close();
      listeners.delete(ref);
      emit({ event: "unlistened", ref });
      return true;
    }
    case "counters": {
      emit({ event: "counters", counters: shared?.counters ?? null });
      return true;
    }
    case "reopen":
    case "publish-many":
    case "cached":
    case "engine-counters":
      await handleRobustness(command, ref);
      return true;
    default:
      emit({ event: "error", message: `unknown command ${JSON.stringify(command.cmd)}` });
      return true;
  }
}

/** The commands of `discovery_robustness_test.ts` (see the module comment). */
async function handleRobustness(command: Record<string, unknown>, ref: string): Promise<void> {
  if (shared === undefined) throw new Error(`${command.cmd} needs --shared`);
  const wall = (ms: number) => performance.timeOrigin + ms;
  switch (command.cmd) {
    case "reopen": {
      if (
        publishers.size > 0 || listeners.size > 0 || engineOf(shared).responder.services.length > 0
      ) {
        throw new Error("reopen needs an agent that published and listened to nothing yet");
      }
      await shared.close();
      shared = await Mdns.open({ ttl: command.ttl as { host?: number } | undefined });
      emit({ event: "reopened", ref, hostName: shared.hostName });
      return;
    }
    case "publish-many": {
      const count = Number(command.count);
      const batch = Array.from(
        { length: count },
        (_, i) =>
          new InstancePublisher(Number(command.port), String(command.type), {
            instanceName: `${ref}-${i}`,
            mdns: shared,
          }),
      );
      await Promise.all(batch.map((publisher) => publisher.publish()));
      emit({
        event: "published-many",
        ref,
        instanceNames: batch.map((publisher) => publisher.instanceName),
      });
      return;
    }
    case "cached": {
      const querier = engineOf(shared).querier;
      const records = (command.names as string[]).flatMap((name) =>
        querier.cached(name).map(({ record, receivedAt, expiresAt }) => ({
          name: record.name,
          type: record.type,
          data: record.type === "TXT" ? record.data.length : record.data,
          ttl: record.ttl,
          receivedAt: wall(receivedAt),
          expiresAt: wall(expiresAt),
        }))
      );
      emit({ event: "cached", ref, records });
      return;
    }
    case "engine-counters": {
      const engine = engineOf(shared);
      emit({
        event: "engine-counters",
        ref,
        engine: engine.counters,
        querier: engine.querier.counters,
        responder: engine.responder.counters,
      });
      return;
    }
  }
}

// Commands for one ref run in order; commands for different refs run concurrently.
const chains = new Map<string, Promise<unknown>>();
function run(command: Record<string, unknown>): void {
  const ref = String(command.ref ?? "");
  const next = (chains.get(ref) ?? Promise.resolve()).then(() => handle(command)).catch(
    (error) =>
      emit({
        event: "error",
        ref,
        message: error instanceof Error ? error.message : String(error),
      }),
  );
  chains.set(ref, next);
}

emit({ event: "ready" });
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let buffer = "";
let running = true;
for await (const chunk of lines) {
  buffer += chunk;
  let newline: number;
  while (running && (newline = buffer.indexOf("\n")) >= 0) {
    const line = buffer.slice(0, newline).trim();
    buffer = buffer.slice(newline + 1);
    if (line === "") continue;
    let command: Record<string, unknown>;
    try {
      command = JSON.parse(line);
    } catch {
      emit({ event: "error", message: `not JSON: ${line}` });
      continue;
    }
    if (command.cmd === "exit") running = false;
    else run(command);
  }
  if (!running) break;
}
await Promise.all(chains.values());
for (const publisher of publishers.values()) await publisher.close();
for (const listener of listeners.values()) await listener.close();
await shared?.close();
emit({ event: "exited" });
Deno.exit(0);
