/**
 * {@linkcode RuntimeManager}: registers runtimes, starts them once, and shuts
 * them down within a deadline; each one is driven through a
 * {@linkcode RuntimeHandle}, in its own Worker or on this thread
 * (spec/runtime.md §5, §16.1, §16.7).
 *
 * @module
 */

import { ErrorWatcher } from "./error_watcher.ts";
import { InProcessRuntimeHost } from "./_in_process_runtime_host.ts";
import { ErrorRegistry } from "./_worker_protocol.ts";
import { checkInitializerRef } from "./_initializer_ref.ts";
import type { InitializerRef } from "./runtime.ts";
import {
  createRuntimeConfig,
  type RuntimeConfig,
  type RuntimeConfigOptions,
} from "./runtime_config.ts";
import { WorkerRuntimeHost } from "./worker_runtime_host.ts";

export type { InitializerRef, RuntimeConfig, RuntimeConfigOptions };

/** Options for {@linkcode RuntimeManager}. */
export interface RuntimeManagerOptions {
  /**
   * Where every runtime's background failures, start and stop failures are
   * reported.
   *
   * @default {new ErrorWatcher()}
   */
  watcher?: ErrorWatcher;
  /**
   * The classes errors from Worker runtimes are rebuilt as (built-ins
   * always); in-process runtimes throw their errors as they are.
   *
   * @default {new ErrorRegistry()}
   */
  errors?: ErrorRegistry;
}

/** Options for {@linkcode RuntimeManager.shutdown}. */
export interface RuntimeShutdownOptions {
  /**
   * How long every runtime has to stop, in milliseconds (an integer >= 0);
   * then Workers are terminated and in-process runtimes abandoned.
   *
   * @default {5000}
   */
  deadlineMs?: number;
}

/**
 * The lifecycle state of a {@linkcode RuntimeHandle}:
 * `registered → starting → running → stopping → stopped`, or `failed` from
 * any of them (create, start or stop error, crash, missed shutdown deadline).
 */
export type RuntimeHandleState =
  | "registered"
  | "starting"
  | "running"
  | "stopping"
  | "stopped"
  | "failed";

/** One data item a runtime emitted. */
export interface RuntimeDataItem {
  /** When it happened, in microseconds since the Unix epoch. */
  readonly timestamp: number;
  /** The data. */
  readonly value: unknown;
}

/** A runtime did not stop within the deadline of {@linkcode RuntimeManager.shutdown}. */
export class RuntimeStopTimeoutError extends Error {
  /** The runtime, as `"<mode> runtime <export> (<module>)"`. */
  readonly source: string;
  /** The deadline, in milliseconds. */
  readonly deadlineMs: number;

  /**
   * Creates the error.
   *
   * @param source The runtime.
   * @param deadlineMs The deadline it missed.
   */
  constructor(source: string, deadlineMs: number) {
    super(
      `Cannot stop the ${source} gracefully as it must stop within ${deadlineMs} ms: it did not, so it was ${
        source.startsWith("worker") ? "terminated" : "abandoned"
      }`,
    );
    this.name = "RuntimeStopTimeoutError";
    this.source = source;
    this.deadlineMs = deadlineMs;
  }
}

type Host = WorkerRuntimeHost | InProcessRuntimeHost;

/** The manager's way into a handle: its bounded shutdown. */
const shutdowns = new WeakMap<RuntimeHandle, (deadlineMs: number) => Promise<void>>();

/**
 * One registered runtime, the same in both isolation modes. Get it from
 * {@linkcode RuntimeManager.register}. The runtime is created (its Worker
 * spawned, or its module imported) by the first {@linkcode RuntimeHandle.start}.
 */
export class RuntimeHandle {
  readonly #ref: InitializerRef;
  readonly #config: RuntimeConfig;
  readonly #watcher: ErrorWatcher;
  readonly #errors: ErrorRegistry;
  readonly #source: string;
  readonly #hostReady = Promise.withResolvers<Host | undefined>();
  #host: Host | undefined;
  #state: RuntimeHandleState = "registered";
  #failure: { error: unknown } | undefined;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #abandoned = false;

