/**
 * The runtime side's {@linkcode RuntimeDataHandler} (private): caller
 * registration, per-caller event queues, routing of events (broadcasts,
 * events for callers not registered yet), clocks per caller, and the data
 * path to the host's sink. The same object serves both isolation modes.
 *
 * @module
 */

import { CallerId } from "../rpc/caller_id.ts";
import { parsePeer } from "../rpc/_parse_peer.ts";
import { MAX_DELAY_MS, type Scheduler, systemScheduler } from "../rpc/scheduler.ts";
import { deadline } from "../rpc/_async.ts";
import type { SynchronizedClock } from "../rpc/synchronized_clock.ts";
import { SystemClock } from "../rpc/system_clock.ts";
import { TimeSyncClient } from "../rpc/time_sync_client.ts";
import { TimeSyncServer } from "../rpc/time_sync_server.ts";
import { show } from "../rpc/_show.ts";
import { EventBatchQueue } from "./_event_batch_queue.ts";
import type { EventItem } from "./_worker_protocol.ts";
import type { RuntimeConfig } from "./runtime_config.ts";
import {
  type CallerAddress,
  CallerRegistrationError,
  type EndpointDataProcessor,
  type ProcessDataOptions,
  type ProcessorEventsOptions,
  type RuntimeDataHandler,
  type RuntimeEvent,
  type RuntimeEventStats,
} from "./runtime_data_handler.ts";

/** One data item on its way to the host. */
export interface SinkItem {
  /** The data. */
  value: unknown;
  /** Local microseconds since the Unix epoch. */
  timestamp: number;
  /** The caller, as a string; absent for `context.emit` in stream delivery. */
  callerId?: string;
}

/** A caller's clock and how to give it back. */
export interface ClockLease {
  /** The clock. */
  readonly clock: SynchronizedClock;
  /** Resolves with the first offset estimate. */
  ready(signal?: AbortSignal): Promise<number>;
  /** Gives the clock back (the last lease of an endpoint and time port stops its sync). */
  release(): void;
}

/**
 * Leases the clock of a caller at `endpoint`; `timeSyncPort` is the port of
 * the caller's own time server, when it was registered with one.
 */
export type LeaseClock = (endpoint: string, timeSyncPort: number | undefined) => ClockLease;

/** Where a caller is, as registered (`timeSyncPort` only when it was given). */
type CallerLocation = {
  readonly endpoint: string;
  readonly port: number;
  readonly timeSyncPort?: number;
};

/** Options for {@linkcode DataHandler}. */
export interface DataHandlerOptions {
  /** The runtime's configuration. */
  config: RuntimeConfig;
  /** Where data goes (the host's flow-controlled channel). */
  sink(item: SinkItem): void | Promise<void>;
  /** Where routing failures go (the watcher, through the host). */
  onError(error: unknown): void;
  /** Timers of the rate limit. @default {systemScheduler} */
  scheduler?: Scheduler;
  /** Milliseconds for rate limit and TTL. @default {Date.now} */
  nowMs?: () => number;
  /** This machine's clock, microseconds. @default {new SystemClock()} */
  local?: { now(): number };
  /**
   * Leases a caller's clock. The default: local time for a server runtime;
   * for a client runtime, SNTP with the caller's endpoint at its own
   * `timeSyncPort`, else at the configured one (local time with neither),
   * one client per endpoint and time port, shared by the callers there.
   */
  leaseClock?: LeaseClock;
}

interface Queued {
  value: unknown;
  callerId: CallerId | undefined;
  timestamp: number;
}

interface Pending {
  key: string;
  item: Queued;
  arrivedAt: number;
}

interface Entry {
  processor: Processor;
  queue: EventBatchQueue<Queued>;
  lease: ClockLease;
  addressKey: string;
}

