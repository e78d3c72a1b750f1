/**
 * {@linkcode WorkerRuntimeHost}: the parent's side of one runtime in its own
 * Worker — bootstrap by module URL and export name, start and stop with
 * acknowledgements and timeouts, batched zero-copy data under credit-based
 * flow control, heartbeats, and crash detection reported to an
 * {@linkcode ErrorWatcher} (DESIGN.md, Decision 8; spec/runtime.md §16).
 *
 * @module
 */

import { ErrorWatcher } from "./error_watcher.ts";
import {
  CreditWindow,
  type DataItem,
  deserializeError,
  encodeForTransfer,
  ErrorRegistry,
  type Message,
  type OverflowPolicy,
  PROTOCOL_VERSION,
  type SerializedError,
  validateMessage,
} from "./_worker_protocol.ts";
import { checkInitializerRef } from "./_initializer_ref.ts";
import { DataQueue } from "./_data_queue.ts";
import type { InitializerRef } from "./runtime.ts";
import {
  createRuntimeConfig,
  type RuntimeConfig,
  type RuntimeConfigOptions,
} from "./runtime_config.ts";
import type { RuntimeEventStats } from "./runtime_data_handler.ts";

export type {
  InitializerRef,
  OverflowPolicy,
  RuntimeConfig,
  RuntimeConfigOptions,
  RuntimeEventStats,
};

/** One event on its way into the worker. */
export interface WorkerEventItem {
  /** The event (structured-cloned; typed-array buffers are moved). */
  readonly value: unknown;
  /** The caller it is for, as a string; absent for a broadcast. */
  readonly callerId?: string;
  /** When it happened, local microseconds since the Unix epoch. */
  readonly timestamp: number;
}

/** The data-channel counters a worker reports in its `stopped` message. */
export interface WorkerDataStats {
  /** Items posted to the parent. */
  readonly sent: number;
  /** Items dropped for want of credit (lossy policies). */
  readonly dropped: number;
  /** Items refused with a `CreditOverflowError` (`"error"` policy). */
  readonly rejected: number;
  /** Emits that had to wait for credit. */
  readonly blocked: number;
  /** The most items ever held in the worker (batched or waiting for credit). */
  readonly maxBuffered: number;
  /** The most items ever sent and not yet credited back by the parent. */
  readonly maxUnacked: number;
}

/** One data item as the parent receives it. */
export interface WorkerDataItem {
  /** When it happened, in microseconds since the Unix epoch. */
  readonly timestamp: number;
  /** The data (typed arrays arrive moved, not copied). */
  readonly value: unknown;
  /** The caller it came from, when the runtime sent it through a processor. */
  readonly callerId?: string;
}

/** Options for {@linkcode WorkerRuntimeHost.spawn}. */
export interface WorkerRuntimeHostOptions {
  /**
   * The runtime's configuration, given to the worker (its data and event
   * flow-control settings apply unless `credits`/`overflow` override them).
   *
   * @default {{ role: "server", delivery: "stream" }}
   */
  config?: RuntimeConfig | RuntimeConfigOptions;
  /**
   * Where background failures, crashes and hangs are reported.
   *
   * @default {new ErrorWatcher()}
   */
  watcher?: ErrorWatcher;
  /**
   * The classes errors from the worker are rebuilt as (built-ins always).
   *
   * @default {new ErrorRegistry()}
   */
  errors?: ErrorRegistry;
  /**
   * How often a heartbeat is sent, in milliseconds (an integer >= 1).
   *
   * @default {1000}
   */
  heartbeatMs?: number;
  /**
   * How long a heartbeat may go unanswered before the worker is declared
   * hung ({@linkcode WorkerHungError}), in milliseconds (an integer >= 1).
   *
   * @default {5000}
   */
  heartbeatTimeoutMs?: number;
  /**
   * How long `spawn` waits for the runtime to be created, in milliseconds.
   *
   * @default {10000}
   */
  initTimeoutMs?: number;
  /**
   * How long {@linkcode WorkerRuntimeHost.start} waits, in milliseconds.
   *
   * @default {10000}
   */
  startTimeoutMs?: number;
  /**
   * How long {@linkcode WorkerRuntimeHost.stop} waits, in milliseconds.
   *
   * @default {10000}
   */
  stopTimeoutMs?: number;
  /**
   * How many data items the worker may have sent and the parent not yet
   * consumed (an integer >= 1).
   *
   * @default {config.dataCapacity}
   */
  credits?: number;
  /**
   * What the worker does with an item when it has no credit.
   *
   * @default {config.dataOverflow}
   */
  overflow?: OverflowPolicy;
  /**
   * Receives the data, batch by batch, in order; credit is granted back when
   * it returns (or its promise settles), so a slow consumer throttles the
   * worker. Without it, read {@linkcode WorkerRuntimeHost.data}.
   *
   * @default {undefined}
   */
  onData?: (items: WorkerDataItem[]) => void | Promise<void>;
}

