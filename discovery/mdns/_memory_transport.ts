/**
 * An in-memory stand-in for the mDNS network (private, for tests): a
 * {@linkcode MemoryNetwork} hub and the {@linkcode MemoryTransport}s attached
 * to it. Multicast reaches every open transport on the hub, the sender
 * included (like `IP_MULTICAST_LOOP`); unicast reaches the transport with that
 * address and port. Delivery is asynchronous, in sending order, and can drop
 * or duplicate datagrams on purpose.
 *
 * @module
 */

import type { Datagram, Endpoint, MdnsTransport } from "./_types.ts";
import { MDNS_PORT } from "./_types.ts";

/** What a {@linkcode MemoryNetwork} does with one delivery of a datagram. */
export type MemoryDelivery = "deliver" | "drop" | "duplicate";

/** A datagram as the hub sees it, for {@linkcode MemoryNetworkOptions.onSend} and filters. */
export interface MemoryPacket {
  /** The bytes sent (a copy; do not keep it mutated). */
  data: Uint8Array;
  /** The sender's address and port. */
  from: Endpoint;
  /** The unicast destination, or `undefined` for multicast. */
  to: Endpoint | undefined;
}

/** Options of {@linkcode MemoryNetwork}. */
export interface MemoryNetworkOptions {
  /**
   * Probability in [0, 1] that one delivery (one datagram to one receiver) is dropped.
   *
   * @default {0}
   */
  dropRate?: number;
  /**
   * Probability in [0, 1] that one delivery that is not dropped arrives twice.
   *
   * @default {0}
   */
  duplicateRate?: number;
  /**
   * The random numbers drops and duplicates are drawn from (seed it for deterministic tests).
   *
   * @default {Math.random}
   */
  random?: () => number;
  /**
   * Decides per delivery; when given, it replaces `dropRate` and `duplicateRate`.
   *
   * @default {undefined}
   */
  filter?: (packet: MemoryPacket, receiver: Endpoint) => MemoryDelivery;
  /**
   * Schedules a delivery; the callback must run later, never synchronously.
   *
   * @default {queueMicrotask}
   */
  schedule?: (deliver: () => void) => void;
  /**
   * Called synchronously for every datagram sent, before delivery.
   *
   * @default {undefined}
   */
  onSend?: (packet: MemoryPacket) => void;
}

/** Options of {@linkcode MemoryNetwork.transport}. */
export interface MemoryTransportOptions {
  /**
   * The port the transport listens on and sends from.
   *
   * @default {5353}
   */
  port?: number;
  /**
   * What {@linkcode MemoryTransport.addresses} returns.
   *
   * @default {[address]}
   */
  addresses?: string[];
  /**
   * Whether the transport receives its own multicast (`IP_MULTICAST_LOOP`).
   *
   * @default {true}
   */
  loopback?: boolean;
  /**
   * Most datagrams queued and not yet read; more are dropped (and counted), like a full
   * socket buffer.
   *
   * @default {10000}
   */
  maxQueued?: number;
}

/** Counts of a {@linkcode MemoryNetwork}. */
export interface MemoryNetworkCounters {
  /** Datagrams sent by any transport. */
  sent: number;
  /** Deliveries made (a duplicate counts twice). */
  delivered: number;
  /** Deliveries dropped by `dropRate`/`filter`, by a full queue or for lack of a receiver. */
  dropped: number;
}

function checkRate(name: string, value: number): number {
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) {
    throw new RangeError(
      `Cannot create a memory network as '${name}' must be a number in [0, 1]: current value ` +
        `is ${value}`,
    );
  }
  return value;
}

function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(
      `Cannot create a memory transport as 'port' must be an integer in 1..65535: current ` +
        `value is ${port}`,
    );
  }
  return port;
}

/**
 * A hub joining {@linkcode MemoryTransport}s, as one link joins hosts.
 *
 * @example
 * ```ts ignore
 * const network = new MemoryNetwork();
 * const a = network.transport("10.0.0.1");
 * const b = network.transport("10.0.0.2");
 * await a.send(packet); // b (and a) receive it from 10.0.0.1:5353
 * ```
 */
export class MemoryNetwork {
  readonly #transports = new Set<MemoryTransport>();
  readonly #dropRate: number;
  readonly #duplicateRate: number;
  readonly #random: () => number;
  readonly #filter: MemoryNetworkOptions["filter"];
  readonly #schedule: (deliver: () => void) => void;
  readonly #onSend: MemoryNetworkOptions["onSend"];
  readonly #counters: MemoryNetworkCounters = { sent: 0, delivered: 0, dropped: 0 };

  /** Creates an empty hub. */
  constructor(options: MemoryNetworkOptions = {}) {
    this.#dropRate = checkRate("dropRate", options.dropRate ?? 0);
    this.#duplicateRate = checkRate("duplicateRate", options.duplicateRate ?? 0);
    this.#random = options.random ?? Math.random;
    this.#filter = options.filter;
    this.#schedule = options.schedule ?? queueMicrotask;
    this.#onSend = options.onSend;
  }

