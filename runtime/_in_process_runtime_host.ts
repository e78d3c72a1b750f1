/**
 * The in-process counterpart of `WorkerRuntimeHost`: one runtime on this
 * thread, with the same lifecycle and the same data channel rules (credit
 * window and overflow policy), so that a `RuntimeHandle` behaves alike in
 * both modes. Private to the runtime module.
 *
 * @module
 */

import type { ErrorWatcher } from "./error_watcher.ts";
import { CreditWindow, type OverflowPolicy } from "./_worker_protocol.ts";
import type { InitializerRef, Runtime, RuntimeContext, RuntimeInitializer } from "./runtime.ts";

/** One data item as the handle hands it out. */
export interface InProcessDataItem {
  /** When it happened, in microseconds since the Unix epoch. */
  readonly timestamp: number;
  /** The data, as emitted (not copied). */
  readonly value: unknown;
}

/** Options for {@linkcode InProcessRuntimeHost.spawn}. */
export interface InProcessRuntimeHostOptions {
  /** Where rejected emits are reported. */
  watcher: ErrorWatcher;
  /**
   * How many items may wait for the reader before the overflow policy applies.
   *
   * @default {1024}
   */
  credits?: number;
  /**
   * What `emit` does without credit.
   *
   * @default {"block"}
   */
  overflow?: OverflowPolicy;
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
  #runtime: Runtime | undefined;
  readonly #window: CreditWindow;
  readonly #abort: AbortController;
  readonly #watcher: ErrorWatcher;
  readonly #source: string;
  #state: InProcessRuntimeState = "created";
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #lastEmit: Promise<unknown> = Promise.resolve();
  #items: InProcessDataItem[] = [];
  #head = 0;
  #itemWaiter: (() => void) | undefined;
  #dataEnd: { error?: unknown } | undefined;

  private constructor(
    window: CreditWindow,
    abort: AbortController,
    watcher: ErrorWatcher,
    source: string,
  ) {
    this.#window = window;
    this.#abort = abort;
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
    const credits = options.credits ?? 1024;
    const window = new CreditWindow({
      initialCredit: credits,
      overflow: options.overflow ?? "block",
      maxPending: credits,
    });
    const abort = new AbortController();
    const source = `in-process runtime ${ref.export} (${moduleUrl})`;
    // The initializer may emit at once: the host exists before it is called.
    const host = new InProcessRuntimeHost(window, abort, options.watcher, source);
    const context: RuntimeContext<unknown> = {
      emit: (value, timestamp) => host.#emit(value, timestamp),
      params: ref.params,
      signal: abort.signal,
    };
    const module = await import(moduleUrl);
    const initializer: unknown = module[ref.export];
    if (typeof initializer !== "function") {
      throw new TypeError(
        `Cannot initialize the runtime as export '${ref.export}' of ${moduleUrl} must be a function: current value is ${typeof initializer}`,
      );
    }
    const created: unknown = await (initializer as RuntimeInitializer<unknown>)(context);
    if (
      typeof created !== "object" || created === null ||
      typeof (created as Runtime).start !== "function" ||
      typeof (created as Runtime).stop !== "function"
    ) {
      throw new TypeError(
        `Cannot initialize the runtime as '${ref.export}' must return an object with start() and stop(): it returned ${
          created === null ? "null" : typeof created
        }`,
      );
    }
    host.#runtime = created as Runtime;
    return host;
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
        await this.#runtime!.start();
        if (this.#state === "starting") this.#state = "running";
      } catch (error) {
        if (this.#state === "starting") this.#state = "failed";
        this.#endData(error);
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
      this.#endData();
      return this.#stopping = Promise.resolve();
    }
    if (this.#state !== "running" && this.#state !== "starting") {
      return Promise.reject(
        new TypeError(`Cannot stop the runtime as it must be running: it is ${this.#state}`),
      );
    }
    this.#state = "stopping";
    this.#stopping = (async () => {
      this.#abort.abort(reason);
      let failure: { error: unknown } | undefined;
      try {
        await this.#runtime!.stop(reason);
      } catch (error) {
        failure = { error };
      }
      await this.#lastEmit;
      if (this.#state === "stopping") this.#state = "stopped";
      this.#endData();
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
    this.#abort.abort(error);
    this.#window.close(error);
    this.#endData(this.#state === "stopped" ? undefined : error);
    this.#state = this.#state === "stopped" ? "terminated" : "failed";
  }

  /**
   * The data, item by item, in order, ending after the runtime stopped.
   * Credit is granted back as items are taken. One reader at a time.
   *
   * @returns The items.
   */
  async *data(): AsyncGenerator<InProcessDataItem, void, undefined> {
    while (true) {
      if (this.#head < this.#items.length) {
        const item = this.#items[this.#head++];
        if (this.#head === this.#items.length) {
          this.#items = [];
          this.#head = 0;
        }
        this.#window.grant(1);
        yield item;
        continue;
      }
      if (this.#dataEnd !== undefined) {
        if ("error" in this.#dataEnd) throw this.#dataEnd.error;
        return;
      }
      await new Promise<void>((resolve) => this.#itemWaiter = resolve);
    }
  }

  #emit(value: unknown, timestamp: number): void | Promise<void> {
    if (!Number.isSafeInteger(timestamp)) {
      throw new TypeError(
        `Cannot emit the data as 'timestamp' must be a safe integer (microseconds): current value is ${
          String(timestamp)
        }`,
      );
    }
    if (this.#dataEnd !== undefined) {
      throw new TypeError(
        `Cannot emit the data as the runtime must not have stopped: it is ${this.#state}`,
      );
    }
    if (this.#window.tryAcquire(1)) {
      this.#enqueue({ value, timestamp });
      return;
    }
    const done = this.#window.acquire(1).then((ok) => {
      if (ok) this.#enqueue({ value, timestamp });
    });
    // An unhandled rejection would end this whole process: report it instead.
    this.#lastEmit = done.catch((error) => this.#watcher.report(error, this.#source));
    return done;
  }

  #enqueue(item: InProcessDataItem): void {
    if (this.#dataEnd !== undefined) return;
    this.#items.push(item);
    const waiter = this.#itemWaiter;
    this.#itemWaiter = undefined;
    waiter?.();
  }

  #endData(error?: unknown): void {
    if (this.#dataEnd !== undefined) return;
    this.#dataEnd = error === undefined ? {} : { error };
    const waiter = this.#itemWaiter;
    this.#itemWaiter = undefined;
    waiter?.();
  }
}
