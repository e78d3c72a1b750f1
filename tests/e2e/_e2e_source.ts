/**
 * The data source of the three-host end-to-end test, a runtime for
 * {@linkcode RuntimeManager} (register it with `role: "server"`,
 * `delivery: "stream"`), run in a Worker by `_source_agent.ts`.
 *
 * It serves, over gRPC on one port: caller ids (`tsercom.IdService/GetId`)
 * and one tensor stream, `"data"` (float32 × 64, sparse), whose snapshot at
 * source time `t` is {@linkcode expectedSnapshot}`(name, t)`, one every
 * 10 ms, each submitted a seeded {@linkcode jitterMicros} late (so often out
 * of order). It serves SNTP with a {@linkcode TimeSyncServer} of its own
 * whose clock is the system clock plus `offsetMicros`, the clock its
 * snapshots are stamped with too, and advertises both over mDNS (TXT
 * `time_port`).
 *
 * It emits {@linkcode SourceRecord}s: `serving` once, `sent` for the steps
 * submitted (with the wall time, ms, at which each was), `id` for each
 * caller id it issued.
 *
 * @module
 */

import { InstancePublisher, Mdns } from "../../discovery/mod.ts";
import {
  CallerId,
  getIdHandler,
  GrpcIdService,
  GrpcServicePublisher,
  type SynchronizedClock,
  SystemClock,
  TimeSyncServer,
} from "../../rpc/mod.ts";
import type { Runtime, RuntimeContext } from "../../runtime/mod.ts";
import { routeTensorStreams, TensorStreamServer } from "../../tensor/mod.ts";
import {
  expectedSnapshot,
  jitterMicros,
  LENGTH,
  nameSeed,
  STEP_MICROS,
  STREAM,
} from "./_e2e_signal.ts";

/** The parameters of {@linkcode E2eSource} (structured-clonable). */
export interface E2eSourceParams {
  /** The readable name it advertises (and the signal's seed). */
  name: string;
  /** Its stable caller id, advertised as TXT `id`. */
  id: string;
  /** The DNS-SD service type it advertises. */
  serviceType: string;
  /** Its gRPC port (0: any free one). */
  port: number;
  /** Its clock's offset from the system clock, microseconds. */
  offsetMicros: number;
  /** How many of the newest snapshots a keyframe carries. */
  keyframeDepth: number;
}

/** What the source emits. */
export type SourceRecord =
  | { kind: "serving"; port: number; timePort: number; instance: string }
  | { kind: "sent"; t: number[]; at: number[] }
  | { kind: "id"; id: string };

/**
 * Creates the source. See the module documentation.
 *
 * @param context The runtime's context; `params` are {@linkcode E2eSourceParams}.
 * @returns The runtime.
 */
export function E2eSource(context: RuntimeContext<SourceRecord>): Runtime {
  const params = context.params as E2eSourceParams;
  const system = new SystemClock();
  const clock: SynchronizedClock = {
    now: () => system.now() + params.offsetMicros,
    sync: (micros) => micros,
    desync: (micros) => micros,
  };
  const seed = nameSeed(params.name);
  const data = new TensorStreamServer(new Float32Array(LENGTH), {
    dtype: "float32",
    name: STREAM,
    clock,
    sparse: true,
    keyframeIntervalMs: 1_000,
    keyframeDepth: params.keyframeDepth,
  });
  const publisher = new GrpcServicePublisher({ addresses: "0.0.0.0", port: params.port });
  publisher.addService(GrpcIdService, {
    GetId: getIdHandler({
      onIdCreated: (id) => {
        Promise.resolve(context.emit({ kind: "id", id: id.toString() }, clock.now())).catch(
          context.reportError,
        );
      },
    }),
  });
  publisher.addService(TensorStreamServer.service, { Subscribe: routeTensorStreams([data]) });
  let timeServer: TimeSyncServer | undefined;
  let mdns: Mdns | undefined;
  let advert: InstancePublisher | undefined;
  let ticker: ReturnType<typeof setInterval> | undefined;
  /** Steps scheduled but not submitted yet: timestamp and due time (source clock). */
  const pending: { t: number; due: number }[] = [];
  let nextStep = 0;
  /** Submissions run one after the other, in due order. */
  let chain: Promise<void> = Promise.resolve();
  let stopped = false;

  function tick(): void {
    const now = clock.now();
    while (nextStep * STEP_MICROS <= now) {
      const t = nextStep * STEP_MICROS;
      pending.push({ t, due: t + jitterMicros(seed, nextStep) });
      nextStep++;
    }
    pending.sort((a, b) => a.due - b.due || a.t - b.t);
    let n = 0;
    while (n < pending.length && pending[n].due <= now) n++;
    if (n === 0) return;
    const due = pending.splice(0, n).map((p) => p.t);
    chain = chain.then(async () => {
      const sent: number[] = [];
      const at: number[] = [];
      for (const t of due) {
        if (stopped) break;
        await data.update(expectedSnapshot(params.name, t), t);
        sent.push(t);
        at.push(Date.now());
      }
      if (sent.length > 0) await context.emit({ kind: "sent", t: sent, at }, clock.now());
    }).catch(context.reportError);
  }

  return {
    async start() {
      timeServer = new TimeSyncServer({ hostname: "0.0.0.0", port: 0, clock });
      const { port } = await publisher.start();
      mdns = await Mdns.open();
      advert = new InstancePublisher(port, params.serviceType, {
        mdns,
        readableName: params.name,
        id: CallerId.parse(params.id),
        txt: { stream: STREAM, time_port: String(timeServer.port) },
      });
      await advert.publish();
      await context.emit(
        { kind: "serving", port, timePort: timeServer.port, instance: advert.instanceName ?? "" },
        clock.now(),
      );
      nextStep = Math.ceil(clock.now() / STEP_MICROS);
      ticker = setInterval(() => {
        try {
          tick();
        } catch (error) {
          context.reportError(error);
        }
      }, 2);
    },
    async stop() {
      clearInterval(ticker);
      stopped = true;
      await chain;
      // Goodbye packets first, so that aggregators drop this source at once.
      await advert?.close();
      await mdns?.close();
      data.close();
      await timeServer?.close();
      // Forced: a graceful GOAWAY can abort a still-connected Deno client (see README).
      await publisher.stop({ graceMs: 0 });
    },
  };
}