  /** What the hub has sent, delivered and dropped so far (a fresh object). */
  get counters(): MemoryNetworkCounters {
    return { ...this.#counters };
  }

  /**
   * Attaches a new transport with the given address (IPv4 or IPv6 text).
   *
   * @throws {RangeError} when the address and port are already taken by an open transport.
   */
  transport(address: string, options: MemoryTransportOptions = {}): MemoryTransport {
    if (typeof address !== "string" || address === "") {
      throw new TypeError(
        `Cannot create a memory transport as 'address' must be a non-empty string: current ` +
          `value is ${JSON.stringify(address)}`,
      );
    }
    const port = checkPort(options.port ?? MDNS_PORT);
    for (const other of this.#transports) {
      if (other.endpoint.address === address && other.endpoint.port === port) {
        throw new RangeError(
          `Cannot create a memory transport as ${address}:${port} is already in use on this network`,
        );
      }
    }
    const maxQueued = options.maxQueued ?? 10_000;
    if (!Number.isInteger(maxQueued) || maxQueued < 1) {
      throw new RangeError(
        `Cannot create a memory transport as 'maxQueued' must be a positive integer: current ` +
          `value is ${maxQueued}`,
      );
    }
    const transport = new MemoryTransport(this, { address, port }, {
      addresses: [...(options.addresses ?? [address])],
      loopback: options.loopback ?? true,
      maxQueued,
    });
    this.#transports.add(transport);
    return transport;
  }

  /** Hands a datagram to the receivers; called by {@linkcode MemoryTransport.send}. */
  route(data: Uint8Array, from: MemoryTransport, to: Endpoint | undefined): void {
    const packet: MemoryPacket = { data: data.slice(), from: { ...from.endpoint }, to };
    this.#counters.sent++;
    this.#onSend?.(packet);
    const receivers = [...this.#transports].filter((transport) =>
      to === undefined
        ? transport !== from || transport.loopback
        : transport.endpoint.address === to.address && transport.endpoint.port === to.port
    );
    if (receivers.length === 0) this.#counters.dropped++;
    for (const receiver of receivers) {
      const decision = this.#decide(packet, receiver.endpoint);
      if (decision === "drop") {
        this.#counters.dropped++;
        continue;
      }
      const copies = decision === "duplicate" ? 2 : 1;
      for (let i = 0; i < copies; i++) {
        this.#schedule(() => {
          if (receiver.enqueue({ data: packet.data.slice(), from: { ...packet.from } })) {
            this.#counters.delivered++;
          } else {
            this.#counters.dropped++;
          }
        });
      }
    }
  }

  /** Detaches a closed transport. */
  detach(transport: MemoryTransport): void {
    this.#transports.delete(transport);
  }

  #decide(packet: MemoryPacket, receiver: Endpoint): MemoryDelivery {
    if (this.#filter !== undefined) return this.#filter(packet, receiver);
    if (this.#dropRate > 0 && this.#random() < this.#dropRate) return "drop";
    if (this.#duplicateRate > 0 && this.#random() < this.#duplicateRate) return "duplicate";
    return "deliver";
  }
}

interface TransportSettings {
  addresses: string[];
  loopback: boolean;
  maxQueued: number;
}

/** One host's link to a {@linkcode MemoryNetwork}; create it with {@linkcode MemoryNetwork.transport}. */
export class MemoryTransport implements MdnsTransport {
  /** This transport's address and port: the `from` of what it sends. */
  readonly endpoint: Endpoint;
  /** Whether it receives its own multicast. */
  readonly loopback: boolean;
  readonly #network: MemoryNetwork;
  readonly #addresses: string[];
  readonly #maxQueued: number;
  readonly #queue: Datagram[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  /** Use {@linkcode MemoryNetwork.transport}. */
  constructor(network: MemoryNetwork, endpoint: Endpoint, settings: TransportSettings) {
    this.#network = network;
    this.endpoint = endpoint;
    this.loopback = settings.loopback;
    this.#addresses = settings.addresses;
    this.#maxQueued = settings.maxQueued;
  }

  /** Whether {@linkcode MemoryTransport.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sends a copy of `data` to the group (every transport on the hub) or, with
   * `to`, to the one transport at that endpoint.
   *
   * @throws {Deno.errors.BadResource} once the transport is closed.
   */
  send(data: Uint8Array, to?: Endpoint): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new Deno.errors.BadResource(
          `Cannot send from the memory transport ${this.endpoint.address} as it is closed`,
        ),
      );
    }
    this.#network.route(data, this, to === undefined ? undefined : { ...to });
    return Promise.resolve();
  }

  /** The datagrams received, in order, until {@linkcode MemoryTransport.close}. One reader. */
  async *receive(): AsyncIterable<Datagram> {
    while (true) {
      const next = this.#queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.#closed) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  /** The addresses given at creation (a fresh array). */
  addresses(): string[] {
    return [...this.#addresses];
  }

  /** Stops receiving (the iterator of {@linkcode MemoryTransport.receive} ends); idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#queue.length = 0;
      this.#network.detach(this);
      this.#wakeReader();
    }
    return Promise.resolve();
  }

  /** Closes the transport. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Queues a datagram for the reader; `false` when closed or full. */
  enqueue(datagram: Datagram): boolean {
    if (this.#closed || this.#queue.length >= this.#maxQueued) return false;
    this.#queue.push(datagram);
    this.#wakeReader();
    return true;
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
