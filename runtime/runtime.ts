/**
 * The user-facing model of a runtime: what an initializer creates, what it
 * gets to emit data with, and how a parent names an initializer so that a
 * Worker can load it (DESIGN.md, Decision 8; spec/runtime.md §16.1–16.2).
 *
 * @module
 */

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
 * What a runtime gets from its host.
 *
 * @typeParam D The data the runtime emits.
 */
export interface RuntimeContext<D> {
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
 */
export type RuntimeInitializer<D> = (context: RuntimeContext<D>) => Runtime | Promise<Runtime>;

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
