/**
 * The demo's aggregator, a runtime for {@linkcode RuntimeManager}: it
 * discovers {@linkcode SensorSource}s over mDNS, connects to each over gRPC,
 * asks it for a caller id, synchronises its clock with the source's SNTP
 * server, subscribes to its IMU stream (smoothed to a steady 100 Hz) and its
 * depth stream, and sends what it rebuilds to the caller's data aggregator,
 * one caller per source, in local time.
 *
 * Register it with `role: "client"` (and the default `delivery:
 * "aggregator"`).
 *
 * @module
 */

import { DiscoveryHost, Mdns, ServiceConnector, type ServiceInfo } from "../discovery/mod.ts";
import { type CallerId, ClientIdFetcher, type GrpcChannel } from "../rpc/mod.ts";
import type { EndpointDataProcessor, Runtime, RuntimeContext } from "../runtime/mod.ts";
import { LinearInterpolationStrategy, TensorStreamSubscription } from "../tensor/mod.ts";
import { SENSOR_SERVICE_TYPE } from "./sensor_source.ts";

/** What the aggregator sends for each source: its state, IMU frames and depth frames. */
export type SensorData =
  | {
    readonly kind: "state";
    readonly name: string;
    readonly address: string;
    readonly port: number;
    readonly state: "connected" | "synced" | "streaming" | "lost";
    /** The source's clock minus the aggregator's, microseconds, once measured. */
    readonly offsetMicros: number | null;
    /** The caller id the source issued to this aggregator. */
    readonly issuedId: string | null;
  }
  | {
    readonly kind: "imu";
    /** ax, ay, az, gx, gy, gz. */
    readonly values: Float32Array;
  }
  | {
    readonly kind: "depth";
    /** Millimetres, 64×64 row-major. */
    readonly values: Int16Array;
  }
  | {
    readonly kind: "stats";
    /** The clock offset measured now, microseconds. */
    readonly offsetMicros: number;
    /** Updates received over both streams so far. */
    readonly updates: number;
    /** Resynchronisations (gaps) so far. */
    readonly resyncs: number;
  };

/** Smoothed IMU output: 100 Hz, rendered 60 ms behind the source's clock. */
const IMU_OUTPUT_MICROS = 10_000;
const IMU_RENDER_DELAY_MICROS = 60_000;

interface Follow {
  readonly abort: AbortController;
  readonly channel: GrpcChannel;
  processor?: EndpointDataProcessor<SensorData, unknown>;
  done: Promise<void>;
}

/**
 * Creates the aggregator. See the module documentation.
 *
 * @param context The runtime's context (no params).
 * @returns The runtime.
 */