/** The runtime side of event and data routing for one runtime. */
export class DataHandler implements RuntimeDataHandler<unknown, unknown> {
  readonly #config: RuntimeConfig;
  readonly #sink: DataHandlerOptions["sink"];
  readonly #onError: DataHandlerOptions["onError"];
  readonly #scheduler: Scheduler;
  readonly #nowMs: () => number;
  readonly #local: { now(): number };
  readonly #leaseClock: LeaseClock;
  readonly #entries = new Map<string, Entry>();
  readonly #byAddress = new Map<string, CallerId>();
  #pending: Pending[] = [];
  #timeServer: TimeSyncServer | undefined;
  #closed = false;
  readonly #counts = {
    received: 0,
    droppedNoCaller: 0,
    droppedUnknownCaller: 0,
  };
  readonly #retired: EventBatchQueue<Queued>[] = [];
  #routing: Promise<void> = Promise.resolve();

  /**
   * Creates the handler; a server runtime with `timeSyncPort` starts its
   * time server here.
   *
   * @param options Configuration, sink, error route, clocks.
   * @throws {TimeSyncBindError} When the time server's port cannot be bound.
   */
  constructor(options: DataHandlerOptions) {
    this.#config = options.config;
    this.#sink = options.sink;
    this.#onError = options.onError;
    this.#scheduler = options.scheduler ?? systemScheduler;
    this.#nowMs = options.nowMs ?? Date.now;
    this.#local = options.local ?? new SystemClock();
    this.#leaseClock = options.leaseClock ?? this.#defaultLease();
    const { role, timeSyncPort, timeSyncHostname } = this.#config;
    if (role === "server" && timeSyncPort !== null) {
      this.#timeServer = new TimeSyncServer({
        hostname: timeSyncHostname,
        port: timeSyncPort,
        clock: this.#local,
      });
    }
  }

  /** Client or server. */
  get role(): "client" | "server" {
    return this.#config.role;
  }

  /** The registered callers. */
  get callers(): CallerId[] {
    return [...this.#entries.values()].map((entry) => entry.processor.callerId);
  }

  /** The UDP port of a server runtime's time server, when it serves time. */
  get timeServerPort(): number | undefined {
    return this.#timeServer?.port;
  }

  /** The event counters. */
  get stats(): RuntimeEventStats {
    let delivered = 0;
    let droppedOverflow = 0;
    const queues = [...this.#retired, ...[...this.#entries.values()].map((entry) => entry.queue)];
    for (const queue of queues) {
      delivered += queue.delivered;
      droppedOverflow += queue.dropped;
    }
    return {
      received: this.#counts.received,
      delivered,
      droppedOverflow,
      droppedNoCaller: this.#counts.droppedNoCaller,
      droppedUnknownCaller: this.#counts.droppedUnknownCaller,
      pendingUnknownCaller: this.#pending.length,
    };
  }

  registerCaller(
    callerId: CallerId,
    address: CallerAddress,
  ): EndpointDataProcessor<unknown, unknown> {
    if (!(callerId instanceof CallerId)) {
      throw new TypeError(
        `Cannot register the caller as 'callerId' must be a CallerId: current value is ${
          show(callerId)
        }`,
      );
    }
    const location = resolveAddress(address);
    const { endpoint, port, timeSyncPort } = location;
    if (this.#closed) {
      throw new TypeError(
        `Cannot register caller ${callerId} as the runtime must be running: it has stopped`,
      );
    }
    const key = callerId.toString();
    const addressKey = `${endpoint}|${port}`;
    const holder = this.#byAddress.get(addressKey);
    if (holder !== undefined && !holder.equals(callerId)) {
      throw new CallerRegistrationError(callerId, { endpoint, port }, holder);
    }
    const existing = this.#entries.get(key);
    if (existing !== undefined) {
      const previous = existing.processor.address;
      if (existing.addressKey !== addressKey || previous.timeSyncPort !== timeSyncPort) {
        // Lease first: if that throws, the caller stays where it was.
        if (previous.endpoint !== endpoint || previous.timeSyncPort !== timeSyncPort) {
          const lease = this.#leaseClock(endpoint, timeSyncPort);
          existing.lease.release();
          existing.lease = lease;
        }
        this.#byAddress.delete(existing.addressKey);
        this.#byAddress.set(addressKey, callerId);
        existing.addressKey = addressKey;
        existing.processor.moveTo(location, existing.lease);
      }
      return existing.processor;
    }
    const { eventCapacity, eventOverflow, minEventIntervalMs } = this.#config;
    const queue = new EventBatchQueue<Queued>({
      capacity: eventCapacity,
      overflow: eventOverflow,
      minIntervalMs: minEventIntervalMs,
      scheduler: this.#scheduler,
      now: this.#nowMs,
    });
    const lease = this.#leaseClock(endpoint, timeSyncPort);
    const processor = new Processor(this, callerId, location, lease, queue);
    this.#entries.set(key, { processor, queue, lease, addressKey });
    this.#byAddress.set(addressKey, callerId);
    this.#flushPending(key);
    return processor;
  }

  checkForCallerId(endpoint: string, port: number): CallerId | undefined {
    return this.#byAddress.get(`${endpoint}|${port}`);
  }

  unregisterCaller(callerId: CallerId): boolean {
    if (!(callerId instanceof CallerId)) return false;
    const key = callerId.toString();
    const entry = this.#entries.get(key);
    if (entry === undefined) return false;
    this.#entries.delete(key);
    this.#byAddress.delete(entry.addressKey);
    this.#retire(entry);
    return true;
  }

  /**
   * Routes a batch of events from the caller side, in order. Resolves once
   * every event is queued (under `"block"`, once there was room).
   *
   * @param items The events (caller ids as strings, local timestamps).
   * @returns A promise that resolves when they are routed.
   */
  deliver(items: readonly EventItem[]): Promise<void> {
    const run = this.#routing.then(() => this.#route(items));
    this.#routing = run.catch(() => {});
    return run;
  }

  /** Sends one item to the sink (processors and `context.emit`). */
  send(item: SinkItem): void | Promise<void> {
    return this.#sink(item);
  }

  /**
   * Closes every caller's queue (readers get what is queued, then the end),
   * releases the clocks, drops pending events for unknown callers and stops
   * the time server. Idempotent.
   *
   * @returns A promise that resolves once the time server is closed.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#counts.droppedUnknownCaller += this.#pending.length;
    this.#pending = [];
    for (const entry of this.#entries.values()) entry.queue.close();
    for (const entry of this.#entries.values()) entry.lease.release();
    await this.#timeServer?.close();
  }

  async #route(items: readonly EventItem[]): Promise<void> {
    for (const item of items) {
      this.#counts.received++;
      const queued: Queued = {
        value: item.value,
        callerId: undefined,
        timestamp: item.timestamp ?? this.#local.now(),
      };
      if (this.#closed) {
        this.#counts.droppedNoCaller++;
        continue;
      }
      if (item.callerId === undefined) {
        if (this.#entries.size === 0) {
          this.#counts.droppedNoCaller++;
          continue;
        }
        for (const entry of [...this.#entries.values()]) {
          const waiting = this.#push(entry, queued);
          if (waiting !== undefined) await waiting;
        }
        continue;
      }
      const entry = this.#entries.get(item.callerId);
      const callerId = entry?.processor.callerId ?? CallerId.tryParse(item.callerId);
      if (callerId === null) {
        this.#counts.droppedUnknownCaller++;
        this.#onError(
          new TypeError(
            `Cannot route the event as its caller id must be a UUID: current value is ${
              show(item.callerId)
            }`,
          ),
        );
        continue;
      }
      queued.callerId = callerId;
      // The string may differ from the canonical key (e.g. in upper case).
      const target = entry ?? this.#entries.get(callerId.toString());
      if (target !== undefined) {
        const waiting = this.#push(target, queued);
        if (waiting !== undefined) await waiting;
        continue;
      }
      this.#keepForLater(callerId.toString(), queued);
    }
  }

  /** Queues `item` for `entry`; a promise only when the queue makes it wait ("block"). */
  #push(entry: Entry, item: Queued): Promise<void> | undefined {
    let queued: boolean | Promise<boolean>;
    try {
      queued = entry.queue.push(item);
    } catch (error) {
      // The "error" policy: the caller side cannot be told at this point.
      this.#onError(error);
      return undefined;
    }
    if (queued instanceof Promise) return queued.then(() => {}, (error) => this.#onError(error));
    return undefined;
  }

  #keepForLater(key: string, item: Queued): void {
    const now = this.#nowMs();
    this.#expirePending(now);
    if (this.#pending.length >= this.#config.eventCapacity) {
      this.#pending.shift();
      this.#counts.droppedUnknownCaller++;
    }
    this.#pending.push({ key, item, arrivedAt: now });
  }

  #expirePending(now: number): void {
    const ttl = this.#config.unknownCallerEventTtlMs;
    let expired = 0;
    while (expired < this.#pending.length && now - this.#pending[expired].arrivedAt > ttl) {
      expired++;
    }
    if (expired === 0) return;
    this.#pending.splice(0, expired);
    this.#counts.droppedUnknownCaller += expired;
  }

  #flushPending(key: string): void {
    if (this.#pending.length === 0) return;
    this.#expirePending(this.#nowMs());
    const entry = this.#entries.get(key)!;
    const rest: Pending[] = [];
    const mine: Queued[] = [];
    for (const pending of this.#pending) {
      if (pending.key === key) mine.push(pending.item);
      else rest.push(pending);
    }
    if (mine.length === 0) return;
    this.#pending = rest;
    // Routed in the order they came, ahead of anything routed later (even by
    // a route in progress): queued now, into the new queue, which has room
    // for them all (the pending buffer holds at most `eventCapacity`).
    for (const item of mine) void this.#push(entry, item);
  }

  #retire(entry: Entry): void {
    entry.queue.close();
    entry.lease.release();
    entry.processor.markClosed();
    // Its reader may still drain it: its counts stay live.
    this.#retired.push(entry.queue);
  }

  #defaultLease(): LeaseClock {
    const configured = this.#config.timeSyncPort;
    const local = this.#local;
    const clock: SynchronizedClock = {
      now: () => local.now(),
      sync: (micros) => micros,
      desync: (micros) => micros,
    };
    const unsynchronized: ClockLease = { clock, ready: () => Promise.resolve(0), release() {} };
    if (this.#config.role === "server") return () => unsynchronized;
    // One client per endpoint and time port: callers on one host may each
    // serve time on a port of their own.
    const clients = new Map<string, { client: TimeSyncClient; leases: number }>();
    return (endpoint, timeSyncPort) => {
      const port = timeSyncPort ?? configured;
      if (port === null) return unsynchronized;
      const key = `${port}|${endpoint}`;
      let shared = clients.get(key);
      if (shared === undefined) {
        shared = { client: new TimeSyncClient(endpoint, { port, local }), leases: 0 };
        clients.set(key, shared);
      }
      shared.leases++;
      const held = shared;
      let released = false;
      return {
        clock: held.client.clock,
        // After the start burst: its best sample, not the first one, which a
        // peer busy with a handshake can answer tens of milliseconds late.
        ready: async (signal) => {
          await deadline(held.client.ready, MAX_DELAY_MS, { signal });
          return held.client.getOffset({ signal });
        },
        release() {
          if (released) return;
          released = true;
          if (--held.leases === 0) {
            clients.delete(key);
            held.client.close().catch(() => {});
          }
        },
      };
    };
  }
}