/** The lifecycle state of a {@linkcode WorkerRuntimeHost}. */
export type WorkerRuntimeState =
  | "created"
  | "starting"
  | "running"
  | "stopping"
  | "stopped"
  | "failed"
  | "terminated";

/**
 * The worker died: it threw outside the runtime's reach, exited
 * (`Deno.exit()`, `self.close()`), or the host was terminated while a
 * command was waiting. `cause` holds the original error where there is one.
 */
export class WorkerCrashedError extends Error {
  /** The exit code, when the worker exited through `Deno.exit()`. */
  readonly exitCode: number | undefined;

  /**
   * Creates the error.
   *
   * @param message What happened.
   * @param options `cause`: the original error; `exitCode`: the exit code.
   */
  constructor(message: string, options: ErrorOptions & { exitCode?: number } = {}) {
    super(message, "cause" in options ? { cause: options.cause } : undefined);
    this.name = "WorkerCrashedError";
    this.exitCode = options.exitCode;
  }
}

/** The worker did not answer a heartbeat within `heartbeatTimeoutMs`. */
export class WorkerHungError extends Error {
  /** How long it had been silent, in milliseconds. */
  readonly silentMs: number;

  /**
   * Creates the error.
   *
   * @param silentMs How long the heartbeat went unanswered.
   */
  constructor(silentMs: number) {
    super(
      `Cannot keep the worker as it must answer heartbeats: it has been silent for ${silentMs} ms`,
    );
    this.name = "WorkerHungError";
    this.silentMs = silentMs;
  }
}

/** A command (`init`, `start`, `stop`) was not acknowledged in time. */
export class WorkerTimeoutError extends Error {
  /** The command. */
  readonly command: string;
  /** The time limit, in milliseconds. */
  readonly timeoutMs: number;

  /**
   * Creates the error.
   *
   * @param command The command that timed out.
   * @param timeoutMs The time limit, in milliseconds.
   */
  constructor(command: string, timeoutMs: number) {
    super(
      `Cannot ${command} the runtime as the worker must acknowledge within ${timeoutMs} ms: it did not`,
    );
    this.name = "WorkerTimeoutError";
    this.command = command;
    this.timeoutMs = timeoutMs;
  }
}

interface Pending {
  readonly command: string;
  resolve(message: Message & Record<string, unknown>): void;
  reject(error: unknown): void;
  timer: ReturnType<typeof setTimeout>;
}

const POLICIES: readonly OverflowPolicy[] = ["block", "drop-oldest", "drop-newest", "error"];
const v = PROTOCOL_VERSION;
const WORKER_MAIN = new URL("./_worker_main.ts", import.meta.url).href;

/**
 * One runtime hosted in its own module Worker. Create it with
 * {@linkcode WorkerRuntimeHost.spawn}; then {@linkcode WorkerRuntimeHost.start},
 * read data, {@linkcode WorkerRuntimeHost.stop}, and always
 * {@linkcode WorkerRuntimeHost.terminate} (or `await using`).
 *
 * Failures that no caller awaits — an uncaught error in the worker (rebuilt
 * as its original class when registered), a worker that exits
 * ({@linkcode WorkerCrashedError}) or stops answering heartbeats
 * ({@linkcode WorkerHungError}) — go to the watcher. A crash or hang also
 * fails the host: waiting commands reject and the worker is terminated.
 *
 * @example
 * ```ts ignore
 * import { WorkerRuntimeHost } from "./worker_runtime_host.ts";
 *
 * await using host = await WorkerRuntimeHost.spawn({
 *   module: import.meta.resolve("./my_runtime.ts"),
 *   export: "MyInitializer",
 * });
 * await host.start();
 * for await (const item of host.data()) console.log(item.timestamp, item.value);
 * ```
 */
