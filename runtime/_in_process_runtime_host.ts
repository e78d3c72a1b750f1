/**
 * The in-process counterpart of `WorkerRuntimeHost`: one runtime on this
 * thread, with the same lifecycle and the same data channel rules (credit
 * window and overflow policy), so that a `RuntimeHandle` behaves alike in
 * both modes. Private to the runtime module.
 *
 * @module
 */

import type { ErrorWatcher } from "./error_watcher.ts";
import type { SinkItem } from "./_data_handler.ts";
import { createRuntimeSide, type RuntimeSide } from "./_runtime_side.ts";
import { CreditWindow } from "./_worker_protocol.ts";
import { DataQueue } from "./_data_queue.ts";
import type { InitializerRef } from "./runtime.ts";
import type { RuntimeConfig } from "./runtime_config.ts";
import type { RuntimeEventStats } from "./runtime_data_handler.ts";

/** One data item as the handle hands it out. */
export interface InProcessDataItem {
  /** When it happened, in microseconds since the Unix epoch. */
  readonly timestamp: number;
  /** The data, as emitted (not copied). */
  readonly value: unknown;
  /** The caller it came from, as a string, if any. */
  readonly callerId?: string;
}

/** Options for {@linkcode InProcessRuntimeHost.spawn}. */
export interface InProcessRuntimeHostOptions {
  /** Where rejected emits and background failures are reported. */
  watcher: ErrorWatcher;
  /**
   * The configuration: `dataCapacity` items may wait for the reader before
   * `dataOverflow` applies.
   */
  config: RuntimeConfig;
}

/** The lifecycle state of an {@linkcode InProcessRuntimeHost}. */
export type InProcessRuntimeState =
  | "created"
  | "starting"
  | "running"
  | "stopping"
  | "stopped"
  | "failed"
  | "terminated";

/**
 * One runtime on this thread. Create it with
 * {@linkcode InProcessRuntimeHost.spawn} (imports the module, calls the
 * initializer); then `start`, read `data()`, `stop`.
 */
export class InProcessRuntimeHost {
  #side: RuntimeSide | undefined;
  readonly #window: CreditWindow;
  readonly #watcher: ErrorWatcher;
  readonly #source: string;
  #state: InProcessRuntimeState = "created";
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #lastEmit: Promise<unknown> = Promise.resolve();
  readonly #data = new DataQueue<InProcessDataItem>();

  private constructor(
    window: CreditWindow,
    watcher: ErrorWatcher,
    source: string,
  ) {
    this.#window = window;
    this.#watcher = watcher;
    this.#source = source;
  }

