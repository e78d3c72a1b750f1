/**
 * Turns discovered service instances into connections, one per caller id.
 *
 * @module
 */

import { show } from "../rpc/_show.ts";
import type { CallerId } from "../rpc/caller_id.ts";
import type { ClosableConnection as Closable } from "../rpc/reconnecting_client.ts";
import { type Scheduler, systemScheduler } from "../rpc/scheduler.ts";
import type { DiscoveryHostClient } from "./discovery_host.ts";
import type { ServiceInfo } from "./service_info.ts";

/** Opens connections to a service: the addresses in order of preference and the port. */
export interface ConnectionFactory<C extends Closable> {
  /**
   * Connects to one of `addresses` on `port`, or rejects.
   *
   * @param addresses The instance's addresses.
   * @param port The instance's port.
   * @param signal Aborted when the connection is no longer wanted.
   */
  connect(addresses: readonly string[], port: number, signal: AbortSignal): Promise<C>;
}

/** Why a {@linkcode ServiceConnector} let go of a channel. */
export type DisconnectReason = "removed" | "moved" | "failed" | "stopped";

/** Receives the channels of a {@linkcode ServiceConnector}. */
export interface ServiceConnectorClient<C extends Closable> {
  /** A channel to a discovered instance is ready. The channel now belongs to the client. */
  onChannelConnected(info: ServiceInfo, callerId: CallerId, channel: C): void | Promise<void>;
  /**
   * The connector no longer tracks this channel: the instance was removed
   * (`"removed"`), moved to another address or port and is being
   * reconnected (`"moved"`, the connector closes the old channel), was
   * marked failed (`"failed"`), or the connector stopped (`"stopped"`).
   */
  onChannelDisconnected?(
    info: ServiceInfo,
    callerId: CallerId,
    reason: DisconnectReason,
  ): void | Promise<void>;
}

/** Where a connector gets its instances from: a {@linkcode DiscoveryHost} or a stand-in. */
export interface ServiceSource {
  /** Starts reporting instances to `client`. */
  startDiscovery(client: DiscoveryHostClient): Promise<void>;
  /** Stops reporting. */
  stopDiscovery(): Promise<void>;
}

/** Options of {@linkcode ServiceConnector}. */
export interface ServiceConnectorOptions {
  /**
   * The first retry delay after a failed connect, in milliseconds; it
   * doubles up to `maxRetryDelayMs`, with full jitter.
   *
   * @default {500}
   */
  initialRetryDelayMs?: number;
  /**
   * The longest retry delay, in milliseconds.
   *
   * @default {30000}
   */
  maxRetryDelayMs?: number;
  /**
   * Timers for the retry delays.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
  /**
   * Uniform random numbers in [0, 1) for the jitter.
   *
   * @default {Math.random}
   */
  random?: () => number;
  /**
   * Receives connection failures and client callback errors; retries go on.
   *
   * @default {console.error}
   */
  onError?: (error: unknown) => void;
}

interface Entry<C> {
  info: ServiceInfo;
  callerId: CallerId;
  state: "connecting" | "waiting" | "connected";
  channel: C | undefined;
  abort: AbortController;
  timer: unknown;
  attempt: number;
}

/**
 * Keeps one connection per discovered caller id (spec §2.7 and §9.2, with
 * B18-B20 fixed): an id is marked as connecting before the connect is
 * awaited, so overlapping events never open two channels; a failed connect
 * is retried with exponential backoff and jitter while the instance is still
 * present; an instance that moves to another address or port is reconnected;
 * a removed instance is reported to the client; {@linkcode ServiceConnector.markClientFailed}
 * reconnects at once if the instance is still known.
 *
 * @example
 * ```ts ignore
 * import { DiscoveryHost, ServiceConnector } from "@tsercom/tsercom/discovery";
 * import { connectChannel } from "@tsercom/tsercom/rpc";
 *
 * const connector = new ServiceConnector({
 *   onChannelConnected(info, id, channel) { console.log("connected", id.toString(), channel.target); },
 * }, {
 *   connect: (addresses, port, signal) =>
 *     connectChannel(addresses, port, { security: { mode: "insecure" }, signal }),
 * }, new DiscoveryHost({ serviceType: "_sensors._tcp" }));
 * await connector.start();
 * ```
 */