class Processor implements EndpointDataProcessor<unknown, unknown> {
  readonly #handler: DataHandler;
  readonly callerId: CallerId;
  readonly #id: string;
  #address: CallerLocation;
  #lease: ClockLease;
  readonly #queue: EventBatchQueue<Queued>;
  #closed = false;
  #reading = false;

  constructor(
    handler: DataHandler,
    callerId: CallerId,
    address: CallerLocation,
    lease: ClockLease,
    queue: EventBatchQueue<Queued>,
  ) {
    this.#handler = handler;
    this.callerId = callerId;
    this.#id = callerId.toString();
    this.#address = Object.freeze({ ...address });
    this.#lease = lease;
    this.#queue = queue;
  }

  get address(): CallerLocation {
    return this.#address;
  }

  get clock(): SynchronizedClock {
    return this.#lease.clock;
  }

  get closed(): boolean {
    return this.#closed || this.#queue.closed;
  }

  moveTo(address: CallerLocation, lease: ClockLease): void {
    this.#address = Object.freeze({ ...address });
    this.#lease = lease;
  }

  markClosed(): void {
    this.#closed = true;
  }

  processData(value: unknown, timestamp: number, options: ProcessDataOptions = {}) {
    if (!Number.isSafeInteger(timestamp)) {
      throw new TypeError(
        `Cannot process the data as 'timestamp' must be a safe integer (microseconds): current value is ${
          show(timestamp)
        }`,
      );
    }
    const domain = options?.domain ?? "local";
    if (domain !== "local" && domain !== "synchronized") {
      throw new TypeError(
        `Cannot process the data as 'domain' must be "local" or "synchronized": current value is ${
          show(domain)
        }`,
      );
    }
    if (this.closed) {
      throw new TypeError(
        `Cannot process the data of caller ${this.#id} as it must be registered: it was deregistered or the runtime stopped`,
      );
    }
    const local = domain === "local" ? timestamp : Math.round(this.clock.desync(timestamp));
    return this.#handler.send({ value, timestamp: local, callerId: this.#id });
  }