  /**
   * Imports `ref.module`, calls its export `ref.export` with a context and
   * resolves with the host once the runtime is created.
   *
   * @param ref The initializer.
   * @param options Watcher, credits, overflow policy.
   * @returns The host.
   * @throws {TypeError} When the export is not a function or returns no runtime.
   * @throws {unknown} The import's or the initializer's error.
   */
  static async spawn(
    ref: InitializerRef,
    options: InProcessRuntimeHostOptions,
  ): Promise<InProcessRuntimeHost> {
    const moduleUrl = String(ref.module);
    const credits = options.config.dataCapacity;
    const window = new CreditWindow({
      initialCredit: credits,
      overflow: options.config.dataOverflow,
      maxPending: credits,
    });
    const source = `in-process runtime ${ref.export} (${moduleUrl})`;
    // The initializer may emit at once: the host exists before it is called.
    const host = new InProcessRuntimeHost(window, options.watcher, source);
    host.#side = await createRuntimeSide({
      moduleUrl,
      exportName: ref.export,
      params: ref.params,
      config: options.config,
      sink: (item) => host.#emit(item),
      reportError: (error) => options.watcher.report(error, source),
    });
    return host;
  }

  /** The event routing counters. */
  get eventStats(): RuntimeEventStats | undefined {
    return this.#side?.handler.stats;
  }

  /**
   * Routes one event into the runtime's caller queues (where its
   * `eventOverflow` applies).
   *
   * @param item The event.
   * @returns `true` once routed.
   * @throws {TypeError} (rejection) When the runtime stopped.
   */
  async sendEvent(
    item: { value: unknown; callerId?: string; timestamp: number },
  ): Promise<boolean> {
    if (this.#data.ended) {
      throw new TypeError(
        `Cannot send the event as the runtime must be created or running: it is ${this.#state}`,
      );
    }
    await this.#side!.handler.deliver([item]);
    return true;
  }

  /** The lifecycle state. */
  get state(): InProcessRuntimeState {
    return this.#state;
  }

  /** Items dropped for want of credit. */
  get dropped(): number {
    return this.#window.dropped;
  }

  /**
   * Starts the runtime. Idempotent.
   *
   * @returns A promise that resolves once the runtime's `start` did.
   * @throws {unknown} The runtime's start error, as thrown.
   */
  start(): Promise<void> {
    if (this.#starting !== undefined) return this.#starting;
    if (this.#state !== "created") {
      return Promise.reject(
        new TypeError(
          `Cannot start the runtime as it must be created and not started: it is ${this.#state}`,
        ),
      );
    }
    this.#state = "starting";
    this.#starting = (async () => {
      try {
        await this.#side!.runtime.start();
        if (this.#state === "starting") this.#state = "running";
      } catch (error) {
        if (this.#state === "starting") this.#state = "failed";
        this.#data.end(error);
        throw error;
      }
    })();
    return this.#starting;
  }

  /**
   * Stops the runtime: aborts the context's signal, awaits its `stop`, then
   * the emits still waiting for credit, then ends the data. Idempotent.
   *
   * @param reason Passed to the runtime's `stop`.
   * @returns A promise that resolves once the last item is in the data queue.
   * @throws {unknown} The runtime's stop error, as thrown.
   */
  stop(reason?: unknown): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping;
    if (this.#state === "created") {
      this.#state = "stopped";
      this.#data.end();
      return this.#stopping = Promise.resolve();
    }
    if (this.#state !== "running" && this.#state !== "starting") {
      return Promise.reject(
        new TypeError(`Cannot stop the runtime as it must be running: it is ${this.#state}`),
      );
    }
    this.#state = "stopping";
    this.#stopping = (async () => {
      let failure: { error: unknown } | undefined;
      try {
        await this.#side!.stop(reason);
      } catch (error) {
        failure = { error };
      }
      await this.#lastEmit;
      if (this.#state === "stopping") this.#state = "stopped";
      this.#data.end();
      if (failure !== undefined) throw failure.error;
    })();
    return this.#stopping;
  }

  /**
   * Gives up on the runtime (it did not stop in time): waiting emits reject,
   * the data ends with `error`, the state becomes `"failed"`. Idempotent.
   *
   * @param error Why.
   */
  abandon(error: unknown): void {
    if (this.#state === "failed" || this.#state === "terminated") return;
    this.#side?.abandon(error);
    this.#window.close(error);
    this.#data.end(this.#state === "stopped" ? undefined : error);
    this.#state = this.#state === "stopped" ? "terminated" : "failed";
  }

  /**
   * The data, item by item, in order, ending after the runtime stopped.
   * Credit is granted back a batch at a time, once the reader has taken
   * the batch's items ({@linkcode InProcessRuntimeHost.batches}). One
   * reader at a time.
   *
   * @returns The items.
   */
  async *data(): AsyncGenerator<InProcessDataItem, void, undefined> {
    for await (const batch of this.batches()) yield* batch;
  }

  /**
   * The data, in batches of everything queued, in order, ending after the
   * runtime stopped. A batch's credit is granted back when the next one is
   * asked for, so a consumer's time on a batch throttles the runtime. One
   * reader at a time (and not together with `data()`).
   *
   * @returns The batches.
   */
  batches(): AsyncGenerator<InProcessDataItem[], void, undefined> {
    return this.#data.batches((n) => this.#window.grant(n));
  }

  #emit(item: SinkItem): void | Promise<void> {
    if (this.#data.ended) {
      throw new TypeError(
        `Cannot emit the data as the runtime must not have stopped: it is ${this.#state}`,
      );
    }
    if (this.#window.tryAcquire(1)) {
      this.#enqueue(item);
      return;
    }
    const done = this.#window.acquire(1).then((ok) => {
      if (ok) this.#enqueue(item);
    });
    // An unhandled rejection would end this whole process: report it instead.
    this.#lastEmit = done.catch((error) => this.#watcher.report(error, this.#source));
    return done;
  }

  #enqueue(item: InProcessDataItem): void {
    this.#data.push(item);
  }
}
