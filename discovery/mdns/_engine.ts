/**
 * The mDNS engine (private): one transport, one responder, one querier. It
 * decodes every datagram once, hands the message to both, and encodes and
 * splits what they send.
 *
 * @module
 */

import { type Scheduler, systemScheduler } from "../../rpc/scheduler.ts";
import {
  decodeMessage,
  DEFAULT_MAX_PACKET_BYTES,
  encodeMessages,
  MdnsDecodeError,
} from "./_codec.ts";
import { Querier } from "./_querier.ts";
import { Responder } from "./_responder.ts";
import type { Endpoint, EngineContext, MdnsMessage, MdnsTransport } from "./_types.ts";

/** Options of {@linkcode MdnsEngine}. */
export interface MdnsEngineOptions {
  /** The network link. */
  transport: MdnsTransport;
  /** Timers; also the clock when `now` is not given and it has a `now` (ManualScheduler). */
  scheduler?: Scheduler;
  /** Milliseconds, monotonic. */
  now?: () => number;
  /** Uniform random numbers in [0, 1). */
  random?: () => number;
  /** The largest datagram to send. */
  maxPacketBytes?: number;
  /** The host name's first label (`<label>.local`). */
  hostLabel?: string;
  /** What the responder does when a name it wants is taken. */
  onConflict?: "rename" | "fail";
  /** The TTLs of published records, seconds. */
  ttl?: { host?: number; service?: number; other?: number };
  /**
   * How often to look for a change of the host's addresses, milliseconds;
   * a change is announced (RFC 6762 §8.4). 0 turns the polling off.
   */
  addressPollMs?: number;
}

/** What an engine received, dropped and sent. */
export interface MdnsEngineCounters {
  /** Datagrams received. */
  received: number;
  /** Datagrams dropped because they did not decode. */
  decodeErrors: number;
  /** Datagrams dropped because handling them threw (a bug; counted, never fatal). */
  handlerErrors: number;
  /** Datagrams sent. */
  sent: number;
  /** Datagrams that could not be sent. */
  sendErrors: number;
}

/** One mDNS participant: a responder and a querier sharing one transport. */
export class MdnsEngine {
  /** Publishes services. */
  readonly responder: Responder;
  /** Browses for services. */
  readonly querier: Querier;

  readonly #transport: MdnsTransport;
  readonly #maxPacketBytes: number;
  readonly #counters: MdnsEngineCounters = {
    received: 0,
    decodeErrors: 0,
    handlerErrors: 0,
    sent: 0,
    sendErrors: 0,
  };
  readonly #loop: Promise<void>;
  readonly #scheduler: Scheduler;
  readonly #addressPollMs: number;
  #addressTimer: unknown;
  #lastAddresses: string;
  #lastLink: string;
  /** Whether the last send failed (the link may be down). */
  #sendFailing = false;
  #closed = false;
  #closing: Promise<void> | undefined;

  /**
   * Starts an engine on `options.transport`; it receives at once.
   *
   * @param options The transport, timers, randomness, packet size, host label.
   */
  constructor(options: MdnsEngineOptions) {
    const scheduler = options.scheduler ?? systemScheduler;
    const now = options.now ??
      ("now" in scheduler && typeof (scheduler as { now: unknown }).now === "number"
        ? () => (scheduler as unknown as { now: number }).now
        : () => performance.now());
    const random = options.random ?? Math.random;
    this.#transport = options.transport;
    this.#maxPacketBytes = options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES;
    const hostLabel = options.hostLabel ?? `tsercom-${randomHex(random, 8)}`;
    const context: EngineContext = {
      send: (message, to) => this.#send(message, to),
      now,
      setTimeout: (callback, ms) => scheduler.setTimeout(callback, ms),
      clearTimeout: (handle) => scheduler.clearTimeout(handle),
      random,
      addresses: () => this.#transport.addresses(),
    };
    this.responder = new Responder(context, {
      hostLabel,
      onConflict: options.onConflict ?? "rename",
      ttl: options.ttl,
    });
    this.querier = new Querier(context);
    this.#scheduler = scheduler;
    this.#addressPollMs = options.addressPollMs ?? 5_000;
    this.#lastAddresses = this.#transport.addresses().join(",");
    this.#lastLink = this.#transport.linkState?.() ?? "";
    this.#loop = this.#receive();
    this.#pollAddresses();
  }

  /** Checks the host's addresses every addressPollMs; announces a change. */
  #pollAddresses(): void {
    if (this.#addressPollMs <= 0 || this.#closed) return;
    this.#addressTimer = this.#scheduler.setTimeout(() => {
      if (this.#closed) return;
      const now = this.#transport.addresses().join(",");
      const link = this.#transport.linkState?.() ?? "";
      try {
        if (now !== this.#lastAddresses) {
          this.#lastAddresses = now;
          this.#lastLink = link;
          this.responder.addressesChanged();
        } else if (link !== this.#lastLink) {
          this.#lastLink = link;
          this.responder.linkChanged();
        }
      } catch {
        this.#counters.handlerErrors++;
      }
      this.#pollAddresses();
    }, this.#addressPollMs);
  }

  /** The host name the responder answers for (it changes if a conflict renames it). */
  get hostName(): string {
    return this.responder.hostName;
  }

  /** The counts of datagrams received, dropped and sent (a fresh object). */
  get counters(): MdnsEngineCounters {
    return { ...this.#counters };
  }

  /** Whether {@linkcode MdnsEngine.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Says goodbye for every published record, stops browsing and closes the
   * transport. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#scheduler.clearTimeout(this.#addressTimer);
      try {
        await this.responder.close();
      } finally {
        this.querier.close();
        await this.#transport.close();
        await this.#loop;
      }
    })();
    return this.#closing;
  }

  async #send(message: MdnsMessage, to?: Endpoint): Promise<void> {
    const packets = encodeMessages(message, this.#maxPacketBytes);
    for (const packet of packets) {
      try {
        await this.#transport.send(packet, to);
        this.#counters.sent++;
        if (this.#sendFailing) {
          // Sending works again after failing: the link is probably back.
          this.#sendFailing = false;
          if (!this.#closed) this.responder.linkChanged();
        }
      } catch {
        this.#counters.sendErrors++;
        this.#sendFailing = true;
      }
    }
  }

  async #receive(): Promise<void> {
    for await (const { data, from } of this.#transport.receive()) {
      this.#counters.received++;
      let message: MdnsMessage;
      try {
        message = decodeMessage(data);
      } catch (error) {
        if (!(error instanceof MdnsDecodeError)) this.#counters.handlerErrors++;
        else this.#counters.decodeErrors++;
        continue;
      }
      try {
        this.responder.handle(message, from);
      } catch {
        this.#counters.handlerErrors++;
      }
      try {
        this.querier.handle(message, from);
      } catch {
        this.#counters.handlerErrors++;
      }
    }
  }
}

function randomHex(random: () => number, digits: number): string {
  let out = "";
  for (let k = 0; k < digits; k++) out += Math.floor(random() * 16).toString(16);
  return out;
}