export class WorkerRuntimeHost implements AsyncDisposable {
  readonly #worker: Worker;
  readonly #watcher: ErrorWatcher;
  readonly #errors: ErrorRegistry;
  readonly #source: string;
  readonly #config: RuntimeConfig;
  readonly #events: CreditWindow;
  #eventBatch: WorkerEventItem[] = [];
  #eventFlushScheduled = false;
  #eventStats: RuntimeEventStats | undefined;
  readonly #onData: WorkerRuntimeHostOptions["onData"];
  readonly #timeouts: { init: number; start: number; stop: number; heartbeat: number };
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #state: WorkerRuntimeState = "created";
  #heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  #heartbeatSentAt: number | undefined;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #delivery: Promise<void> = Promise.resolve();
  readonly #data = new DataQueue<WorkerDataItem>();
  #ungranted = 0;
  #dropped = 0;
  #stats: WorkerDataStats | undefined;
  #received = 0;

  private constructor(
    ref: { module: string; export: string },
    options: WorkerRuntimeHostOptions,
    config: RuntimeConfig,
  ) {
    this.#watcher = options.watcher ?? new ErrorWatcher();
    this.#errors = options.errors ?? new ErrorRegistry();
    this.#source = `worker runtime ${ref.export} (${ref.module})`;
    this.#config = config;
    this.#events = new CreditWindow({
      initialCredit: config.eventCapacity,
      overflow: config.eventOverflow,
      maxPending: config.eventCapacity,
    });
    this.#onData = options.onData;
    this.#timeouts = {
      init: options.initTimeoutMs ?? 10_000,
      start: options.startTimeoutMs ?? 10_000,
      stop: options.stopTimeoutMs ?? 10_000,
      heartbeat: options.heartbeatTimeoutMs ?? 5_000,
    };
    this.#worker = new Worker(WORKER_MAIN, { type: "module", name: ref.export });
    this.#worker.onmessage = (event) => this.#onMessage(event.data);
    this.#worker.onerror = (event) => {
      event.preventDefault();
      this.#fail(
        new WorkerCrashedError(
          `The worker of ${this.#source} crashed: ${event.message}`,
          event.error === undefined ? {} : { cause: event.error },
        ),
      );
    };
    this.#worker.onmessageerror = () => {
      this.#watcher.report(
        new TypeError(
          `Cannot read a message of ${this.#source} as it must deserialize: it did not`,
        ),
        this.#source,
      );
    };
    const heartbeatMs = options.heartbeatMs ?? 1_000;
    this.#heartbeatTimer = setInterval(() => this.#heartbeat(), heartbeatMs);
  }

  /**
   * Creates a module Worker, has it import `ref.export` from `ref.module`
   * and create the runtime, and resolves once it is created (state
   * `"created"`).
   *
   * @param ref The initializer: module URL, export name, clonable params.
   * @param options Watcher, flow control, timeouts, data consumer.
   * @returns The host.
   * @throws {TypeError} When `ref` or an option is invalid, or `params` is
   * not structured-clonable.
   * @throws {WorkerTimeoutError} When the worker did not answer in time.
   * @throws {unknown} The initializer's error, rebuilt, when it failed.
   */
  static async spawn(
    ref: InitializerRef,
    options: WorkerRuntimeHostOptions = {},
  ): Promise<WorkerRuntimeHost> {
    const checked = checkInitializerRef(ref, "spawn the runtime", true);
    checkOptions(options);
    const base = createRuntimeConfig(
      { ...(options.config ?? { role: "server", delivery: "stream" }) } as RuntimeConfigOptions,
    );
    const config = createRuntimeConfig({
      ...base,
      dataCapacity: options.credits ?? base.dataCapacity,
      dataOverflow: options.overflow ?? base.dataOverflow,
    });
    const host = new WorkerRuntimeHost(checked, options, config);
    try {
      await host.#command("init", host.#timeouts.init, {
        moduleUrl: checked.module,
        exportName: checked.export,
        params: ref.params,
        config,
      });
    } catch (error) {
      host.#shutdown(error);
      throw error;
    }
    return host;
  }

  /** The lifecycle state. */
  get state(): WorkerRuntimeState {
    return this.#state;
  }

  /** Where failures are reported. */
  get watcher(): ErrorWatcher {
    return this.#watcher;
  }

  /** Data items received so far. */
  get received(): number {
    return this.#received;
  }

  /** Items the worker dropped for want of credit, as last reported (exact after stop). */
  get dropped(): number {
    return this.#stats?.dropped ?? this.#dropped;
  }

  /** The worker's data counters, as reported when it stopped. */
  get workerStats(): WorkerDataStats | undefined {
    return this.#stats;
  }

  /** The worker's event routing counters, as reported when it stopped. */
  get eventStats(): RuntimeEventStats | undefined {
    return this.#eventStats;
  }

  /** The configuration the worker runs with. */
  get config(): RuntimeConfig {
    return this.#config;
  }

  /** Events dropped here for want of event credit (lossy `eventOverflow`). */
  get eventsDropped(): number {
    return this.#events.dropped;
  }

  /**
   * Sends one event to the runtime, batched with the others of this
   * microtask, under the event credit the worker grants (`eventCapacity`,
   * returned as the worker routes events). Without credit, `eventOverflow`
   * decides: `"block"` waits, the lossy policies drop (and count),
   * `"error"` rejects.
   *
   * @param item The event.
   * @returns Whether it was sent (`false`: dropped).
   * @throws {CreditOverflowError} (rejection) Under `"error"` without credit.
   * @throws {TypeError} (rejection) When the host is not running or the
   * event cannot be cloned.
   */
  sendEvent(item: WorkerEventItem): Promise<boolean> {
    if (this.#isDead() || this.#state === "stopped" || this.#state === "stopping") {
      return Promise.reject(
        new TypeError(
          `Cannot send the event as the runtime must be created or running: it is ${this.#state}`,
        ),
      );
    }
    if (this.#events.tryAcquire(1)) {
      this.#queueEvent(item);
      return Promise.resolve(true);
    }
    return this.#events.acquire(1).then((ok) => {
      if (ok) this.#queueEvent(item);
      return ok;
    });
  }

  #queueEvent(item: WorkerEventItem): void {
    if (this.#isDead()) return;
    this.#eventBatch.push(item);
    if (this.#eventFlushScheduled) return;
    this.#eventFlushScheduled = true;
    queueMicrotask(() => {
      this.#eventFlushScheduled = false;
      const items = this.#eventBatch;
      this.#eventBatch = [];
      if (items.length === 0 || this.#isDead()) return;
      const message = { v, type: "events", id: this.#nextId++, items } as Message;
      try {
        this.#worker.postMessage(message, encodeForTransfer(message).transfer);
      } catch (error) {
        // An item that cannot be cloned: nothing was sent; give the credit back.
        this.#events.grant(items.length);
        this.#watcher.report(error, `${this.#source}: events`);
      }
    });
  }

  /**
   * Starts the runtime; resolves when it has started. Idempotent.
   *
   * @returns A promise that resolves once the worker acknowledged.
   * @throws {unknown} The runtime's start error, rebuilt as its class.
   * @throws {WorkerTimeoutError} When not acknowledged within `startTimeoutMs`.
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
    this.#starting = this.#command("start", this.#timeouts.start).then(
      () => {
        if (this.#state === "starting") this.#state = "running";
      },
      (error) => {
        if (this.#state === "starting") this.#state = "failed";
        throw error;
      },
    );
    return this.#starting;
  }

  /**
   * Stops the runtime: resolves after its `stop` finished, its final data
   * arrived and was delivered to `onData`. Idempotent. In state `"created"`
   * it only marks the host stopped.
   *
   * @param reason Why (structured-clonable), passed to the runtime's `stop`.
   * @returns A promise that resolves once the worker acknowledged.
   * @throws {unknown} The runtime's stop error, rebuilt as its class.
   * @throws {WorkerTimeoutError} When not acknowledged within `stopTimeoutMs`.
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
      const reply = await this.#command("stop", this.#timeouts.stop, cloneOrOmit(reason));
      this.#stats = reply.stats as WorkerDataStats | undefined;
      this.#eventStats = reply.events as RuntimeEventStats | undefined;
      await this.#delivery;
      if (this.#state === "stopping") this.#state = "stopped";
      this.#data.end();
      this.#events.close(
        new TypeError("Cannot send the event as the runtime must be running: it stopped"),
      );
      if (reply.error !== undefined) {
        throw deserializeError(reply.error as SerializedError, this.#errors);
      }
    })();
    return this.#stopping;
  }

  /**
   * The data, item by item, in order, ending after the runtime stopped (or
   * failing when the worker crashed). Credit is granted back a batch at a
   * time, once the reader has taken the batch's items
   * ({@linkcode WorkerRuntimeHost.batches}), so a slow reader throttles the
   * worker. Only without `onData`.
   *
   * @returns The items.
   * @throws {TypeError} When an `onData` consumer was given.
   */
  async *data(): AsyncGenerator<WorkerDataItem, void, undefined> {
    if (this.#onData !== undefined) {
      throw new TypeError(
        "Cannot read data() as the host must have no onData consumer: it has one",
      );
    }
    for await (const batch of this.batches()) yield* batch;
  }

  /**
   * The data, in batches of everything received, in order, ending after
   * the runtime stopped (or failing when the worker crashed). A batch's
   * credit is granted back when the next one is asked for, so a consumer's
   * time on a batch throttles the worker. Only without `onData`, and not
   * together with `data()`.
   *
   * @returns The batches.
   * @throws {TypeError} When an `onData` consumer was given.
   */
  batches(): AsyncGenerator<WorkerDataItem[], void, undefined> {
    if (this.#onData !== undefined) {
      throw new TypeError(
        "Cannot read batches() as the host must have no onData consumer: it has one",
      );
    }
    return this.#data.batches((n) => {
      this.#ungranted += n;
      this.#grant();
    });
  }

  /**
   * Terminates the worker at once and clears every timer; waiting commands
   * reject with a {@linkcode WorkerCrashedError}. Idempotent; never throws.
   *
   * @returns A resolved promise (terminating is synchronous in Deno).
   */
  terminate(): Promise<void> {
    this.#shutdown(new WorkerCrashedError(`The worker of ${this.#source} was terminated`));
    if (this.#state !== "failed") this.#state = "terminated";
    return Promise.resolve();
  }

  /**
   * Stops the runtime if it runs (within `stopTimeoutMs`, errors reported to
   * the watcher), then terminates the worker.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      if (this.#state === "running" || this.#state === "starting") await this.stop();
    } catch (error) {
      this.#watcher.report(error, this.#source);
    } finally {
      await this.terminate();
    }
  }

  #command(
    type: "init" | "start" | "stop",
    timeoutMs: number,
    fields: Record<string, unknown> = {},
  ): Promise<Message & Record<string, unknown>> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new WorkerTimeoutError(type, timeoutMs));
      }, timeoutMs);
      this.#pending.set(id, { command: type, resolve, reject, timer });
      this.#post({ v, type, id, ...fields } as Message);
    });
  }

  #post(message: Message): void {
    try {
      this.#worker.postMessage(message);
    } catch (error) {
      this.#fail(
        new WorkerCrashedError(`Cannot post to the worker of ${this.#source}`, {
          cause: error,
        }),
      );
    }
  }

  #grant(): void {
    if (this.#ungranted === 0 || this.#isDead()) return;
    const credits = this.#ungranted;
    this.#ungranted = 0;
    this.#post({ v, type: "credit", id: this.#nextId++, channel: "data", credits });
  }

  #heartbeat(): void {
    const now = Date.now();
    if (this.#heartbeatSentAt !== undefined) {
      const silent = now - this.#heartbeatSentAt;
      if (silent >= this.#timeouts.heartbeat) this.#fail(new WorkerHungError(silent));
      return;
    }
    this.#heartbeatSentAt = now;
    this.#post({ v, type: "heartbeat", id: this.#nextId++ });
  }

  #onMessage(data: unknown): void {
    let message: Message;
    try {
      message = validateMessage(data);
    } catch (error) {
      this.#watcher.report(error, this.#source);
      return;
    }
    const extra = message as Message & Record<string, unknown>;
    switch (message.type) {
      case "ready":
      case "started":
      case "stopped":
        this.#settle(message.id, extra);
        return;
      case "init-failed":
      case "start-failed":
        this.#settle(message.id, extra, deserializeError(message.error, this.#errors));
        return;
      case "heartbeat-ack":
        this.#heartbeatSentAt = undefined;
        return;
      case "credit":
        if (message.channel === "events") this.#events.grant(message.credits);
        return;
      case "data":
        this.#onBatch(message.items, extra.dropped);
        return;
      case "error": {
        const error = deserializeError(message.error, this.#errors);
        const exit = extra.exit as { code?: number; via?: string } | undefined;
        if (exit !== undefined) {
          this.#fail(
            new WorkerCrashedError(`The worker of ${this.#source} exited through ${exit.via}`, {
              cause: error,
              exitCode: typeof exit.code === "number" ? exit.code : undefined,
            }),
          );
        } else {
          this.#watcher.report(error, this.#source);
        }
        return;
      }
      default:
        this.#watcher.report(
          new TypeError(`Cannot handle "${message.type}" from ${this.#source}: unexpected`),
          this.#source,
        );
    }
  }

  #settle(id: number, message: Message & Record<string, unknown>, error?: unknown): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if (error === undefined) pending.resolve(message);
    else pending.reject(error);
  }

  #onBatch(items: readonly DataItem[], dropped: unknown): void {
    if (typeof dropped === "number") this.#dropped = dropped;
    this.#received += items.length;
    const batch = items.map((item): WorkerDataItem =>
      item.callerId === undefined
        ? { timestamp: item.timestamp, value: item.value }
        : { timestamp: item.timestamp, value: item.value, callerId: item.callerId }
    );
    const onData = this.#onData;
    if (onData === undefined) {
      this.#data.pushAll(batch);
      return;
    }
    this.#delivery = this.#delivery.then(async () => {
      try {
        await onData(batch);
      } catch (error) {
        this.#watcher.report(error, `${this.#source}: onData`);
      }
      this.#ungranted += batch.length;
      this.#grant();
    });
  }

  #isDead(): boolean {
    return this.#state === "failed" || this.#state === "terminated";
  }

  #fail(error: Error): void {
    if (this.#isDead()) return;
    // Failed and shut down before the watcher hears of it: a listener that
    // reacts (stops, shuts down) must find the host failed, not running.
    this.#state = "failed";
    this.#shutdown(error);
    this.#watcher.report(error, this.#source);
  }

  #shutdown(error: unknown): void {
    if (this.#heartbeatTimer !== undefined) {
      clearInterval(this.#heartbeatTimer);
      this.#heartbeatTimer = undefined;
    }
    this.#worker.onmessage = null;
    this.#worker.onerror = null;
    this.#worker.onmessageerror = null;
    this.#worker.terminate();
    this.#events.close(error);
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
    this.#data.end(this.#state === "stopped" ? undefined : error);
    if (!this.#isDead()) this.#state = "terminated";
  }
}

function cloneOrOmit(reason: unknown): Record<string, unknown> {
  if (reason === undefined) return {};
  try {
    return { reason: structuredClone(reason) };
  } catch {
    return { reason: String(reason) };
  }
}

function checkOptions(options: WorkerRuntimeHostOptions): void {
  for (
    const key of [
      "heartbeatMs",
      "heartbeatTimeoutMs",
      "initTimeoutMs",
      "startTimeoutMs",
      "stopTimeoutMs",
      "credits",
    ] as const
  ) {
    const value = options[key];
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
      throw new TypeError(
        `Cannot spawn the runtime as '${key}' must be an integer >= 1: current value is ${
          String(value)
        }`,
      );
    }
  }
  if (options.overflow !== undefined && !POLICIES.includes(options.overflow)) {
    throw new TypeError(
      `Cannot spawn the runtime as 'overflow' must be one of ${
        POLICIES.map((p) => `"${p}"`).join(", ")
      }: current value is ${String(options.overflow)}`,
    );
  }
  if (options.onData !== undefined && typeof options.onData !== "function") {
    throw new TypeError(
      `Cannot spawn the runtime as 'onData' must be a function: current value is ${typeof options
        .onData}`,
    );
  }
}
