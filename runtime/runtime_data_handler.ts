/**
 * What a runtime uses to talk to its callers (spec/runtime.md §3.3–3.4,
 * §6): {@linkcode RuntimeDataHandler} registers callers;
 * each registration gives an {@linkcode EndpointDataProcessor} that sends
 * data to the caller's aggregator and yields the caller's events, with
 * timestamps converted between the caller's clock and the synchronised
 * (server) time domain.
 *
 * @module
 */

import type { CallerId } from "../rpc/caller_id.ts";
import type { SynchronizedClock } from "../rpc/synchronized_clock.ts";
import type { RuntimeRole } from "./runtime_config.ts";

export type { CallerId, RuntimeRole, SynchronizedClock };

/**
 * Where a caller is: an endpoint and port (and, optionally, the port of the
 * caller's own time server), or the peer string of a gRPC call
 * (`"ipv4:10.0.0.5:50000"`, `"ipv6:[::1]:50000"`).
 *
 * @example A caller that serves time on a port of its own
 * ```ts
 * import type { CallerAddress } from "@tsercom/tsercom/runtime";
 *
 * // Several data sources on one host, each serving SNTP on its own port
 * // (say, one it advertised in an mDNS TXT record): registered with
 * // `context.dataHandler.registerCaller(callerId, address)`, each caller's
 * // clock follows its own time server, even with `timeSyncPort: null`.
 * const address: CallerAddress = { endpoint: "10.0.0.5", port: 50051, timeSyncPort: 12345 };
 * ```
 */
export type CallerAddress = {
  /** The caller's address. */
  endpoint: string;
  /** The caller's port, 0..65535. */
  port: number;
  /**
   * The UDP port of this caller's time server, when it is not the runtime's
   * configured `timeSyncPort` (e.g. one the caller advertised): an integer
   * in 1..65535. It makes a client runtime synchronise this caller's clock
   * (at `endpoint`, this port) even when the configured `timeSyncPort` is
   * null. Ignored by server runtimes, whose callers' clocks read local time.
   *
   * @default {undefined} (the runtime's configured `timeSyncPort`)
   */
  timeSyncPort?: number;
} | {
  /** The peer string of a gRPC call. */
  peer: string;
};

/**
 * One event as a runtime sees it.
 *
 * @typeParam E The event payload.
 */
export interface RuntimeEvent<E> {
  /** The event, as given to `RuntimeHandle.onEvent` (structured-cloned for a Worker). */
  readonly value: E;
  /** The caller it was addressed to; `undefined` for a broadcast. */
  readonly callerId: CallerId | undefined;
  /**
   * When it happened, in synchronised time (microseconds since the Unix
   * epoch): the caller's timestamp converted through this caller's clock.
   */
  readonly timestamp: number;
}

/** Options for {@linkcode EndpointDataProcessor.processData}. */
export interface ProcessDataOptions {
  /**
   * The time domain of the timestamp: `"local"` (this machine's clock, the
   * default) is stored as it is; `"synchronized"` (the server's timeline)
   * is converted back to local time through the caller's clock first.
   *
   * @default {"local"}
   */
  domain?: "local" | "synchronized";
}

