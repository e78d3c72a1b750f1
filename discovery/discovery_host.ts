/**
 * Discovery with identity: each found instance gets a stable caller id.
 *
 * @module
 */

import { CallerId } from "../rpc/caller_id.ts";
import { show } from "../rpc/_show.ts";
import {
  InstanceListener,
  type InstanceListenerClient,
  type ServiceChange,
} from "./instance_listener.ts";
import type { Mdns } from "./mdns.ts";
import type { ServiceInfo } from "./service_info.ts";

/** Receives the instances a {@linkcode DiscoveryHost} finds, with their caller ids. */
export interface DiscoveryHostClient {
  /** A new instance, or an update of a known one (same caller id). */
  onServiceAdded(info: ServiceInfo, callerId: CallerId): void | Promise<void>;
  /** The instance went away. */
  onServiceRemoved(mdnsName: string, callerId: CallerId): void | Promise<void>;
}

/** Something that browses: an {@linkcode InstanceListener} or a stand-in. */
export interface DiscoveryListener {
  /** Starts browsing; rejects when it cannot. */
  start(): Promise<void>;
  /** Stops browsing. */
  close(): Promise<void>;
}

/** Options of {@linkcode DiscoveryHost}. */
export interface DiscoveryHostOptions {
  /** The DNS-SD service type to browse, e.g. `"_sensors._tcp"`. Required unless `listenerFactory` is given. */
  serviceType?: string;
  /**
   * The mDNS participant for the default listener.
   *
   * @default {a private one}
   */
  mdns?: Mdns;
  /**
   * Builds the listener instead of an {@linkcode InstanceListener} (for tests
   * and custom sources). Exactly one of `serviceType` and `listenerFactory`.
   *
   * @default {undefined}
   */
  listenerFactory?: (client: InstanceListenerClient) => DiscoveryListener;
  /**
   * Receives what a client callback threw; events go on.
   *
   * @default {console.error}
   */
  onError?: (error: unknown) => void;
}

/**
 * Browses for instances and gives each a caller id: the one the instance
 * publishes in its TXT `id` (stable across restarts and renames), else one
 * made up per instance name (names compared without case) that lasts until
 * the instance is removed. Updates reach the client as `onServiceAdded` with
 * the same id.
 *
 * Unlike the Python original (B12), a listener that fails to start makes
 * {@linkcode DiscoveryHost.startDiscovery} reject, and the host can be
 * started again.
 *
 * @example
 * ```ts ignore
 * import { DiscoveryHost } from "@tsercom/tsercom/discovery";
 *
 * await using host = new DiscoveryHost({ serviceType: "_sensors._tcp" });
 * await host.startDiscovery({
 *   onServiceAdded(info, id) { console.log(`${id}: ${info.addresses[0]}:${info.port}`); },
 *   onServiceRemoved(name, id) { console.log(`${id} (${name}) left`); },
 * });
 * ```
 */
export class DiscoveryHost implements AsyncDisposable {
  readonly #options: DiscoveryHostOptions;
  readonly #ids = new Map<string, CallerId>();
  #client: DiscoveryHostClient | undefined;
  #listener: DiscoveryListener | undefined;

  /**
   * Prepares the host; browsing starts with {@linkcode DiscoveryHost.startDiscovery}.
   *
   * @param options The service type (or a listener factory), the participant, the error sink.
   * @throws {TypeError} When not exactly one of `serviceType` and `listenerFactory` is given.
   */
  constructor(options: DiscoveryHostOptions) {
    const given = [options?.serviceType, options?.listenerFactory].filter((v) => v !== undefined);
    if (given.length !== 1) {
      throw new TypeError(
        "Cannot create the discovery host as exactly one of 'serviceType' and 'listenerFactory' must be given",
      );
    }
    if (options.listenerFactory !== undefined && typeof options.listenerFactory !== "function") {
      throw new TypeError(
        `Cannot create the discovery host as 'listenerFactory' must be a function: current value is ${
          show(options.listenerFactory)
        }`,
      );
    }
    this.#options = options;
  }

  /** Whether discovery is running. */
  get started(): boolean {
    return this.#listener !== undefined;
  }

  /**
   * Starts browsing and reporting to `client`.
   *
   * @param client Receives the instances with their caller ids.
   * @throws {Error} (as a rejection) When already started, or the listener
   *   cannot start (the host is then left stopped and may be started again).
   */
  async startDiscovery(client: DiscoveryHostClient): Promise<void> {
    if (
      client === null || typeof client !== "object" ||
      typeof client.onServiceAdded !== "function" || typeof client.onServiceRemoved !== "function"
    ) {
      throw new TypeError(
        `Cannot start discovery as 'client' must have onServiceAdded and onServiceRemoved: current value is ${
          show(client)
        }`,
      );
    }
    if (this.#listener !== undefined) {
      throw new Error("Cannot start discovery as it is already running: stop it first");
    }
    const own: InstanceListenerClient = {
      onServiceAdded: (info) => this.#added(info),
      onServiceUpdated: (info, _changed: readonly ServiceChange[]) => this.#added(info),
      onServiceRemoved: (name) => this.#removed(name),
    };
    const { listenerFactory, serviceType, mdns, onError } = this.#options;
    const listener = listenerFactory !== undefined
      ? listenerFactory(own)
      : new InstanceListener(own, serviceType!, { mdns, onError });
    this.#client = client;
    this.#listener = listener;
    try {
      await listener.start();
    } catch (error) {
      this.#listener = undefined;
      this.#client = undefined;
      try {
        await listener.close();
      } catch {
        // The start error is the one to report.
      }
      throw error;
    }
  }

  /** Stops browsing and forgets the ids made up for instance names. Idempotent. */
  async stopDiscovery(): Promise<void> {
    const listener = this.#listener;
    this.#listener = undefined;
    this.#client = undefined;
    this.#ids.clear();
    await listener?.close();
  }

  /** The same as {@linkcode DiscoveryHost.stopDiscovery}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stopDiscovery();
  }

  async #added(info: ServiceInfo): Promise<void> {
    const client = this.#client;
    if (client === undefined) return;
    const key = info.mdnsName.toLowerCase();
    const published = info.id === undefined ? null : CallerId.tryParse(info.id);
    const id = published ?? this.#ids.get(key) ?? CallerId.random();
    this.#ids.set(key, id);
    await client.onServiceAdded(info, id);
  }

  async #removed(mdnsName: string): Promise<void> {
    const key = mdnsName.toLowerCase();
    const id = this.#ids.get(key);
    this.#ids.delete(key);
    const client = this.#client;
    if (client === undefined || id === undefined) return;
    await client.onServiceRemoved(mdnsName, id);
  }
}