  desynchronize(synchronizedMicros: number): number {
    return Math.round(this.clock.desync(synchronizedMicros));
  }

  clockReady(options: { signal?: AbortSignal } = {}): Promise<number> {
    return this.#lease.ready(options?.signal);
  }

  async *events(options: ProcessorEventsOptions = {}): AsyncGenerator<RuntimeEvent<unknown>[]> {
    if (this.#reading) {
      throw new TypeError(
        `Cannot read the events of caller ${this.#id} as there must be one reader at a time: there is one`,
      );
    }
    this.#reading = true;
    try {
      while (true) {
        const batch = await this.#queue.next(options?.signal);
        if (batch === undefined) return;
        const clock = this.clock;
        yield batch.map((item) => ({
          value: item.value,
          callerId: item.callerId,
          timestamp: Math.round(clock.sync(item.timestamp)),
        }));
      }
    } finally {
      this.#reading = false;
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<RuntimeEvent<unknown>[]> {
    return this.events()[Symbol.asyncIterator]();
  }

  deregister(): boolean {
    return this.#handler.unregisterCaller(this.callerId);
  }
}

function resolveAddress(address: CallerAddress): CallerLocation {
  if (address === null || typeof address !== "object") {
    throw new TypeError(
      `Cannot register the caller as 'address' must be { endpoint, port } or { peer }: current value is ${
        show(address)
      }`,
    );
  }
  const hasPeer = "peer" in address && address.peer !== undefined;
  const hasEndpoint = ("endpoint" in address && address.endpoint !== undefined) ||
    ("port" in address && address.port !== undefined);
  if (hasPeer === hasEndpoint) {
    throw new TypeError(
      `Cannot register the caller as 'address' must have either endpoint and port or peer, not both or neither: current value is ${
        show(address)
      }`,
    );
  }
  if (hasPeer) {
    const extra = (address as { timeSyncPort?: unknown }).timeSyncPort;
    if (extra !== undefined) {
      throw new TypeError(
        `Cannot register the caller as 'timeSyncPort' must come with endpoint and port, not with peer: current value is ${
          show(extra)
        }`,
      );
    }
    const peer = (address as { peer: string }).peer;
    const parsed = typeof peer === "string" ? parsePeer(peer) : undefined;
    if (parsed === undefined || parsed.port === undefined) {
      throw new TypeError(
        `Cannot register the caller as 'peer' must be a gRPC peer with an address and a port: current value is ${
          show(peer)
        }`,
      );
    }
    return { endpoint: parsed.address, port: parsed.port };
  }
  const { endpoint, port, timeSyncPort } = address as {
    endpoint: unknown;
    port: unknown;
    timeSyncPort?: unknown;
  };
  if (typeof endpoint !== "string" || endpoint === "") {
    throw new TypeError(
      `Cannot register the caller as 'endpoint' must be a non-empty string: current value is ${
        show(endpoint)
      }`,
    );
  }
  if (!Number.isSafeInteger(port) || (port as number) < 0 || (port as number) > 65_535) {
    throw new TypeError(
      `Cannot register the caller as 'port' must be an integer in 0..65535: current value is ${
        show(port)
      }`,
    );
  }
  if (timeSyncPort === undefined) return { endpoint, port: port as number };
  if (
    !Number.isSafeInteger(timeSyncPort) || (timeSyncPort as number) < 1 ||
    (timeSyncPort as number) > 65_535
  ) {
    throw new TypeError(
      `Cannot register the caller as 'timeSyncPort' must be an integer in 1..65535: current value is ${
        show(timeSyncPort)
      }`,
    );
  }
  return { endpoint, port: port as number, timeSyncPort: timeSyncPort as number };
}