  /**
   * Use {@linkcode RuntimeManager.register} instead.
   *
   * @param ref The initializer.
   * @param config The validated configuration.
   * @param options The manager's watcher and error classes.
   */
  constructor(
    ref: InitializerRef,
    config: RuntimeConfig,
    options: { watcher: ErrorWatcher; errors: ErrorRegistry },
  ) {
    this.#ref = ref;
    this.#config = config;
    this.#watcher = options.watcher;
    this.#errors = options.errors;
    this.#source = `${config.isolation} runtime ${ref.export} (${String(ref.module)})`;
    shutdowns.set(this, (deadlineMs) => this.#shutdown(deadlineMs));
  }

  /** The lifecycle state (a crashed Worker shows as `"failed"`). */
  get state(): RuntimeHandleState {
    if (this.#host?.state === "failed") return "failed";
    return this.#state;
  }

  /** The configuration the runtime was registered with. */
  get config(): RuntimeConfig {
    return this.#config;
  }

  /** Items dropped for want of credit (lossy `dataOverflow` policies; exact after stop). */
  get dropped(): number {
    return this.#host?.dropped ?? 0;
  }

  /**
   * Creates and starts the runtime; resolves when its `start` finished.
   * Idempotent: later calls return the same promise. A failure makes the
   * handle `"failed"`, is reported to the watcher and rejects.
   *
   * @returns A promise that resolves once the runtime runs.
   * @throws {TypeError} When the handle was stopped before it started.
   * @throws {unknown} The initializer's or runtime's error (a Worker's
   * rebuilt as its class when registered in `errors`).
   */
  start(): Promise<void> {
    if (this.#starting !== undefined) return this.#starting;
    if (this.#state !== "registered") {
      return Promise.reject(
        new TypeError(
          `Cannot start the ${this.#source} as it must be registered and not started: it is ${this.#state}`,
        ),
      );
    }
    this.#state = "starting";
    this.#starting = this.#run();
    return this.#starting;
  }

  async #run(): Promise<void> {
    let host: Host | undefined;
    try {
      host = await this.#spawn();
      if (this.#abandoned) {
        await this.#release(host, this.#failure?.error);
        throw this.#failure?.error;
      }
      this.#host = host;
      this.#hostReady.resolve(host);
      await host.start();
      if (this.#state === "starting") this.#state = "running";
    } catch (error) {
      if (this.#abandoned) throw error;
      this.#state = "failed";
      this.#failure ??= { error };
      this.#hostReady.resolve(this.#host);
      this.#watcher.report(error, this.#source);
      if (host !== undefined) await this.#release(host, error);
      throw error;
    }
  }

  #spawn(): Promise<Host> {
    const { isolation, dataCapacity: credits, dataOverflow: overflow } = this.#config;
    if (isolation === "worker") {
      return WorkerRuntimeHost.spawn(this.#ref, {
        watcher: this.#watcher,
        errors: this.#errors,
        credits,
        overflow,
      });
    }
    return InProcessRuntimeHost.spawn(this.#ref, { watcher: this.#watcher, credits, overflow });
  }

  /**
   * Stops the runtime: resolves after its `stop` finished and its last data
   * item is in {@linkcode RuntimeHandle.data}. Idempotent. Before start it
   * only marks the handle stopped; while starting it waits for the start.
   * A failed handle has nothing to stop (resolves).
   *
   * @param reason Why, passed to the runtime's `stop` (structured-cloned
   * for a Worker).
   * @returns A promise that resolves once the runtime stopped.
   * @throws {unknown} The runtime's stop error (also reported to the watcher).
   */
  stop(reason?: unknown): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping;
    if (this.#state === "registered") {
      this.#state = "stopped";
      this.#hostReady.resolve(undefined);
      return this.#stopping = Promise.resolve();
    }
    if (this.state === "failed" || this.#state === "stopped") return Promise.resolve();
    this.#state = "stopping";
    this.#stopping = (async () => {
      try {
        await this.#starting;
      } catch {
        return; // failed: reported already
      }
      const host = this.#host!;
      try {
        await host.stop(reason);
        if (this.#state === "stopping") this.#state = "stopped";
      } catch (error) {
        if (this.#abandoned) throw error;
        this.#state = "failed";
        this.#watcher.report(error, this.#source);
        throw error;
      } finally {
        if (host instanceof WorkerRuntimeHost && !this.#abandoned) await host.terminate();
      }
    })();
    return this.#stopping;
  }

  /**
   * The data, item by item, in emit order, ending once the runtime stopped
   * (or with the failure, when it failed). Reading grants credit back, so a
   * slow reader throttles the runtime (`"block"`) or makes it drop. May be
   * called before start; one reader at a time.
   *
   * @returns The items.
   * @throws {unknown} What made the runtime fail.
   */
  async *data(): AsyncGenerator<RuntimeDataItem, void, undefined> {
    const host = await this.#hostReady.promise;
    if (host === undefined) {
      if (this.#failure !== undefined) throw this.#failure.error;
      return;
    }
    try {
      yield* host.data();
    } catch (error) {
      // A Worker that was terminated for the failure ends with a crash: give the cause.
      throw this.#failure?.error ?? error;
    }
  }

  async #shutdown(deadlineMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), deadlineMs);
    });
    const stopped = this.stop().then(() => false, () => false);
    const timedOut = await Promise.race([stopped, expired]);
    clearTimeout(timer);
    if (timedOut) {
      const error = new RuntimeStopTimeoutError(this.#source, deadlineMs);
      this.#watcher.report(error, this.#source);
      await this.#abandon(error);
    } else if (this.#host !== undefined) {
      await this.#release(this.#host, undefined);
    }
  }

  async #abandon(error: unknown): Promise<void> {
    this.#abandoned = true;
    this.#failure ??= { error };
    if (this.#state !== "stopped") this.#state = "failed";
    this.#hostReady.resolve(this.#host);
    if (this.#host !== undefined) await this.#release(this.#host, error);
  }

  async #release(host: Host, error: unknown): Promise<void> {
    if (host instanceof WorkerRuntimeHost) await host.terminate();
    else if (error !== undefined) host.abandon(error);
  }
}

/**
 * Runs runtimes: register each with its configuration, {@linkcode start}
 * them all once, read each handle's data, and {@linkcode shutdown} within a
 * deadline. With `isolation: "worker"` (the default) each runtime runs in its
 * own Worker; with `"in-process"` on this thread — the handle behaves the
 * same. No global state: several managers may coexist.
 *
 * Fixes of the original: runtimes are not started twice (`start` is the
 * single, idempotent trigger and its failures reject and reach the watcher),
 * and `shutdown` stops the runtimes before it terminates anything.
 *
 * @example
 * ```ts ignore
 * import { RuntimeManager } from "./runtime_manager.ts";
 *
 * await using manager = new RuntimeManager();
 * const handle = manager.register(
 *   { module: import.meta.resolve("./my_runtime.ts"), export: "MyInitializer" },
 *   { role: "server" },
 * );
 * await manager.start();
 * for await (const { timestamp, value } of handle.data()) console.log(timestamp, value);
 * ```
 */
export class RuntimeManager implements AsyncDisposable {
  readonly #watcher: ErrorWatcher;
  readonly #errors: ErrorRegistry;
  readonly #handles: RuntimeHandle[] = [];
  #starting: Promise<void> | undefined;
  #shuttingDown: Promise<void> | undefined;

  /**
   * Creates the manager.
   *
   * @param options The watcher and the error classes of Worker runtimes.
   * @throws {TypeError} When `watcher` is not an ErrorWatcher or `errors` not an ErrorRegistry.
   */
  constructor(options: RuntimeManagerOptions = {}) {
    const { watcher = new ErrorWatcher(), errors = new ErrorRegistry() } = options;
    if (!(watcher instanceof ErrorWatcher)) {
      throw new TypeError(
        `Cannot create the runtime manager as 'watcher' must be an ErrorWatcher: current value is ${typeof watcher}`,
      );
    }
    if (!(errors instanceof ErrorRegistry)) {
      throw new TypeError(
        `Cannot create the runtime manager as 'errors' must be an ErrorRegistry: current value is ${typeof errors}`,
      );
    }
    this.#watcher = watcher;
    this.#errors = errors;
  }

  /** Where every runtime's failures are reported. */
  get watcher(): ErrorWatcher {
    return this.#watcher;
  }

  /** The registered handles, in registration order. */
  get handles(): readonly RuntimeHandle[] {
    return [...this.#handles];
  }

  /**
   * Registers a runtime; it is created and started by {@linkcode start}.
   *
   * @param ref The initializer: absolute module URL, export name, params.
   * @param config A configuration or its options (validated here).
   * @returns The runtime's handle.
   * @throws {TypeError} When the manager was started or shut down, or `ref` is invalid.
   * @throws {RangeError} When a configuration value is out of range.
   */
  register(ref: InitializerRef, config: RuntimeConfig | RuntimeConfigOptions): RuntimeHandle {
    if (this.#starting !== undefined || this.#shuttingDown !== undefined) {
      throw new TypeError(
        `Cannot register the runtime as the manager must not have been started or shut down: it was ${
          this.#shuttingDown !== undefined ? "shut down" : "started"
        }`,
      );
    }
    checkInitializerRef(ref, "register the runtime", false);
    const checked = createRuntimeConfig({ ...config } as RuntimeConfigOptions);
    const handle = new RuntimeHandle({ ...ref }, checked, {
      watcher: this.#watcher,
      errors: this.#errors,
    });
    this.#handles.push(handle);
    return handle;
  }

  /**
   * Starts every registered runtime, concurrently. Idempotent: a second call
   * returns the same promise (no runtime is started twice).
   *
   * @returns A promise that settles once every runtime started or failed.
   * @throws {TypeError} When the manager was shut down.
   * @throws {unknown} The first start failure, in registration order (every
   * failure is also in the watcher).
   */
  start(): Promise<void> {
    if (this.#starting !== undefined) return this.#starting;
    if (this.#shuttingDown !== undefined) {
      return Promise.reject(
        new TypeError(
          "Cannot start the runtime manager as it must not have been shut down: it was",
        ),
      );
    }
    this.#starting = (async () => {
      const results = await Promise.allSettled(this.#handles.map((handle) => handle.start()));
      const failed = results.find((result) => result.status === "rejected");
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    })();
    return this.#starting;
  }

  /**
   * Stops every runtime, concurrently; those that have not stopped within
   * `deadlineMs` are given up — their Worker terminated, or, in-process,
   * their handle marked failed and their data ended — with a
   * {@linkcode RuntimeStopTimeoutError} in the watcher. Every Worker is
   * terminated and every timer cleared when it resolves. Idempotent; never
   * rejects (stop failures go to the watcher).
   *
   * @param options The deadline.
   * @returns A promise that resolves within about `deadlineMs`.
   * @throws {RangeError} When `deadlineMs` is not an integer >= 0.
   */
  shutdown(options: RuntimeShutdownOptions = {}): Promise<void> {
    if (this.#shuttingDown !== undefined) return this.#shuttingDown;
    const { deadlineMs = 5_000 } = options;
    if (!Number.isSafeInteger(deadlineMs) || deadlineMs < 0) {
      throw new RangeError(
        `Cannot shut down the runtime manager as 'deadlineMs' must be an integer >= 0: current value is ${
          String(deadlineMs)
        }`,
      );
    }
    this.#shuttingDown = (async () => {
      await Promise.all(this.#handles.map((handle) => shutdowns.get(handle)!(deadlineMs)));
    })();
    return this.#shuttingDown;
  }

  /** Shuts down with the default deadline. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}
