/**
 * Advertises one service instance over mDNS/DNS-SD.
 *
 * @module
 */

import { CallerId } from "../rpc/caller_id.ts";
import { show } from "../rpc/_show.ts";
import { engineOf, Mdns } from "./mdns.ts";
import { encodeTxt, normalizeServiceType } from "./_txt.ts";

/** Options of {@linkcode InstancePublisher}. */
export interface InstancePublisherOptions {
  /**
   * A human-readable name, published as TXT `name`.
   *
   * @default {undefined}
   */
  readableName?: string;
  /**
   * The instance label (the first label of the instance name). When it is
   * taken, the participant renames it `Label (2)` (see
   * {@linkcode MdnsOptions.onConflict}).
   *
   * @default {the readable name, else `tsercom-` and the start of the id}
   */
  instanceName?: string;
  /**
   * The stable caller id published as TXT `id`, so that listeners know this
   * instance across restarts and renames.
   *
   * @default {a random CallerId}
   */
  id?: CallerId | string;
  /**
   * More TXT entries (keys `name`, `published_on` and `id` are set by the
   * publisher).
   *
   * @default {{}}
   */
  txt?: Readonly<Record<string, string | null>>;
  /**
   * The mDNS participant to publish through.
   *
   * @default {a private one, opened by publish() and closed by close()}
   */
  mdns?: Mdns;
}

/**
 * Advertises a service instance (PTR, SRV, TXT and A records) under a
 * DNS-SD service type, with RFC 6762 probing, conflict renaming,
 * announcements and goodbyes.
 *
 * Differences from the Python original: the TXT record carries the stable
 * caller id (`id`) and `published_on` in UTC ISO 8601 (B15); `publish()`
 * called twice returns the same promise instead of failing (B6); the default
 * instance label is not derived from the MAC address (B4); the records use a
 * proper host name; loopback addresses are not advertised to other hosts.
 *
 * @example
 * ```ts ignore
 * import { InstancePublisher } from "@tsercom/tsercom/discovery";
 *
 * await using publisher = new InstancePublisher(50051, "_sensors._tcp", {
 *   readableName: "Sensor 7",
 * });
 * await publisher.publish();
 * console.log(publisher.instanceName); // e.g. "Sensor 7._sensors._tcp.local"
 * ```
 */
export class InstancePublisher implements AsyncDisposable {
  /** The port advertised. */
  readonly port: number;
  /** The normalised service type, e.g. `"_sensors._tcp.local"`. */
  readonly serviceType: string;
  /** The caller id published as TXT `id`. */
  readonly id: CallerId;
  /** The readable name, if any. */
  readonly readableName: string | undefined;

  readonly #label: string;
  readonly #txt: Uint8Array[];
  readonly #shared: Mdns | undefined;
  #mdns: Mdns | undefined;
  #publishing: Promise<void> | undefined;
  #instanceName: string | undefined;
  #closed = false;

  /**
   * Prepares the advertisement; nothing is sent before
   * {@linkcode InstancePublisher.publish}.
   *
   * @param port The service's port, 1..65535.
   * @param serviceType e.g. `"_sensors._tcp"` or `"_sensors._tcp.local."`.
   * @param options Readable name, instance label, id, extra TXT, participant.
   * @throws {TypeError} When an argument has the wrong type.
   * @throws {RangeError} When the port, service type, label or TXT is out of range.
   */
  constructor(port: number, serviceType: string, options: InstancePublisherOptions = {}) {
    if (typeof port !== "number" || !Number.isInteger(port)) {
      throw new TypeError(
        `Cannot create the publisher as 'port' must be an integer: current value is ${show(port)}`,
      );
    }
    if (port < 1 || port > 65_535) {
      throw new RangeError(
        `Cannot create the publisher as 'port' must be in 1..65535: current value is ${port}`,
      );
    }
    this.serviceType = normalizeServiceType(serviceType, "create the publisher");
    const { readableName, instanceName, txt = {}, mdns } = options;
    for (const [key, value] of [["readableName", readableName], ["instanceName", instanceName]]) {
      if (value !== undefined && typeof value !== "string") {
        throw new TypeError(
          `Cannot create the publisher as '${key}' must be a string: current value is ${
            show(value)
          }`,
        );
      }
    }
    this.port = port;
    this.id = options.id === undefined
      ? CallerId.random()
      : options.id instanceof CallerId
      ? options.id
      : CallerId.parse(options.id);
    this.readableName = readableName;
    const label = instanceName ?? readableName ?? `tsercom-${this.id.toString().slice(0, 8)}`;
    const labelBytes = new TextEncoder().encode(label).length;
    if (labelBytes === 0 || labelBytes > 63) {
      throw new RangeError(
        `Cannot create the publisher as the instance label must be 1 to 63 bytes: current value is ${
          JSON.stringify(label)
        } (${labelBytes} bytes)`,
      );
    }
    this.#label = label;
    const entries: Record<string, string | null> = { ...txt };
    if (readableName !== undefined) entries.name = readableName;
    entries.published_on = new Date().toISOString();
    entries.id = this.id.toString();
    this.#txt = encodeTxt(entries);
    this.#shared = mdns;
  }

  /** The full instance name once published (after any renaming), else `undefined`. */
  get instanceName(): string | undefined {
    return this.#instanceName;
  }

  /**
   * Probes for the name, renames it on a conflict, and announces the
   * records. Resolves once the first announcement is out. Calling it again
   * returns the same promise.
   *
   * @throws {Error} (as a rejection) When the participant cannot be opened,
   *   the name is taken and the participant was told to fail, or the
   *   publisher was closed.
   */
  publish(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new Error("Cannot publish as the publisher was closed: create a new one"),
      );
    }
    this.#publishing ??= (async () => {
      this.#mdns = this.#shared ?? await Mdns.open();
      const { instanceName } = await engineOf(this.#mdns).responder.register({
        instance: this.#label,
        serviceType: this.serviceType,
        port: this.port,
        txt: this.#txt,
      });
      this.#instanceName = instanceName;
    })();
    return this.#publishing;
  }

  /**
   * Sends goodbyes for the records (TTL 0) and closes the private
   * participant, if there is one. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#publishing;
    } catch {
      // Publishing failed: nothing to withdraw.
    }
    const mdns = this.#mdns;
    if (mdns === undefined) return;
    try {
      if (this.#instanceName !== undefined && !mdns.closed) {
        await engineOf(mdns).responder.unregister(this.#instanceName);
      }
    } finally {
      if (this.#shared === undefined) await mdns.close();
    }
  }

  /** The same as {@linkcode InstancePublisher.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
