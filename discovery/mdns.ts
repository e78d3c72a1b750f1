/**
 * A handle on this process's mDNS participant: one UDP socket on port 5353,
 * shared by every publisher and listener given it.
 *
 * @module
 */

import { MdnsEngine } from "./mdns/_engine.ts";
import { UdpMdnsTransport } from "./mdns/_udp_transport.ts";

/** Options of {@linkcode Mdns.open}. */
export interface MdnsOptions {
  /**
   * The IPv4 addresses of the interfaces to use.
   *
   * @default {every non-loopback IPv4 interface that is up; loopback when there is none}
   */
  interfaces?: string[];
  /**
   * When a name we publish is taken: `"rename"` to `Name (2)`, `Name (3)`, …
   * (RFC 6762 §9), or `"fail"` so that `publish()` rejects.
   *
   * @default {"rename"}
   */
  onConflict?: "rename" | "fail";
  /**
   * The TTLs, in seconds, of the records published through this
   * participant: `host` for A/AAAA, `service` for SRV, `other` for PTR and
   * TXT. Listeners forget a host that vanished without a goodbye when they
   * run out, so short TTLs notice a pulled cable sooner, at the cost of
   * more refresh traffic.
   *
   * @default {{ host: 120, service: 120, other: 4500 }}
   */
  ttl?: { host?: number; service?: number; other?: number };
}

/** What an {@linkcode Mdns} received, dropped and sent. */
export interface MdnsCounters {
  /** Datagrams received. */
  received: number;
  /** Datagrams dropped because they were not valid mDNS messages. */
  decodeErrors: number;
  /** Datagrams whose handling failed (counted, never fatal). */
  handlerErrors: number;
  /** Datagrams sent. */
  sent: number;
  /** Datagrams that could not be sent. */
  sendErrors: number;
}

const engines = new WeakMap<Mdns, MdnsEngine>();

/**
 * This process's mDNS participant (RFC 6762): it answers for the services
 * published through it and browses for the ones listened for. Open one and
 * pass it to every {@linkcode InstancePublisher} and
 * {@linkcode InstanceListener} of the process; those given none open a
 * private one each.
 *
 * @example
 * ```ts ignore
 * import { InstancePublisher, Mdns } from "@tsercom/tsercom/discovery";
 *
 * await using mdns = await Mdns.open();
 * await using publisher = new InstancePublisher(50051, "_sensors._tcp", { mdns });
 * await publisher.publish();
 * ```
 */
export class Mdns implements AsyncDisposable {
  private constructor() {}

  /**
   * Opens the mDNS socket (port 5353, shared with other responders such as
   * avahi) and starts answering and browsing.
   *
   * @param options The interfaces to use and the conflict policy.
   * @returns The participant; close it when done.
   */
  static async open(options: MdnsOptions = {}): Promise<Mdns> {
    const transport = await UdpMdnsTransport.open({ interfaces: options.interfaces });
    return wrapEngine(
      new MdnsEngine({ transport, onConflict: options.onConflict, ttl: options.ttl }),
    );
  }

  /** The host name this participant answers for, e.g. `"tsercom-1a2b3c4d.local"`. */
  get hostName(): string {
    return engineOf(this).hostName;
  }

  /** The counts of datagrams received, dropped and sent (a fresh object). */
  get counters(): MdnsCounters {
    return engineOf(this).counters;
  }

  /** Whether {@linkcode Mdns.close} was called. */
  get closed(): boolean {
    return engineOf(this).closed;
  }

  /**
   * Sends goodbyes for everything published, stops browsing and closes the
   * socket. Idempotent.
   */
  close(): Promise<void> {
    return engineOf(this).close();
  }

  /** The same as {@linkcode Mdns.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Wraps an engine (for tests over an in-memory transport). Not part of the public API. */
export function wrapEngine(engine: MdnsEngine): Mdns {
  const mdns = new (Mdns as unknown as new () => Mdns)();
  engines.set(mdns, engine);
  return mdns;
}

/** The engine behind an {@linkcode Mdns}. Not part of the public API. */
export function engineOf(mdns: Mdns): MdnsEngine {
  const engine = engines.get(mdns);
  if (engine === undefined) {
    throw new TypeError(
      "Cannot use the mDNS participant as it was not made by Mdns.open: pass the result of Mdns.open",
    );
  }
  return engine;
}
