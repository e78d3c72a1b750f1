/**
 * Finds the instances of a DNS-SD service type and reports them as
 * {@linkcode ServiceInfo}s.
 *
 * @module
 */

import { show } from "../rpc/_show.ts";
import { engineOf, Mdns } from "./mdns.ts";
import type { BrowseEvent, ResolvedInstance } from "./mdns/_querier.ts";
import type { ServiceInfo } from "./service_info.ts";
import { decodeTxt, normalizeServiceType } from "./_txt.ts";
import { CallerId } from "../rpc/caller_id.ts";

/** What changed about an instance in an update. */
export type ServiceChange = "port" | "target" | "addresses" | "txt";

/** Receives the events of an {@linkcode InstanceListener}, one at a time, in order. */
export interface InstanceListenerClient {
  /** A new instance, resolved (port and at least one address known). */
  onServiceAdded(info: ServiceInfo): void | Promise<void>;
  /**
   * An instance changed its port, host, addresses or TXT. When this method
   * is absent, updates go to {@linkcode InstanceListenerClient.onServiceAdded}
   * (as in the Python original).
   */
  onServiceUpdated?(info: ServiceInfo, changed: readonly ServiceChange[]): void | Promise<void>;
  /** The instance said goodbye or its records expired. */
  onServiceRemoved(mdnsName: string, info: ServiceInfo): void | Promise<void>;
}

/** Options of {@linkcode InstanceListener}. */
export interface InstanceListenerOptions {
  /**
   * The mDNS participant to browse through.
   *
   * @default {a private one, opened by start() and closed by close()}
   */
  mdns?: Mdns;
  /**
   * Receives what a client callback threw or rejected with; events go on.
   *
   * @default {console.error}
   */
  onError?: (error: unknown) => void;
}

/**
 * Browses for a service type (RFC 6762 continuous querying, a TTL-honouring
 * cache, goodbyes) and calls its client for each instance added, updated and
 * removed. Callbacks run one at a time, in event order: the next waits for
 * the promise of the previous (the Python original ran them detached, out of
 * order, and lost their errors: B10).
 *
 * @example
 * ```ts ignore
 * import { InstanceListener } from "@tsercom/tsercom/discovery";
 *
 * await using listener = new InstanceListener({
 *   onServiceAdded(info) { console.log("added", info.name, info.addresses, info.port); },
 *   onServiceRemoved(name) { console.log("removed", name); },
 * }, "_sensors._tcp");
 * await listener.start();
 * ```
 */
export class InstanceListener implements AsyncDisposable {
  /** The normalised service type. */
  readonly serviceType: string;

  readonly #client: InstanceListenerClient;
  readonly #shared: Mdns | undefined;
  readonly #onError: (error: unknown) => void;
  #mdns: Mdns | undefined;
  #browse: { close(): void } | undefined;
  #starting: Promise<void> | undefined;
  #closed = false;
  #chain: Promise<void> = Promise.resolve();
  /** The instances (lower-case names) the client was told about and not told gone. */
  readonly #reported = new Set<string>();

  /**
   * Prepares a listener; browsing starts with {@linkcode InstanceListener.start}.
   *
   * @param client Receives the events.
   * @param serviceType e.g. `"_sensors._tcp"`.
   * @param options The participant and the error sink.
   * @throws {TypeError} When the client lacks its methods or the type is not a string.
   * @throws {RangeError} When the service type is malformed.
   */
  constructor(
    client: InstanceListenerClient,
    serviceType: string,
    options: InstanceListenerOptions = {},
  ) {
    if (
      client === null || typeof client !== "object" ||
      typeof client.onServiceAdded !== "function" || typeof client.onServiceRemoved !== "function"
    ) {
      throw new TypeError(
        `Cannot create the listener as 'client' must have onServiceAdded and onServiceRemoved: current value is ${
          show(client)
        }`,
      );
    }
    this.serviceType = normalizeServiceType(serviceType, "create the listener");
    this.#client = client;
    this.#shared = options.mdns;
    this.#onError = options.onError ?? ((error) => console.error(error));
  }

  /**
   * Starts browsing. Calling it again returns the same promise.
   *
   * @throws {Error} (as a rejection) When the participant cannot be opened
   *   or the listener was closed.
   */
  start(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new Error("Cannot start the listener as it was closed"));
    }
    this.#starting ??= (async () => {
      this.#mdns = this.#shared ?? await Mdns.open();
      if (this.#closed) return;
      this.#browse = engineOf(this.#mdns).querier.browse(
        this.serviceType,
        (event) => this.#enqueue(event),
      );
    })();
    return this.#starting;
  }

  /** Stops browsing, waits for the callbacks under way, closes a private participant. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#starting;
    } catch {
      // Starting failed: nothing to stop.
    }
    this.#browse?.close();
    await this.#chain;
    if (this.#shared === undefined && this.#mdns !== undefined) await this.#mdns.close();
  }

  /** The same as {@linkcode InstanceListener.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #enqueue(event: BrowseEvent): void {
    if (this.#closed) return;
    const info = toServiceInfo(event.instance);
    const key = info.mdnsName.toLowerCase();
    const known = this.#reported.has(key);
    // An instance is reported only while it has an address one can connect to.
    let kind: "added" | "updated" | "removed" | undefined;
    if (event.kind === "removed" || info.addresses.length === 0) {
      kind = known ? "removed" : undefined;
    } else kind = known ? (event.kind === "updated" ? "updated" : undefined) : "added";
    if (kind === undefined) return;
    if (kind === "removed") this.#reported.delete(key);
    else this.#reported.add(key);
    const changed = event.kind === "updated" ? event.changed : [];
    const client = this.#client;
    this.#chain = this.#chain.then(async () => {
      try {
        if (kind === "added") await client.onServiceAdded(info);
        else if (kind === "removed") await client.onServiceRemoved(info.mdnsName, info);
        else if (client.onServiceUpdated !== undefined) {
          await client.onServiceUpdated(info, changed);
        } else await client.onServiceAdded(info);
      } catch (error) {
        this.#onError(error);
      }
    });
  }
}

/** Turns a resolved instance into the public record. */
function toServiceInfo(instance: ResolvedInstance): ServiceInfo {
  const txt = decodeTxt(instance.txt);
  const id = typeof txt.id === "string" ? CallerId.tryParse(txt.id)?.toString() : undefined;
  return {
    name: typeof txt.name === "string" && txt.name !== "" ? txt.name : instance.name,
    port: instance.port,
    // An IPv6 link-local address means nothing without its interface (zone).
    addresses: instance.addresses.filter((address) => !/^fe[89ab][0-9a-f]:/i.test(address)),
    mdnsName: instance.name,
    txt,
    id,
  };
}