/** Options for {@linkcode EndpointDataProcessor.events}. */
export interface ProcessorEventsOptions {
  /**
   * Stops the iteration (it then throws the signal's reason).
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * The runtime's link to one registered caller.
 *
 * @typeParam D The data the runtime sends.
 * @typeParam E The events it receives.
 */
export interface EndpointDataProcessor<D, E> extends AsyncIterable<RuntimeEvent<E>[]> {
  /** The caller. */
  readonly callerId: CallerId;
  /**
   * Where the caller is, as registered (`timeSyncPort` only when the caller
   * was registered with one).
   */
  readonly address: {
    readonly endpoint: string;
    readonly port: number;
    readonly timeSyncPort?: number;
  };
  /**
   * The caller's clock: a client runtime's is synchronised with the
   * caller's time server (offset 0 until the first estimate); a server
   * runtime's reads local time.
   */
  readonly clock: SynchronizedClock;
  /** Whether the caller was deregistered (or the runtime stopped). */
  readonly closed: boolean;
  /**
   * Sends one data item to the caller's aggregator, stamped `timestamp`.
   * Flow-controlled like `RuntimeContext.emit`: under the `"block"` data
   * policy it may return a promise to await.
   *
   * @param value The data (typed-array buffers are moved, not copied).
   * @param timestamp Microseconds since the Unix epoch, in `options.domain`.
   * @param options The time domain of `timestamp`.
   * @returns Nothing, or a promise when the item waits for credit.
   * @throws {TypeError} When the timestamp is not a safe integer, or the
   * processor is closed.
   */
  processData(value: D, timestamp: number, options?: ProcessDataOptions): void | Promise<void>;
  /**
   * Converts a synchronised timestamp to local time (the caller's clock).
   *
   * @param synchronizedMicros Synchronised microseconds since the Unix epoch.
   * @returns Local microseconds.
   */
  desynchronize(synchronizedMicros: number): number;
  /**
   * Resolves once the caller's clock has its first offset estimate, from
   * the start burst of SNTP queries (about 0.2 s; at once without network
   * time sync).
   *
   * @param options `signal` to give up waiting.
   * @returns A promise of the offset, in microseconds.
   */
  clockReady(options?: { signal?: AbortSignal }): Promise<number>;
  /**
   * The caller's events, in batches (everything queued when the runtime
   * asks, at most one batch per `minEventIntervalMs`), broadcasts included;
   * ends once the caller is deregistered or the runtime stops, after the
   * queued events. One reader at a time.
   *
   * @param options A signal to stop reading.
   * @returns The batches.
   */
  events(options?: ProcessorEventsOptions): AsyncIterable<RuntimeEvent<E>[]>;
  /**
   * Deregisters the caller ({@linkcode RuntimeDataHandler.unregisterCaller}).
   *
   * @returns Whether it was registered.
   */
  deregister(): boolean;
}

/** Counts of a runtime's event routing. */
export interface RuntimeEventStats {
  /** Events that reached the runtime. */
  readonly received: number;
  /** Events handed to the runtime (a broadcast counts once per caller). */
  readonly delivered: number;
  /** Dropped by a full per-caller queue (lossy `eventOverflow`). */
  readonly droppedOverflow: number;
  /** Broadcasts that arrived while no caller was registered. */
  readonly droppedNoCaller: number;
  /** Events for an unregistered caller, dropped when full or past `unknownCallerEventTtlMs`. */
  readonly droppedUnknownCaller: number;
  /** Events for unregistered callers waiting now. */
  readonly pendingUnknownCaller: number;
}

/**
 * Registers the callers of a runtime (`context.dataHandler`).
 *
 * A client runtime's caller clocks are synchronised with each caller's time
 * server at the caller's endpoint: at the caller's own `timeSyncPort` when it
 * was registered with one, else at the configured `timeSyncPort` (with
 * neither, the clock keeps offset 0). One SNTP client per endpoint and time
 * port is shared by the callers there, and closed with the last of them. A
 * server runtime's clock is local time, and with `timeSyncPort` it serves
 * time.
 *
 * Fixes of the original: events for a caller that registers a moment later
 * are kept for it (bounded, with a time limit) instead of being dropped;
 * registering an id again reuses its queue; a server runtime can deregister
 * callers; queues close when the runtime stops; the main event source is
 * not exposed to the runtime.
 *
 * @typeParam D The data the runtime sends.
 * @typeParam E The events it receives.
 */
export interface RuntimeDataHandler<D, E> {
  /** Client or server. */
  readonly role: RuntimeRole;
  /** The registered callers. */
  readonly callers: CallerId[];
  /** The event counters. */
  readonly stats: RuntimeEventStats;
  /**
   * Registers a caller at an address. Registering the same id again returns
   * the same processor, moved to the new address (or time port) if it
   * changed.
   *
   * @param callerId The caller.
   * @param address Where it is.
   * @returns Its processor.
   * @throws {CallerRegistrationError} When another caller holds the address.
   * @throws {TypeError} When an argument is malformed, or the runtime stopped.
   */
  registerCaller(callerId: CallerId, address: CallerAddress): EndpointDataProcessor<D, E>;
  /**
   * The caller registered at an address.
   *
   * @param endpoint The endpoint.
   * @param port The port.
   * @returns The caller, or `undefined`.
   */
  checkForCallerId(endpoint: string, port: number): CallerId | undefined;
  /**
   * Removes a caller: its event iteration ends after the queued events, its
   * processor refuses data, its clock is released.
   *
   * @param callerId The caller.
   * @returns Whether it was registered.
   */
  unregisterCaller(callerId: CallerId): boolean;
}

/** Another caller is registered at the address. */
export class CallerRegistrationError extends Error {
  /** The address. */
  readonly address: { readonly endpoint: string; readonly port: number };
  /** The caller that holds it. */
  readonly holder: CallerId;

  /**
   * Creates the error.
   *
   * @param callerId The caller that wanted the address.
   * @param address The address.
   * @param holder The caller that holds it.
   */
  constructor(
    callerId: CallerId,
    address: { endpoint: string; port: number },
    holder: CallerId,
  ) {
    super(
      `Cannot register caller ${callerId} at ${address.endpoint}:${address.port} as the address must be free: caller ${holder} holds it`,
    );
    this.name = "CallerRegistrationError";
    this.address = { endpoint: address.endpoint, port: address.port };
    this.holder = holder;
  }
}
