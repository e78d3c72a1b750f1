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
 * With `--shared`, every publisher and listener uses one {@linkcode Mdns}; otherwise each opens
 * its own. `t` is `performance.timeOrigin + performance.now()` in ms, comparable across hosts.
 * It refuses to run (exit 3) outside an isolated namespace, so its multicast stays inside.
 *
 * @module
 */

import { isIsolatedNetns } from "../netns/mod.ts";
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

const shared = Deno.args.includes("--shared") ? await Mdns.open() : undefined;
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
    default:
      emit({ event: "error", message: `unknown command ${JSON.stringify(command.cmd)}` });
      return true;
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