export class ServiceConnector<C extends Closable> implements AsyncDisposable {
  readonly #client: ServiceConnectorClient<C>;
  readonly #factory: ConnectionFactory<C>;
  readonly #source: ServiceSource;
  readonly #initialDelay: number;
  readonly #maxDelay: number;
  readonly #scheduler: Scheduler;
  readonly #random: () => number;
  readonly #onError: (error: unknown) => void;
  /** By caller id string. */
  readonly #entries = new Map<string, Entry<C>>();
  #started = false;

  /**
   * Creates a connector; nothing happens before {@linkcode ServiceConnector.start}.
   *
   * @param client Receives the channels.
   * @param factory Opens a channel to an instance.
   * @param source Reports instances with their caller ids.
   * @param options Retry timing, scheduler, randomness, error sink.
   */
  constructor(
    client: ServiceConnectorClient<C>,
    factory: ConnectionFactory<C>,
    source: ServiceSource,
    options: ServiceConnectorOptions = {},
  ) {
    if (client === null || typeof client?.onChannelConnected !== "function") {
      throw new TypeError(
        `Cannot create the connector as 'client' must have onChannelConnected: current value is ${
          show(client)
        }`,
      );
    }
    if (factory === null || typeof factory?.connect !== "function") {
      throw new TypeError(
        `Cannot create the connector as 'factory' must have connect: current value is ${
          show(factory)
        }`,
      );
    }
    if (
      source === null || typeof source?.startDiscovery !== "function" ||
      typeof source.stopDiscovery !== "function"
    ) {
      throw new TypeError(
        `Cannot create the connector as 'source' must have startDiscovery and stopDiscovery: current value is ${
          show(source)
        }`,
      );
    }
    this.#client = client;
    this.#factory = factory;
    this.#source = source;
    this.#initialDelay = options.initialRetryDelayMs ?? 500;
    this.#maxDelay = options.maxRetryDelayMs ?? 30_000;
    if (!(this.#initialDelay > 0 && this.#maxDelay >= this.#initialDelay)) {
      throw new RangeError(
        `Cannot create the connector as the retry delays must satisfy 0 < initialRetryDelayMs <= maxRetryDelayMs: current values are ${this.#initialDelay} and ${this.#maxDelay}`,
      );
    }
    this.#scheduler = options.scheduler ?? systemScheduler;
    this.#random = options.random ?? Math.random;
    this.#onError = options.onError ?? ((error) => console.error(error));
  }

  /** The caller ids with a channel, connecting or waiting to retry. */
  get tracked(): string[] {
    return [...this.#entries.keys()];
  }

  /** Starts discovery; instances found from now on are connected. */
  async start(): Promise<void> {
    if (this.#started) throw new Error("Cannot start the connector as it is already running");
    this.#started = true;
    try {
      await this.#source.startDiscovery({
        onServiceAdded: (info, callerId) => this.onServiceAdded(info, callerId),
        onServiceRemoved: (name, callerId) => this.onServiceRemoved(name, callerId),
      });
    } catch (error) {
      this.#started = false;
      throw error;
    }
  }

  /**
   * An instance appeared or changed. Connects unless its caller id already
   * has a channel (or one on the way) to the same address and port.
   *
   * @param info The instance.
   * @param callerId Its caller id.
   */
  onServiceAdded(info: ServiceInfo, callerId: CallerId): void {
    if (!this.#started) return;
    const key = callerId.toString();
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      const moved = entry.info.port !== info.port ||
        entry.info.addresses.join(",") !== info.addresses.join(",");
      entry.info = info;
      if (!moved) return;
      // Moved: drop what we have (or are trying) and connect to the new place.
      this.#drop(entry, "moved");
    }
    this.#connect(this.#newEntry(info, callerId));
  }

  /**
   * An instance went away: stops trying, tells the client.
   *
   * @param _mdnsName The instance name.
   * @param callerId Its caller id.
   */
  onServiceRemoved(_mdnsName: string, callerId: CallerId): void {
    const entry = this.#entries.get(callerId.toString());
    if (entry !== undefined) this.#drop(entry, "removed");
  }

  /**
   * The client found the channel of `callerId` broken: forget it and, if the
   * instance is still present, connect again at once. Unknown ids are ignored.
   *
   * @param callerId The caller id whose channel failed.
   */
  markClientFailed(callerId: CallerId): void {
    const entry = this.#entries.get(callerId.toString());
    if (entry === undefined) return;
    const info = entry.info;
    this.#drop(entry, "failed");
    if (this.#started) this.#connect(this.#newEntry(info, callerId));
  }

  /** Stops discovery and every attempt; tells the client about each channel it had. */
  async stop(): Promise<void> {
    this.#started = false;
    for (const entry of [...this.#entries.values()]) this.#drop(entry, "stopped");
    await this.#source.stopDiscovery();
  }

  /** The same as {@linkcode ServiceConnector.stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #newEntry(info: ServiceInfo, callerId: CallerId): Entry<C> {
    const entry: Entry<C> = {
      info,
      callerId,
      state: "connecting",
      channel: undefined,
      abort: new AbortController(),
      timer: undefined,
      attempt: 0,
    };
    this.#entries.set(callerId.toString(), entry);
    return entry;
  }

  /** Forgets an entry: cancels its attempt or timer; a connected one is reported. */
  #drop(entry: Entry<C>, reason: DisconnectReason): void {
    if (this.#entries.get(entry.callerId.toString()) === entry) {
      this.#entries.delete(entry.callerId.toString());
    }
    entry.abort.abort();
    if (entry.timer !== undefined) this.#scheduler.clearTimeout(entry.timer);
    if (entry.state === "connected") {
      if (reason === "moved") void this.#close(entry.channel!);
      this.#notify(() => this.#client.onChannelDisconnected?.(entry.info, entry.callerId, reason));
    }
  }

  #connect(entry: Entry<C>): void {
    entry.state = "connecting";
    entry.attempt++;
    const { info, abort } = entry;
    this.#factory.connect(info.addresses, info.port, abort.signal).then(
      (channel) => {
        if (abort.signal.aborted || this.#entries.get(entry.callerId.toString()) !== entry) {
          void this.#close(channel); // nobody wants it any more
          return;
        }
        entry.state = "connected";
        entry.channel = channel;
        entry.attempt = 0;
        this.#notify(() => this.#client.onChannelConnected(info, entry.callerId, channel));
      },
      (error) => {
        if (abort.signal.aborted || this.#entries.get(entry.callerId.toString()) !== entry) return;
        this.#onError(error);
        entry.state = "waiting";
        const ceiling = Math.min(this.#maxDelay, this.#initialDelay * 2 ** (entry.attempt - 1));
        const delay = Math.max(1, Math.round(ceiling * this.#random()));
        entry.timer = this.#scheduler.setTimeout(() => {
          entry.timer = undefined;
          if (!abort.signal.aborted) this.#connect(entry);
        }, delay);
      },
    );
  }

  async #close(channel: C): Promise<void> {
    try {
      await channel.close();
    } catch (error) {
      this.#onError(error);
    }
  }

  #notify(call: () => void | Promise<void>): void {
    try {
      const result = call();
      if (result instanceof Promise) result.catch((error) => this.#onError(error));
    } catch (error) {
      this.#onError(error);
    }
  }
}
