/**
 * The aggregator of the three-host end-to-end test, a runtime for
 * {@linkcode RuntimeManager} (register it with `role: "client"` and the
 * default `delivery: "aggregator"`), run in a Worker by
 * `_aggregator_agent.ts`. It follows the demo's aggregator
 * (`examples/sensor_aggregator.ts`):
 *
 * discovers `_e2e_source.ts` sources over mDNS ({@linkcode DiscoveryHost}),
 * connects to each ({@linkcode ServiceConnector}, one channel per caller
 * id), gets a caller id from it (`GetId`), registers the source as a caller
 * with the source's own time port (TXT `time_port`), waits for the clock
 * offset, subscribes to the `"data"` stream and hands every rebuilt frame to
 * the caller's processor, stamped with the source's timestamp in the
 * `"synchronized"` domain (so that it lands in local time).
 *
 * A stream that ends, fails, or carries no message for `idleMs` (the
 * subscription's `idleTimeoutMs`: the source sends keyframes every second,
 * so silence means the link is gone) marks the source failed: the connector connects again at once, and retries while
 * the instance is known.
 *
 * The event `{ cmd: "crash" }` (broadcast with `RuntimeHandle.onEvent`)
 * makes the runtime close its own Worker (`self.close()`), which the
 * manager's watcher reports as a `WorkerCrashedError`.
 *
 * @module
 */

import { DiscoveryHost, Mdns, ServiceConnector, type ServiceInfo } from "../../discovery/mod.ts";
import { type CallerId, ClientIdFetcher, type GrpcChannel } from "../../rpc/mod.ts";
import type { EndpointDataProcessor, Runtime, RuntimeContext } from "../../runtime/mod.ts";
import { TensorStreamSubscription } from "../../tensor/mod.ts";
import { STREAM } from "./_e2e_signal.ts";

/** The parameters of {@linkcode E2eAggregator} (structured-clonable). */
export interface E2eAggregatorParams {
  /** The DNS-SD service type of the sources. */
  serviceType: string;
  /** How long a stream may carry no message before the source is marked failed, ms. */
  idleMs: number;
}

/** The states a source goes through, as the aggregator sees it. */
export type SourceState = "connected" | "synced" | "streaming" | "lost";

/** What the aggregator sends for each source (its caller). */
export type AggregatorRecord =
  | {
    readonly kind: "state";
    readonly source: string;
    readonly state: SourceState;
    readonly address: string;
    readonly port: number;
    readonly timePort: number | null;
    /** The source's clock minus the aggregator's, microseconds, once measured. */
    readonly offsetMicros: number | null;
    /** The caller id the source issued to this aggregator. */
    readonly issuedId: string | null;
    /** Why the source was lost (the connector's reason, or the stream's failure). */
    readonly reason: string | null;
  }
  | {
    readonly kind: "clock";
    readonly source: string;
    /** The current estimate of the source's clock minus the aggregator's, microseconds. */
    readonly offsetMicros: number;
  }
  | {
    readonly kind: "frame";
    readonly source: string;
    /** The snapshot's timestamp in the source's clock, microseconds. */
    readonly t: number;
    readonly values: Float32Array;
  };

interface Follow {
  readonly abort: AbortController;
  readonly channel: GrpcChannel;
  processor?: EndpointDataProcessor<AggregatorRecord, unknown>;
  timePort: number | null;
  failure: string | null;
  done: Promise<void>;
}

/**
 * Creates the aggregator. See the module documentation.
 *
 * @param context The runtime's context; `params` are {@linkcode E2eAggregatorParams}.
 * @returns The runtime.
 */
