/**
 * The user-facing model of a runtime: what an initializer creates, what it
 * gets to emit data with, and how a parent names an initializer so that a
 * Worker can load it (DESIGN.md, Decision 8; spec/runtime.md §16.1–16.2).
 *
 * @module
 */

import type { ConnectChannelOptions } from "../rpc/channel_factory.ts";
import type { GrpcChannel } from "../rpc/grpc_channel.ts";
import type { RuntimeDataHandler } from "./runtime_data_handler.ts";
import type { RuntimeRole } from "./runtime_config.ts";

export type { ConnectChannelOptions, GrpcChannel, RuntimeDataHandler, RuntimeRole };

/**
 * A runtime: started once, stopped once. Both may be async; a rejection of
 * `start` fails the start, a rejection of `stop` fails the stop.
 *
 * @example
 * ```ts
 * import type { Runtime, RuntimeInitializer } from "./runtime.ts";
 *
 * export const Ticker: RuntimeInitializer<number> = (context) => {
 *   let timer: ReturnType<typeof setInterval> | undefined;
 *   const runtime: Runtime = {
 *     start() {
 *       timer = setInterval(() => context.emit(1, Date.now() * 1000), 100);
 *     },
 *     stop() {
 *       clearInterval(timer);
 *     },
 *   };
 *   return runtime;
 * };
 * ```
 */
export interface Runtime {
  /** Starts producing data. */
  start(): void | Promise<void>;
  /**
   * Stops: when it settles, the runtime emits nothing more.
   *
   * @param reason Why it is stopped, if the caller said.
   */
  stop(reason?: unknown): void | Promise<void>;
}

/**
 * What a runtime gets from its host, the same in a Worker and in-process.
 *
 * @typeParam D The data the runtime emits.
 * @typeParam E The events it receives.
 */
export interface RuntimeContext<D, E = unknown> {
  /**
   * Sends one data item to the parent. Items are batched and flow-controlled
   * with credits: when the parent has granted no credit, the host's overflow
   * policy decides — `"block"` returns a promise that resolves once the item
   * has its credit (await it to be throttled), the lossy policies count the
   * item as dropped, `"error"` rejects. Typed-array buffers in `value` are
   * moved, not copied: do not reuse an emitted buffer.
   *
   * @param value The data (structured-clonable).
   * @param timestamp When it happened, in microseconds since the Unix epoch
   * (a safe integer).
   */
  emit(value: D, timestamp: number): void | Promise<void>;
  /**
   * Registers callers: each gets a processor that sends its data to the
   * caller's aggregator and yields its events (the way to emit under the
   * default `delivery: "aggregator"`, where {@linkcode RuntimeContext.emit}
   * throws).
   */
  readonly dataHandler: RuntimeDataHandler<D, E>;
  /** Client or server, as configured. */
  readonly role: RuntimeRole;
  /** The UDP port of a server runtime's time server, when it serves time. */
  readonly timeServerPort: number | undefined;
  /**
   * Opens a gRPC channel secured as the configuration's `channelSecurity`
   * says (`connectChannel` of the rpc module, with that `security`).
   *
   * @param addresses The server's addresses, in order of preference.
   * @param port The server's port.
   * @param options Timeouts and a signal (not `security`).
   * @returns The ready channel; the runtime closes it.
   */
  connectChannel(
    addresses: string | readonly string[],
    port: number,
    options?: Omit<ConnectChannelOptions, "security">,
  ): Promise<GrpcChannel>;
  /**
   * Reports a background failure (a timer, a callback, a stream) to the
   * manager's watcher, where an uncaught error would otherwise be lost (or,
   * in-process, end the whole program).
   *
   * @param error The failure.
   */
  reportError(error: unknown): void;
  /** The structured-clonable parameters the parent gave. */
  readonly params: unknown;
  /** Aborted when the runtime is being stopped. */
  readonly signal: AbortSignal;
}

/**
 * Creates a runtime from its context. A Worker finds it by module URL and
 * export name ({@linkcode InitializerRef}); it is never serialised.
 *
 * @typeParam D The data the runtime emits.
 * @typeParam E The events it receives.
 */
export type RuntimeInitializer<D, E = unknown> = (
  context: RuntimeContext<D, E>,
) => Runtime | Promise<Runtime>;

/**
 * Names a {@linkcode RuntimeInitializer} so that a Worker can import it.
 *
 * @example
 * ```ts
 * import type { InitializerRef } from "./runtime.ts";
 *
 * const ref: InitializerRef = {
 *   module: import.meta.resolve("./my_runtime.ts"),
 *   export: "MyInitializer",
 *   params: { rateHz: 10 },
 * };
 * ```
 */
export interface InitializerRef {
  /** The absolute URL of the module that exports the initializer. */
  module: string | URL;
  /** The name under which the module exports it. */
  export: string;
  /** Structured-clonable parameters, given to the runtime as `context.params`. */
  params?: unknown;
}