export function SensorAggregator(context: RuntimeContext<SensorData>): Runtime {
  const follows = new Map<string, Follow>();
  let mdns: Mdns | undefined;
  let connector: ServiceConnector<GrpcChannel> | undefined;

  /** Follows one source until its channel fails or it goes away. */
  async function follow(info: ServiceInfo, callerId: CallerId, entry: Follow): Promise<void> {
    const { channel, abort } = entry;
    const signal = abort.signal;
    const address = channel.address;
    const timePort = Number(info.txt.time_port ?? NaN);
    const processor = context.dataHandler.registerCaller(callerId, {
      endpoint: address,
      port: info.port,
      ...(Number.isInteger(timePort) && timePort > 0 ? { timeSyncPort: timePort } : {}),
    });
    entry.processor = processor;
    const state = (
      state: "connected" | "synced" | "streaming" | "lost",
      offsetMicros: number | null,
      issuedId: string | null,
    ) =>
      processor.processData(
        { kind: "state", name: info.name, address, port: info.port, state, offsetMicros, issuedId },
        processor.clock.now(),
        { domain: "synchronized" },
      );
    // The handshake: the source hands this aggregator its caller id.
    const issued = await ClientIdFetcher.fromChannel(channel, { deadlineMs: 5_000 }).getId({
      signal,
    });
    if (issued === null) throw new Error(`${info.name} did not issue a caller id`);
    await state("connected", null, issued.toString());
    const offset = await processor.clockReady({ signal });
    await state("synced", offset, issued.toString());
    // idleTimeoutMs also bounds the wait for each stream's start: a source
    // that does not answer fails, and is retried.
    const imu = await TensorStreamSubscription.open<"float32">(channel, {
      callerId: issued,
      stream: "imu",
      signal,
      dataTimeoutMicros: 2_000_000,
      // The source sends keyframes every second: three seconds of silence is a dead link.
      idleTimeoutMs: 3_000,
      smoothing: {
        strategy: new LinearInterpolationStrategy(),
        outputIntervalMicros: IMU_OUTPUT_MICROS,
        renderDelayMicros: IMU_RENDER_DELAY_MICROS,
        align: true,
        clock: processor.clock,
      },
    });
    const depth = await TensorStreamSubscription.open<"int16">(channel, {
      callerId: issued,
      stream: "depth",
      signal,
      dataTimeoutMicros: 2_000_000,
      idleTimeoutMs: 3_000,
    });
    await state("streaming", offset, issued.toString());
    const stats = setInterval(() => {
      const updates = imu.counters.messages + depth.counters.messages;
      const resyncs = imu.counters.gaps + depth.counters.gaps;
      processor.clockReady({ signal }).then((offsetMicros) =>
        processor.processData(
          { kind: "stats", offsetMicros, updates, resyncs },
          processor.clock.now(),
          { domain: "synchronized" },
        )
      ).catch(() => {});
    }, 1_000);
    const pump = async (
      subscription: TensorStreamSubscription,
      kind: "imu" | "depth",
    ) => {
      for await (const frame of subscription.receiver) {
        await processor.processData(
          { kind, values: frame.values } as SensorData,
          frame.timestamp,
          { domain: "synchronized" },
        );
      }
    };
    try {
      await Promise.race([
        Promise.all([pump(imu, "imu"), pump(depth, "depth")]),
        imu.done,
        depth.done,
      ]);
    } finally {
      clearInterval(stats);
      await Promise.allSettled([imu.close(), depth.close()]);
    }
  }

  function drop(callerId: CallerId, info: ServiceInfo): void {
    const key = callerId.toString();
    const entry = follows.get(key);
    if (entry === undefined) return;
    follows.delete(key);
    entry.abort.abort();
    const processor = entry.processor;
    if (processor !== undefined && !processor.closed) {
      Promise.resolve(
        processor.processData(
          {
            kind: "state",
            name: info.name,
            address: entry.channel.address,
            port: info.port,
            state: "lost",
            offsetMicros: null,
            issuedId: null,
          },
          processor.clock.now(),
          { domain: "synchronized" },
        ),
      ).catch(() => {}).finally(() => processor.deregister());
    }
    void entry.done.finally(() => entry.channel.close());
  }

  return {
    async start() {
      mdns = await Mdns.open();
      const host = new DiscoveryHost({ serviceType: SENSOR_SERVICE_TYPE, mdns });
      connector = new ServiceConnector<GrpcChannel>(
        {
          onChannelConnected(info, callerId, channel) {
            const entry: Follow = {
              abort: new AbortController(),
              channel,
              done: Promise.resolve(),
            };
            follows.set(callerId.toString(), entry);
            entry.done = follow(info, callerId, entry).then(
              () => {
                // The streams ended: the source is going away or restarting.
                if (follows.get(callerId.toString()) === entry) {
                  connector?.markClientFailed(callerId);
                }
              },
              (error) => {
                if (entry.abort.signal.aborted) return;
                context.reportError(error);
                if (follows.get(callerId.toString()) === entry) {
                  connector?.markClientFailed(callerId);
                }
              },
            );
          },
          onChannelDisconnected(info, callerId) {
            drop(callerId, info);
          },
        },
        {
          connect: (addresses, port, signal) => context.connectChannel(addresses, port, { signal }),
        },
        host,
        { onError: () => {} },
      );
      await connector.start();
    },
    async stop() {
      await connector?.stop();
      for (const entry of follows.values()) entry.abort.abort();
      await Promise.allSettled([...follows.values()].map((entry) => entry.done));
      await mdns?.close();
    },
  };
}