export function E2eAggregator(context: RuntimeContext<AggregatorRecord>): Runtime {
  const params = context.params as E2eAggregatorParams;
  const follows = new Map<string, Follow>();
  let mdns: Mdns | undefined;
  let connector: ServiceConnector<GrpcChannel> | undefined;

  /** Reads the caller's events: `{ cmd: "crash" }` closes this Worker. */
  async function readEvents(
    processor: EndpointDataProcessor<AggregatorRecord, unknown>,
    signal: AbortSignal,
  ): Promise<void> {
    try {
      for await (const batch of processor.events({ signal })) {
        for (const event of batch) {
          if ((event.value as { cmd?: unknown } | null)?.cmd === "crash") self.close();
        }
      }
    } catch {
      // Aborted, or the caller was deregistered.
    }
  }

  /** Follows one source until its stream ends, fails or goes silent. */
  async function follow(info: ServiceInfo, callerId: CallerId, entry: Follow): Promise<void> {
    const { channel, abort } = entry;
    const signal = abort.signal;
    const address = channel.address;
    const timePort = Number(info.txt.time_port ?? NaN);
    entry.timePort = Number.isInteger(timePort) && timePort > 0 ? timePort : null;
    const processor = context.dataHandler.registerCaller(callerId, {
      endpoint: address,
      port: info.port,
      ...(entry.timePort === null ? {} : { timeSyncPort: entry.timePort }),
    });
    entry.processor = processor;
    void readEvents(processor, signal);
    const state = (state: SourceState, offsetMicros: number | null, issuedId: string | null) =>
      processor.processData(
        {
          kind: "state",
          source: info.name,
          state,
          address,
          port: info.port,
          timePort: entry.timePort,
          offsetMicros,
          issuedId,
          reason: null,
        },
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
    // idleTimeoutMs bounds the wait for the initializer too: a source that
    // does not answer fails, and is retried.
    const subscription = await TensorStreamSubscription.open<"float32">(channel, {
      callerId: issued,
      stream: STREAM,
      signal,
      capacity: 4_096,
      idleTimeoutMs: params.idleMs,
    });
    await state("streaming", offset, issued.toString());
    // The offset estimate improves after the first sample: report it twice a second.
    const clockReports = setInterval(() => {
      processor.clockReady({ signal }).then((offsetMicros) =>
        processor.processData(
          { kind: "clock", source: info.name, offsetMicros },
          processor.clock.now(),
          { domain: "synchronized" },
        )
      ).catch(() => {});
    }, 500);
    const pump = async () => {
      for await (const frame of subscription.receiver) {
        await processor.processData(
          { kind: "frame", source: info.name, t: frame.timestamp, values: frame.values },
          frame.timestamp,
          { domain: "synchronized" },
        );
      }
    };
    const pumping = pump();
    pumping.catch(() => {}); // once the race is over, a late failure is nobody's business
    try {
      await Promise.race([pumping, subscription.done]);
    } catch (error) {
      entry.failure = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw error;
    } finally {
      clearInterval(clockReports);
      await subscription.close();
    }
  }

  /** The connector let go of a source: report it lost and deregister it. */
  function drop(callerId: CallerId, info: ServiceInfo, reason: string): void {
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
            source: info.name,
            state: "lost",
            address: entry.channel.address,
            port: info.port,
            timePort: entry.timePort,
            offsetMicros: null,
            issuedId: null,
            reason: entry.failure === null ? reason : `${reason} (${entry.failure})`,
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
      const host = new DiscoveryHost({ serviceType: params.serviceType, mdns });
      connector = new ServiceConnector<GrpcChannel>(
        {
          onChannelConnected(info, callerId, channel) {
            const entry: Follow = {
              abort: new AbortController(),
              channel,
              timePort: null,
              failure: null,
              done: Promise.resolve(),
            };
            follows.set(callerId.toString(), entry);
            entry.done = follow(info, callerId, entry).then(
              () => {
                // The stream ended: the source is going away or restarting.
                if (follows.get(callerId.toString()) === entry) {
                  entry.failure ??= "the stream ended";
                  connector?.markClientFailed(callerId);
                }
              },
              (error) => {
                if (entry.abort.signal.aborted) return;
                entry.failure ??= error instanceof Error
                  ? `${error.name}: ${error.message}`
                  : String(error);
                if (follows.get(callerId.toString()) === entry) {
                  connector?.markClientFailed(callerId);
                }
              },
            );
          },
          onChannelDisconnected(info, callerId, reason) {
            drop(callerId, info, reason);
          },
        },
        {
          connect: (addresses, port, signal) =>
            context.connectChannel(addresses, port, { signal, attemptTimeoutMs: 2_000 }),
        },
        host,
        { onError: () => {}, initialRetryDelayMs: 200, maxRetryDelayMs: 1_000 },
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
