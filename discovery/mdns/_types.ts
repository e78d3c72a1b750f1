/**
 * The shared vocabulary of the mDNS engine (private): DNS messages as plain
 * objects, the transport the engine talks through, and the hooks the
 * responder and the querier get from the engine.
 *
 * Names are fully qualified and written without the trailing dot
 * (`"a._x._tcp.local"`); compare them with {@linkcode nameKey}, since DNS
 * names are case-insensitive.
 *
 * @module
 */

/** The record types the engine understands. Others are decoded as `"OTHER"` and ignored. */
export type RecordType = "A" | "AAAA" | "PTR" | "SRV" | "TXT" | "NSEC";

/** A question's type: a record type or ANY (255). */
export type QuestionType = RecordType | "ANY";

/** The RDATA of an SRV record (RFC 2782). */
export interface SrvData {
  priority: number;
  weight: number;
  port: number;
  /** The host name that the A/AAAA records are owned by. */
  target: string;
}

/** The RDATA of an NSEC record as mDNS uses it (RFC 6762 §6.1): which types exist for the name. */
export interface NsecData {
  /** The owner name again (mDNS's "next domain name"). */
  nextDomain: string;
  /** The types that exist for the name. */
  types: RecordType[];
}

interface RecordBase {
  /** The owner name, without the trailing dot. */
  name: string;
  /** Time to live, seconds; 0 is a goodbye. */
  ttl: number;
  /** The cache-flush bit (RFC 6762 §10.2): this record set replaces what is cached. */
  flush: boolean;
}

/** An A record: an IPv4 address in dotted form. */
export interface ARecord extends RecordBase {
  type: "A";
  data: string;
}

/** An AAAA record: an IPv6 address in its usual text form. */
export interface AaaaRecord extends RecordBase {
  type: "AAAA";
  data: string;
}

/** A PTR record: the instance name a service type points to. */
export interface PtrRecord extends RecordBase {
  type: "PTR";
  data: string;
}

/** An SRV record. */
export interface SrvRecord extends RecordBase {
  type: "SRV";
  data: SrvData;
}

/**
 * A TXT record: its character strings, as raw bytes (`key=value` by
 * DNS-SD convention, RFC 6763 §6).
 */
export interface TxtRecord extends RecordBase {
  type: "TXT";
  data: Uint8Array[];
}

/** An NSEC record. */
export interface NsecRecord extends RecordBase {
  type: "NSEC";
  data: NsecData;
}

/** Any record the engine understands. All are class IN. */
export type MdnsRecord = ARecord | AaaaRecord | PtrRecord | SrvRecord | TxtRecord | NsecRecord;

/** A question. All are class IN. */
export interface MdnsQuestion {
  name: string;
  type: QuestionType;
  /** The QU bit (RFC 6762 §5.4): the asker would like a unicast reply. */
  unicastResponse: boolean;
}

/** A DNS message as the engine sees it. */
export interface MdnsMessage {
  /** 0 in multicast mDNS; echoed in unicast replies to legacy queriers. */
  id: number;
  /** QR: a response rather than a query. */
  response: boolean;
  /** AA: set on every mDNS response. */
  authoritative: boolean;
  /** TC: a query whose known answers continue in the next packet (RFC 6762 §7.2). */
  truncated: boolean;
  questions: MdnsQuestion[];
  answers: MdnsRecord[];
  /** In a probe: the records the prober proposes (RFC 6762 §8.2). */
  authorities: MdnsRecord[];
  additionals: MdnsRecord[];
}

/** Where a packet came from or goes to. */
export interface Endpoint {
  /** An IPv4 or IPv6 address. */
  address: string;
  port: number;
}

/** The mDNS multicast group and port. */
export const MDNS_GROUP_V4 = "224.0.0.251";
/** The IPv6 mDNS group. */
export const MDNS_GROUP_V6 = "ff02::fb";
/** The mDNS port. */
export const MDNS_PORT = 5353;

/** A datagram the transport received. */
export interface Datagram {
  data: Uint8Array;
  from: Endpoint;
}

/**
 * The engine's link to the network: a UDP socket on port 5353 joined to the
 * mDNS group (or an in-memory stand-in for tests).
 */
export interface MdnsTransport {
  /**
   * Sends one datagram: to the mDNS group when `to` is omitted, else unicast.
   * Errors are thrown (the engine counts them).
   */
  send(data: Uint8Array, to?: Endpoint): Promise<void>;
  /** The datagrams received, until {@linkcode MdnsTransport.close}; ends then. */
  receive(): AsyncIterable<Datagram>;
  /** The addresses this host advertises (never loopback to other hosts), IPv4 first. */
  addresses(): string[];
  /**
   * A fingerprint of the link's state (e.g. every address of the chosen
   * interfaces, IPv6 link-local included, which vanish while a cable is
   * out); the engine re-announces when it changes. Optional.
   */
  linkState?(): string;
  /** Stops receiving and releases the socket. */
  close(): Promise<void>;
}

/**
 * What the responder and the querier get from the engine: sending, time and
 * randomness, all injectable so that tests are deterministic.
 */
export interface EngineContext {
  /**
   * Encodes and sends a message, split into several packets when it does
   * not fit the MTU. `to` omitted: multicast.
   */
  send(message: MdnsMessage, to?: Endpoint): Promise<void>;
  /** Milliseconds, monotonic (a scheduler's or `performance.now()`). */
  now(): number;
  /** Runs `callback` after `ms` milliseconds; returns a handle for `clearTimeout`. */
  setTimeout(callback: () => void, ms: number): unknown;
  /** Cancels a timer. */
  clearTimeout(handle: unknown): void;
  /** A uniform random number in [0, 1). */
  random(): number;
  /** The addresses this host advertises now. */
  addresses(): string[];
}

/** The key two names are compared by: lower case, no trailing dot. */
export function nameKey(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/** An empty message with the given flags, ready to fill. */
export function emptyMessage(response: boolean): MdnsMessage {
  return {
    id: 0,
    response,
    authoritative: response,
    truncated: false,
    questions: [],
    answers: [],
    authorities: [],
    additionals: [],
  };
}
