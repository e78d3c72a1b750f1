/**
 * The mDNS responder (private): publishes DNS-SD services (RFC 6763) the way
 * RFC 6762 asks — probing, conflict resolution and renaming, announcing,
 * answering queries with known-answer suppression, goodbyes — through an
 * {@linkcode EngineContext}, so that every packet and every timer can be
 * driven by a test.
 *
 * Records published for a service with instance label `I`, type `T` (for
 * example `_x._tcp.local`), port `P`, on host label `H`:
 *
 * | Record | Owner | RDATA | Kind | TTL (default) |
 * |---|---|---|---|---|
 * | PTR | `T` | `I.T` | shared | `ttl.other` (4500 s) |
 * | SRV | `I.T` | 0 0 `P` `H.local` | unique (cache-flush) | `ttl.service` (120 s) |
 * | TXT | `I.T` | the strings (one empty string when none) | unique | `ttl.other` (4500 s) |
 * | PTR | `_services._dns-sd._udp.local` | `T` | shared | `ttl.other` (4500 s) |
 * | A / AAAA | `H.local` | each address of the host | unique | `ttl.host` (120 s) |
 *
 * Names follow `_types.ts` (no trailing dot) with the escapes of `_records.ts`:
 * a dot inside the instance label is written `\.`.
 *
 * @module
 */

import {
  compareProbeRecords,
  escapeLabel,
  formatIpv6,
  ipv4Bytes,
  ipv6Bytes,
  MAX_LABEL_BYTES,
  MAX_TXT_STRING_BYTES,
  nameWireBytes,
  recordKey,
} from "./_records.ts";
import {
  emptyMessage,
  type Endpoint,
  type EngineContext,
  MDNS_PORT,
  type MdnsMessage,
  type MdnsQuestion,
  type MdnsRecord,
  nameKey,
  type RecordType,
} from "./_types.ts";

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/** A DNS-SD service to publish with {@linkcode Responder.register}. */
export interface ServiceRegistration {
  /**
   * The instance label, as users read it (`"Sensor 7"`): any UTF-8 text of
   * 1..63 bytes, spaces and dots included. It may be renamed `"Sensor 7 (2)"`
   * on a conflict.
   */
  instance: string;
  /** The service type, `_name._tcp.local` or `_name._udp.local` (a trailing dot is allowed). */
  serviceType: string;
  /** The port the service listens on (0..65535). */
  port: number;
  /**
   * The TXT strings (`key=value` by DNS-SD convention), each at most 255 bytes.
   *
   * @default {[]} (published as one empty string, RFC 6763 §6.1)
   */
  txt?: readonly Uint8Array[];
}

/** The TTLs, in seconds, of the records the responder publishes. */
export interface ResponderTtls {
  /**
   * A and AAAA records of the host name (and the host's NSEC).
   *
   * @default {120}
   */
  host?: number;
  /**
   * SRV records (and the instance's NSEC).
   *
   * @default {120}
   */
  service?: number;
  /**
   * PTR and TXT records.
   *
   * @default {4500}
   */
  other?: number;
}

/** Options of {@linkcode Responder}. */
export interface ResponderOptions {
  /**
   * The first label of the host name: the host is `<hostLabel>.local`. 1..63
   * bytes, no dots. On a conflict the host is renamed `<hostLabel>-2`,
   * `<hostLabel>-3`, … (whatever `onConflict` says: a host name is ours to
   * choose and no registration can do without one).
   */
  hostLabel: string;
  /**
   * What to do when a service's instance name is taken on the link: `"rename"`
   * tries `"Name (2)"`, `"Name (3)"`, … ; `"fail"` rejects the registration
   * with {@linkcode MdnsConflictError} (or, after it succeeded, withdraws the
   * service and calls `onWithdrawn`).
   *
   * @default {"rename"}
   */
  onConflict?: "rename" | "fail";
  /**
   * Record TTLs in seconds.
   *
   * @default {{ host: 120, service: 120, other: 4500 }}
   */
  ttl?: ResponderTtls;
  /**
   * How many unsolicited announcements to send (RFC 6762 §8.3: 2..8).
   *
   * @default {3}
   */
  announcements?: number;
  /**
   * Milliseconds between the first and the second announcement; each later
   * interval doubles (RFC 6762 §8.3 asks for one second). Shorter values are
   * for tests that want to mirror the Python original (225 ms).
   *
   * @default {1000}
   */
  announceIntervalMs?: number;
  /**
   * Called when a service whose registration had already succeeded was renamed
   * after a later conflict (RFC 6762 §9).
   *
   * @default {undefined}
   */
  onRenamed?: (from: string, to: string) => void;
  /**
   * Called when a service whose registration had already succeeded was
   * withdrawn after a later conflict, with `onConflict: "fail"`.
   *
   * @default {undefined}
   */
  onWithdrawn?: (instanceName: string, error: MdnsConflictError) => void;
}

/** What {@linkcode Responder.register} resolves with. */
export interface RegisteredService {
  /** The full instance name after any renaming (`Sensor 7 (2)._x._tcp.local`, escaped). */
  instanceName: string;
}

/** What a {@linkcode Responder} sent, received and decided (a snapshot). */
export interface ResponderCounters {
  /** Probe queries sent. */
  probes: number;
  /** Announcement packets sent (unsolicited responses). */
  announcements: number;
  /** Responses to queries sent by multicast. */
  multicastResponses: number;
  /** Responses to queries sent by unicast to a querier on port 5353 (QU questions). */
  unicastResponses: number;
  /** Legacy unicast responses (RFC 6762 §6.7: queries from a port other than 5353). */
  legacyResponses: number;
  /** Goodbye packets sent (records with TTL 0). */
  goodbyes: number;
  /** Conflicts detected, while probing or later (RFC 6762 §8.1, §9). */
  conflicts: number;
  /** Simultaneous probes lost on the tie-break, so that probing restarted after 1 s (§8.2). */
  probeDeferrals: number;
  /** Renames of an instance or of the host name after a conflict. */
  renames: number;
  /** Answers left out because the querier listed them as known answers (§7.1, §7.2). */
  knownAnswerSuppressions: number;
  /** Answers not multicast because the same record was multicast less than 1 s before (§6.2). */
  rateLimited: number;
  /** Our own records seen with less than half their TTL, and so announced again (§6.6). */
  reannouncements: number;
  /** Received messages that concerned none of our names (nothing done). */
  ignored: number;
  /** Messages that `EngineContext.send` failed to send. */
  sendErrors: number;
}

/**
 * The error {@linkcode Responder.register} rejects with when the instance
 * name is taken and `onConflict` is `"fail"`.
 */
export class MdnsConflictError extends Error {
  /** The full instance name that is taken. */
  readonly instanceName: string;

  /**
   * Creates the error.
   *
   * @param instanceName The full instance name that is taken.
   * @param detail Where the conflict was seen.
   */
  constructor(instanceName: string, detail: string) {
    super(
      `Cannot register ${
        JSON.stringify(instanceName)
      } as the name must be unique on the link: ${detail}`,
    );
    this.name = "MdnsConflictError";
    this.instanceName = instanceName;
  }
}

/** The error pending and later registrations fail with once the responder is closed. */
export class ResponderClosedError extends Error {
  /**
   * Creates the error.
   *
   * @param action What could not be done (`register "Sensor._x._tcp.local"`).
   */
  constructor(action: string) {
    super(`Cannot ${action} as the responder is closed`);
    this.name = "ResponderClosedError";
  }
}

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/** RFC 6762 §8.1: probes are 250 ms apart, and probing ends 250 ms after the third. */
const PROBE_INTERVAL_MS = 250;
/** RFC 6762 §8.1: three probes. */
const PROBE_COUNT = 3;
/** RFC 6762 §8.1: the random wait before the first probe is 0..250 ms. */
const PROBE_INITIAL_WAIT_MS = 250;
/** RFC 6762 §8.2: the loser of a simultaneous probe waits one second. */
const PROBE_DEFER_MS = 1000;
/** RFC 6762 §8.1: after 15 conflicts in 10 s, wait 5 s before each probe attempt. */
const CONFLICT_LIMIT = 15;
const CONFLICT_WINDOW_MS = 10_000;
const CONFLICT_BACKOFF_MS = 5000;
/** RFC 6762 §6.2: a record is multicast at most once per second… */
const MULTICAST_MIN_INTERVAL_MS = 1000;
/** …except when defending a name against a probe: once per 250 ms. */
const DEFENCE_MIN_INTERVAL_MS = 250;
/** RFC 6762 §6: shared answers wait 20..120 ms. */
const SHARED_DELAY_MIN_MS = 20;
const SHARED_DELAY_SPAN_MS = 100;
/** RFC 6762 §7.2: a truncated query's answers wait 400..500 ms for more known answers. */
const TRUNCATED_DELAY_MIN_MS = 400;
/** RFC 6762 §6.7: legacy unicast answers carry a TTL of at most 10 s. */
const LEGACY_MAX_TTL = 10;
/** Goodbyes are sent twice, this far apart (RFC 6762 §10.1 asks for one). */
const GOODBYE_REPEATS = 2;
const GOODBYE_INTERVAL_MS = 125;
/** DNS-SD service type enumeration (RFC 6763 §9). */
const SERVICES_NAME = "_services._dns-sd._udp.local";
const MAX_TTL = 2_147_483_647;

const encoder = new TextEncoder();

// ---------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------

type HostState = "idle" | "probing" | "announced";

interface Service {
  readonly baseLabel: string;
  label: string;
  /** The number of the next rename: " (n)". */
  nextSuffix: number;
  readonly type: string;
  readonly port: number;
  readonly txt: Uint8Array[];
  /** `probing`: in a probe run; `waiting`: probed, waiting for the host name; `announced`: live. */
  state: "probing" | "waiting" | "announced";
  /** Whether its registration has succeeded (its records went out at least once). */
  registered: boolean;
  /** Every name it has had (name keys), so that `unregister` accepts an old one. */
  readonly names: Set<string>;
  pending?: {
    resolve: (value: RegisteredService) => void;
    reject: (error: unknown) => void;
  };
  signal?: AbortSignal;
  onAbort?: () => void;
}

interface ProbeRun {
  host: boolean;
  readonly services: Set<Service>;
  /** Probes sent in the current attempt. */
  sent: number;
  timer: unknown;
}

interface Announcement {
  readonly host: boolean;
  readonly services: Set<Service>;
  sent: number;
  timer: unknown;
}

/** A record we own, and whether it is unique (cache-flush) or shared. */
interface Entry {
  readonly record: MdnsRecord;
  readonly key: string;
  readonly unique: boolean;
}

interface PendingAnswer {
  /** The queriers (endpoint keys) still wanting it; empty means unsolicited. */
  readonly requesters: Set<string>;
  /** The least interval since its last multicast for it to go out. */
  minInterval: number;
}

interface PendingResponse {
  readonly to: Endpoint | undefined;
  readonly answers: Map<string, PendingAnswer>;
  due: number;
  timer: unknown;
}

// ---------------------------------------------------------------------------
// The responder
// ---------------------------------------------------------------------------

/**
 * Publishes DNS-SD services on one mDNS link, following RFC 6762 and 6763.
 *
 * - **Probing** (§8.1): 0..250 ms after a registration, three probe queries
 *   250 ms apart ask for the instance name (and, the first time, the host
 *   name) with type ANY, the QU bit on the first, and the proposed SRV, TXT
 *   and A/AAAA records in the authority section. Probing succeeds 250 ms
 *   after the third probe.
 * - **Conflicts**: a response with a record for a name being probed, other
 *   than a goodbye and other than our own proposal, is a conflict; a probe
 *   from another host for the same name is settled with the tie-break of §8.2
 *   (the loser waits 1 s and probes again). A conflict renames the instance
 *   `"Name (2)"`, `"Name (3)"`… (or fails the registration with
 *   {@linkcode MdnsConflictError}); the host is renamed `label-2`, … After 15
 *   conflicts in 10 s, each new attempt waits 5 s. After announcing, a
 *   response with a different record of one of our unique types for one of
 *   our unique names makes that name probe again (§9).
 * - **Announcing** (§8.3): 3 unsolicited multicast responses (configurable),
 *   1 s then 2 s apart, with every record in the answer section and the
 *   cache-flush bit on unique ones. `register` resolves after the first.
 * - **Answering** (§6): questions match by name (case-insensitive) and type
 *   (or ANY). Known answers with at least half the TTL are left out (§7.1,
 *   and §7.2 for known answers that follow in later packets from the same
 *   querier). QU questions get a unicast reply when the record was multicast
 *   within a quarter of its TTL, else a multicast one (§5.4). Queries from a
 *   port other than 5353 get a legacy unicast reply at once: the query's id
 *   and questions, TTL ≤ 10 s, no cache-flush bit (§6.7). Otherwise answers
 *   are multicast — at once when all are unique, after 20..120 ms when one
 *   is shared (400..500 ms for a truncated query) — aggregated, and never
 *   the same record twice within 1 s (250 ms when defending against a
 *   probe; §6.2). Additional records: SRV, TXT and addresses for a PTR
 *   answer; addresses for an SRV answer; the other address family for an
 *   address answer (RFC 6763 §12, RFC 6762 §6.2). A question for a type one
 *   of our unique names does not have gets an NSEC answer (§6.1).
 * - **Cooperation** (§6.6, §7.4): our own record seen from elsewhere with
 *   less than half its TTL (a goodbye included) is announced again; a
 *   pending answer that another responder sends first, with at least our
 *   TTL, is dropped.
 * - **Goodbyes** (§10.1): on `unregister` and `close`, the records go out with
 *   TTL 0 (and no cache-flush bit), twice, 125 ms apart.
 * - **Address changes** (§8.4): {@linkcode Responder.addressesChanged} says
 *   goodbye to vanished addresses and announces the new set.
 *
 * Responses (not queries) from a port other than 5353 are ignored (§11).
 *
 * @example
 * ```ts ignore
 * const responder = new Responder(context, { hostLabel: "tsercom-1a2b3c4d" });
 * const { instanceName } = await responder.register({
 *   instance: "Sensor 7",
 *   serviceType: "_tsercom._tcp.local",
 *   port: 50051,
 *   txt: [new TextEncoder().encode("name=Sensor 7")],
 * });
 * // … engine: responder.handle(message, from) for every received message …
 * await responder.unregister(instanceName);
 * await responder.close();
 * ```
 */
export class Responder {
  readonly #ctx: EngineContext;
  readonly #baseHostLabel: string;
  #hostLabel: string;
  #nextHostSuffix = 2;
  #hostState: HostState = "idle";
  /** The host label last announced, to re-announce SRV records after a host rename. */
  #announcedHostLabel: string | undefined;
  #hostEverAnnounced = false;
  #addresses: string[];
  readonly #onConflict: "rename" | "fail";
  readonly #ttlHost: number;
  readonly #ttlService: number;
  readonly #ttlOther: number;
  readonly #announceCount: number;
  readonly #announceInterval: number;
  readonly #onRenamed: ((from: string, to: string) => void) | undefined;
  readonly #onWithdrawn: ((name: string, error: MdnsConflictError) => void) | undefined;

  readonly #services = new Set<Service>();
  readonly #runs = new Set<ProbeRun>();
  readonly #announcements = new Set<Announcement>();
  readonly #pending = new Map<string, PendingResponse>();
  /** Record key → when it was last multicast (ms). */
  readonly #lastMulticast = new Map<string, number>();
  readonly #conflictTimes: number[] = [];
  readonly #goodbyes = new Set<Promise<void>>();
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #counters: ResponderCounters = {
    probes: 0,
    announcements: 0,
    multicastResponses: 0,
    unicastResponses: 0,
    legacyResponses: 0,
    goodbyes: 0,
    conflicts: 0,
    probeDeferrals: 0,
    renames: 0,
    knownAnswerSuppressions: 0,
    rateLimited: 0,
    reannouncements: 0,
    ignored: 0,
    sendErrors: 0,
  };

  /**
   * Creates a responder; it sends nothing until a service is registered.
   *
   * @param ctx Sending, time, randomness and the host's addresses.
   * @param options The host label, the conflict policy, TTLs, announcements.
   * @throws {TypeError} When an option has the wrong type.
   * @throws {RangeError} When an option is out of range.
   */
  constructor(ctx: EngineContext, options: ResponderOptions) {
    if (ctx === null || typeof ctx !== "object") {
      throw new TypeError(
        `Cannot create a responder as 'ctx' must be an EngineContext: current value is ${
          String(ctx)
        }`,
      );
    }
    if (options === null || typeof options !== "object") {
      throw new TypeError(
        `Cannot create a responder as 'options' must be an object: current value is ${
          String(options)
        }`,
      );
    }
    this.#ctx = ctx;
    this.#baseHostLabel = checkHostLabel(options.hostLabel);
    this.#hostLabel = this.#baseHostLabel;
    const onConflict = options.onConflict ?? "rename";
    if (onConflict !== "rename" && onConflict !== "fail") {
      throw new RangeError(
        `Cannot create a responder as 'onConflict' must be "rename" or "fail": current value is ${
          show(onConflict)
        }`,
      );
    }
    this.#onConflict = onConflict;
    const ttl = options.ttl ?? {};
    this.#ttlHost = checkTtl(ttl.host, 120, "ttl.host");
    this.#ttlService = checkTtl(ttl.service, 120, "ttl.service");
    this.#ttlOther = checkTtl(ttl.other, 4500, "ttl.other");
    this.#announceCount = checkInteger(options.announcements, 3, 2, 8, "announcements");
    this.#announceInterval = checkInteger(
      options.announceIntervalMs,
      1000,
      1,
      3_600_000,
      "announceIntervalMs",
    );
    this.#onRenamed = checkCallback(options.onRenamed, "onRenamed");
    this.#onWithdrawn = checkCallback(options.onWithdrawn, "onWithdrawn");
    this.#addresses = this.#readAddresses();
  }

  /** The host name the SRV records point to (`<label>.local`; it changes after a host rename). */
  get hostName(): string {
    return `${escapeLabel(this.#hostLabel)}.local`;
  }

  /** The full names of the services whose registration has succeeded and that are live. */
  get services(): string[] {
    return [...this.#services].filter((s) => s.registered).map((s) => this.#name(s));
  }

  /** Whether {@linkcode Responder.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** What the responder sent, received and decided so far (a fresh object). */
  get counters(): ResponderCounters {
    return { ...this.#counters };
  }

  /**
   * Publishes a service: probes for its name (renaming it on a conflict),
   * then announces it.
   *
   * @param service The instance label, type, port and TXT strings.
   * @param signal Aborts the registration while it is probing; it has no
   *   effect once the registration has succeeded (use
   *   {@linkcode Responder.unregister}).
   * @returns The full instance name, after any renaming, once probing
   *   succeeded and the first announcement was sent.
   * @throws {TypeError} When a field of `service` has the wrong type.
   * @throws {RangeError} When a field of `service` is out of range.
   * @throws {MdnsConflictError} With `onConflict: "fail"`, when the name is taken.
   * @throws {ResponderClosedError} When the responder is or gets closed first.
   */
  register(service: ServiceRegistration, signal?: AbortSignal): Promise<RegisteredService> {
    let entry: Service;
    try {
      entry = checkRegistration(service);
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        throw new TypeError(
          `Cannot register a service as 'signal' must be an AbortSignal: current value is ${
            show(signal)
          }`,
        );
      }
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#closed) {
      return Promise.reject(
        new ResponderClosedError(`register ${JSON.stringify(this.#name(entry))}`),
      );
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    // A name one of our own services has is a conflict found without asking.
    if (this.#localNameTaken(this.#name(entry), entry)) {
      if (this.#onConflict === "fail") {
        return Promise.reject(
          new MdnsConflictError(this.#name(entry), "this responder already publishes it"),
        );
      }
      this.#renameLocally(entry);
    }
    entry.names.add(nameKey(this.#name(entry)));
    const result = new Promise<RegisteredService>((resolve, reject) => {
      entry.pending = { resolve, reject };
    });
    if (signal !== undefined) {
      entry.signal = signal;
      entry.onAbort = () => this.#abortRegistration(entry, signal.reason);
      signal.addEventListener("abort", entry.onAbort, { once: true });
    }
    this.#services.add(entry);
    if (this.#hostState === "idle") {
      this.#hostState = "probing";
      this.#addresses = this.#readAddresses();
      this.#startRun(true, [entry], this.#probeWait());
    } else {
      const joinable = this.#hostState === "probing"
        ? [...this.#runs].find((run) => run.host && run.sent === 0)
        : undefined;
      if (joinable !== undefined) joinable.services.add(entry);
      else this.#startRun(false, [entry], this.#probeWait());
    }
    return result;
  }

  /**
   * Withdraws a registered service: its PTR, SRV and TXT records (and the
   * service-type enumeration PTR when it was the last of its type) are sent
   * with TTL 0. The name is free again at once: registering it again right
   * away probes and announces it anew.
   *
   * @param instanceName The full name `register` resolved with (or a later
   *   one after a rename), case-insensitive.
   * @returns Once the goodbyes were sent.
   * @throws {RangeError} When no registered service has that name, or its
   *   registration is still in progress (abort it through its signal).
   * @throws {ResponderClosedError} When the responder is closed (its goodbyes were sent).
   */
  async unregister(instanceName: string): Promise<void> {
    if (this.#closed) throw new ResponderClosedError(`unregister ${show(instanceName)}`);
    const key = typeof instanceName === "string" ? nameKey(instanceName) : "";
    const service = [...this.#services].find((s) => s.names.has(key));
    if (service === undefined || !service.registered) {
      const names = this.services;
      throw new RangeError(
        service === undefined
          ? `Cannot unregister ${
            show(instanceName)
          } as it must be a registered service: current services are ${JSON.stringify(names)}`
          : `Cannot unregister ${
            show(instanceName)
          } as its registration is still in progress: abort it through its AbortSignal`,
      );
    }
    const records = this.#serviceRecords(service);
    this.#removeService(service);
    if (!this.#typeStillPublished(service.type)) {
      records.push(this.#enumerationRecord(service.type));
    }
    await this.#goodbye(records);
  }

  /**
   * Handles one received message, query or response. Never throws for odd
   * input: what does not concern our names is ignored.
   *
   * @param message The decoded message.
   * @param from Where it came from.
   */
  handle(message: MdnsMessage, from: Endpoint): void {
    if (this.#closed) return;
    if (message.response) this.#handleResponse(message, from);
    else this.#handleQuery(message, from);
  }

  /**
   * Re-reads `ctx.addresses()`; when the set changed and the host name is
   * announced, says goodbye to the vanished addresses and announces the
   * current ones (RFC 6762 §8.4). While the host name is probing, the next
   * probes carry the new addresses.
   */
  addressesChanged(): void {
    if (this.#closed) return;
    const next = this.#readAddresses();
    if (sameList(next, this.#addresses)) return;
    const before = this.#hostRecords();
    this.#addresses = next;
    if (this.#hostState !== "announced") return;
    const after = new Set(this.#hostRecords().map((r) => recordKey(r)));
    const vanished = before.filter((r) => !after.has(recordKey(r)));
    if (vanished.length > 0) void this.#goodbye(vanished);
    if (after.size > 0) void this.#startAnnouncement(true, new Set());
  }

  /**
   * Announces every announced record again, host and services (RFC 6762
   * §8.3), for when the link came back (a cable plugged in again): hosts
   * that forgot us while we were away learn of us at once instead of at
   * their next query, which may be an hour away. Our names are not probed
   * again; a conflict that arose meanwhile is caught by the answers as
   * usual (§9).
   */
  linkChanged(): void {
    if (this.#closed || this.#hostState !== "announced") return;
    const services = new Set([...this.#services].filter((s) => s.state === "announced"));
    void this.#startAnnouncement(true, services);
  }

  /**
   * Sends goodbyes for every record published, cancels every timer and
   * rejects registrations in progress with {@linkcode ResponderClosedError}.
   * Idempotent.
   *
   * @returns Once every goodbye was sent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Same as {@linkcode Responder.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    this.#closed = true;
    const records: MdnsRecord[] = [];
    if (this.#hostEverAnnounced) records.push(...this.#hostRecords());
    const types = new Set<string>();
    for (const service of this.#services) {
      if (service.registered) {
        records.push(...this.#serviceRecords(service));
        types.add(service.type);
      } else {
        this.#settleRejected(
          service,
          new ResponderClosedError(`register ${JSON.stringify(this.#name(service))}`),
        );
      }
    }
    for (const type of types) records.push(this.#enumerationRecord(type));
    for (const run of this.#runs) this.#ctx.clearTimeout(run.timer);
    this.#runs.clear();
    for (const announcement of this.#announcements) this.#ctx.clearTimeout(announcement.timer);
    this.#announcements.clear();
    for (const pending of this.#pending.values()) this.#ctx.clearTimeout(pending.timer);
    this.#pending.clear();
    this.#services.clear();
    if (records.length > 0) void this.#goodbye(records);
    while (this.#goodbyes.size > 0) await Promise.all([...this.#goodbyes]);
  }

  // -------------------------------------------------------------------------
  // Names and records
  // -------------------------------------------------------------------------

  #name(service: Service): string {
    return `${escapeLabel(service.label)}.${service.type}`;
  }

  #readAddresses(): string[] {
    let raw: unknown;
    try {
      raw = this.#ctx.addresses();
    } catch {
      return [];
    }
    if (!Array.isArray(raw)) return [];
    const out: string[] = [];
    for (const address of raw) {
      const canonical = canonicalAddress(address);
      if (canonical !== undefined && !out.includes(canonical)) out.push(canonical);
    }
    return out;
  }

  #hostRecords(ttl = this.#ttlHost): MdnsRecord[] {
    const name = this.hostName;
    return this.#addresses.map((address): MdnsRecord =>
      address.includes(":")
        ? { name, type: "AAAA", ttl, flush: true, data: address }
        : { name, type: "A", ttl, flush: true, data: address }
    );
  }

  /** SRV and TXT: the unique records of an instance. */
  #uniqueServiceRecords(service: Service): MdnsRecord[] {
    const name = this.#name(service);
    return [
      {
        name,
        type: "SRV",
        ttl: this.#ttlService,
        flush: true,
        data: { priority: 0, weight: 0, port: service.port, target: this.hostName },
      },
      { name, type: "TXT", ttl: this.#ttlOther, flush: true, data: [...service.txt] },
    ];
  }

  /** PTR, SRV and TXT of an instance. */
  #serviceRecords(service: Service): MdnsRecord[] {
    return [
      {
        name: service.type,
        type: "PTR",
        ttl: this.#ttlOther,
        flush: false,
        data: this.#name(service),
      },
      ...this.#uniqueServiceRecords(service),
    ];
  }

  #enumerationRecord(type: string): MdnsRecord {
    return { name: SERVICES_NAME, type: "PTR", ttl: this.#ttlOther, flush: false, data: type };
  }

  #typeStillPublished(type: string): boolean {
    const key = nameKey(type);
    return [...this.#services].some((s) => s.registered && nameKey(s.type) === key);
  }

  /** Every record we answer for now: established names only. */
  #established(): Entry[] {
    const out: Entry[] = [];
    const seen = new Set<string>();
    const add = (record: MdnsRecord, unique: boolean) => {
      const key = recordKey(record);
      if (seen.has(key)) return;
      seen.add(key);
      out.push({ record, key, unique });
    };
    if (this.#hostState === "announced") { for (const r of this.#hostRecords()) add(r, true); }
    for (const service of this.#services) {
      if (service.state !== "announced") continue;
      const [ptr, srv, txt] = this.#serviceRecords(service);
      add(ptr, false);
      add(srv, true);
      add(txt, true);
      add(this.#enumerationRecord(service.type), false);
    }
    return out;
  }

  /** Our established unique names, with the types each has (for NSEC). */
  #uniqueNames(): Map<string, { name: string; types: RecordType[]; ttl: number }> {
    const out = new Map<string, { name: string; types: RecordType[]; ttl: number }>();
    if (this.#hostState === "announced") {
      const types: RecordType[] = [];
      if (this.#addresses.some((a) => !a.includes(":"))) types.push("A");
      if (this.#addresses.some((a) => a.includes(":"))) types.push("AAAA");
      out.set(nameKey(this.hostName), { name: this.hostName, types, ttl: this.#ttlHost });
    }
    for (const service of this.#services) {
      if (service.state !== "announced") continue;
      const name = this.#name(service);
      out.set(nameKey(name), { name, types: ["TXT", "SRV"], ttl: this.#ttlService });
    }
    return out;
  }

  /** The names of a probe run and the records we propose for each, by name key. */
  #proposed(run: ProbeRun): Map<string, { name: string; records: MdnsRecord[] }> {
    const out = new Map<string, { name: string; records: MdnsRecord[] }>();
    if (run.host) {
      out.set(nameKey(this.hostName), { name: this.hostName, records: this.#hostRecords() });
    }
    for (const service of run.services) {
      const name = this.#name(service);
      out.set(nameKey(name), { name, records: this.#uniqueServiceRecords(service) });
    }
    return out;
  }

  #localNameTaken(name: string, except: Service): boolean {
    const key = nameKey(name);
    for (const service of this.#services) {
      if (service !== except && nameKey(this.#name(service)) === key) return true;
    }
    return false;
  }

  /** Gives `service` its next " (n)" label that none of our services uses. */
  #renameLocally(service: Service): void {
    do {
      service.label = suffixedLabel(service.baseLabel, ` (${service.nextSuffix++})`);
    } while (this.#localNameTaken(this.#name(service), service));
  }

  // -------------------------------------------------------------------------
  // Probing
  // -------------------------------------------------------------------------

  /** The wait before a probe attempt: 0..250 ms, or 5 s after too many conflicts (§8.1). */
  #probeWait(): number {
    if (this.#tooManyConflicts()) return CONFLICT_BACKOFF_MS;
    return Math.floor(this.#ctx.random() * PROBE_INITIAL_WAIT_MS);
  }

  /** Whether 15 conflicts (or lost tie-breaks) happened in the last 10 s. */
  #tooManyConflicts(): boolean {
    const now = this.#ctx.now();
    while (
      this.#conflictTimes.length > 0 && now - this.#conflictTimes[0] >= CONFLICT_WINDOW_MS
    ) {
      this.#conflictTimes.shift();
    }
    return this.#conflictTimes.length >= CONFLICT_LIMIT;
  }

  #noteConflict(): void {
    this.#counters.conflicts++;
    this.#conflictTimes.push(this.#ctx.now());
  }

  #startRun(host: boolean, services: Service[], wait: number): ProbeRun {
    const run: ProbeRun = { host, services: new Set(services), sent: 0, timer: undefined };
    for (const service of services) service.state = "probing";
    this.#runs.add(run);
    run.timer = this.#ctx.setTimeout(() => this.#probeStep(run), wait);
    return run;
  }

  #restartRun(run: ProbeRun, wait: number): void {
    this.#ctx.clearTimeout(run.timer);
    run.sent = 0;
    run.timer = this.#ctx.setTimeout(() => this.#probeStep(run), wait);
  }

  #cancelRun(run: ProbeRun): void {
    this.#ctx.clearTimeout(run.timer);
    this.#runs.delete(run);
  }

  #probeStep(run: ProbeRun): void {
    run.timer = undefined;
    if (this.#closed || !this.#runs.has(run)) return;
    if (run.sent >= PROBE_COUNT) {
      this.#probeSucceeded(run);
      return;
    }
    const message = emptyMessage(false);
    for (const { name, records } of this.#proposed(run).values()) {
      message.questions.push({ name, type: "ANY", unicastResponse: run.sent === 0 });
      message.authorities.push(...records);
    }
    run.sent++;
    this.#counters.probes++;
    void this.#send(message);
    run.timer = this.#ctx.setTimeout(() => this.#probeStep(run), PROBE_INTERVAL_MS);
  }

  #probeSucceeded(run: ProbeRun): void {
    this.#runs.delete(run);
    const services = new Set<Service>();
    if (run.host) {
      this.#hostState = "announced";
      this.#hostEverAnnounced = true;
      const renamed = this.#announcedHostLabel !== undefined &&
        this.#announcedHostLabel !== this.#hostLabel;
      this.#announcedHostLabel = this.#hostLabel;
      for (const service of this.#services) {
        if (service.state === "waiting" || (renamed && service.state === "announced")) {
          service.state = "announced";
          services.add(service);
        }
      }
    }
    for (const service of run.services) {
      if (this.#hostState === "announced") {
        service.state = "announced";
        services.add(service);
      } else {
        service.state = "waiting";
      }
    }
    if (!run.host && services.size === 0) return;
    // Announce in registration order.
    const ordered = new Set([...this.#services].filter((s) => services.has(s)));
    const first = this.#startAnnouncement(run.host, ordered);
    for (const service of ordered) {
      service.registered = true;
      if (service.pending === undefined) continue;
      void first.then(() => this.#settleResolved(service));
    }
  }

  /** A conflict for names of a probe run (§8.1): rename (or fail) and probe again. */
  #probeConflicts(run: ProbeRun, host: boolean, services: Set<Service>): void {
    if (host) {
      this.#noteConflict();
      this.#counters.renames++;
      this.#hostLabel = suffixedLabel(this.#baseHostLabel, `-${this.#nextHostSuffix++}`);
    }
    for (const service of services) {
      this.#noteConflict();
      const oldName = this.#name(service);
      if (this.#onConflict === "fail") {
        const error = new MdnsConflictError(oldName, "another host answered for it while probing");
        run.services.delete(service);
        const wasRegistered = service.registered;
        const records = wasRegistered ? this.#serviceRecords(service) : [];
        this.#removeService(service);
        if (wasRegistered) {
          if (!this.#typeStillPublished(service.type)) {
            records.push(this.#enumerationRecord(service.type));
          }
          void this.#goodbye(records);
          this.#notifyWithdrawn(oldName, error);
        } else {
          this.#settleRejected(service, error);
        }
        continue;
      }
      this.#counters.renames++;
      // Our old PTR may be cached as pointing at the old name: withdraw it.
      if (service.registered) void this.#goodbye([this.#serviceRecords(service)[0]]);
      this.#renameLocally(service);
      service.names.add(nameKey(this.#name(service)));
      if (service.registered) this.#notifyRenamed(oldName, this.#name(service));
    }
    if (run.services.size === 0 && (!run.host || this.#abandonHost())) {
      this.#cancelRun(run);
      return;
    }
    this.#restartRun(run, this.#probeWait());
  }

  /** When a host-only run has no service left to serve and the host was never live, stop it. */
  #abandonHost(): boolean {
    if (this.#hostEverAnnounced || this.#services.size > 0) return false;
    this.#hostState = "idle";
    return true;
  }

  #removeService(service: Service): void {
    this.#services.delete(service);
    for (const run of this.#runs) {
      if (!run.services.delete(service)) continue;
      if (run.services.size === 0 && (!run.host || this.#abandonHost())) this.#cancelRun(run);
    }
    for (const key of this.#serviceRecords(service).map((r) => recordKey(r))) {
      this.#lastMulticast.delete(key);
    }
    if (service.signal !== undefined && service.onAbort !== undefined) {
      service.signal.removeEventListener("abort", service.onAbort);
    }
  }

  #abortRegistration(service: Service, reason: unknown): void {
    if (service.pending === undefined || !this.#services.has(service)) return;
    this.#removeService(service);
    this.#settleRejected(service, reason);
  }

  #settleResolved(service: Service): void {
    const pending = service.pending;
    if (pending === undefined) return;
    service.pending = undefined;
    if (service.signal !== undefined && service.onAbort !== undefined) {
      service.signal.removeEventListener("abort", service.onAbort);
    }
    pending.resolve({ instanceName: this.#name(service) });
  }

  #settleRejected(service: Service, error: unknown): void {
    const pending = service.pending;
    if (pending === undefined) return;
    service.pending = undefined;
    if (service.signal !== undefined && service.onAbort !== undefined) {
      service.signal.removeEventListener("abort", service.onAbort);
    }
    pending.reject(error);
  }

  #notifyRenamed(from: string, to: string): void {
    try {
      this.#onRenamed?.(from, to);
    } catch {
      // A throwing callback must not break the responder.
    }
  }

  #notifyWithdrawn(name: string, error: MdnsConflictError): void {
    try {
      this.#onWithdrawn?.(name, error);
    } catch {
      // A throwing callback must not break the responder.
    }
  }

  /** A conflict for a live name (§9): probe it again. */
  #reprobeHost(): void {
    this.#noteConflict();
    this.#hostState = "probing";
    this.#startRun(true, [], this.#probeWait());
  }

  #reprobeService(service: Service): void {
    this.#noteConflict();
    this.#startRun(false, [service], this.#probeWait());
  }

  // -------------------------------------------------------------------------
  // Announcing and goodbyes
  // -------------------------------------------------------------------------

  /** Starts a series of announcements; resolves once the first was sent. */
  #startAnnouncement(host: boolean, services: Set<Service>): Promise<void> {
    const announcement: Announcement = { host, services, sent: 0, timer: undefined };
    this.#announcements.add(announcement);
    return this.#announceStep(announcement);
  }

  #announceStep(announcement: Announcement): Promise<void> {
    announcement.timer = undefined;
    if (this.#closed || !this.#announcements.has(announcement)) return Promise.resolve();
    const answers: MdnsRecord[] = [];
    const additionals: MdnsRecord[] = [];
    const hostLive = this.#hostState === "announced";
    if (announcement.host && hostLive) answers.push(...this.#hostRecords());
    const types = new Set<string>();
    for (const service of announcement.services) {
      if (service.state !== "announced" || !this.#services.has(service)) continue;
      answers.push(...this.#serviceRecords(service));
      if (!types.has(nameKey(service.type))) {
        types.add(nameKey(service.type));
        answers.push(this.#enumerationRecord(service.type));
      }
    }
    if (answers.length === 0) {
      this.#announcements.delete(announcement);
      return Promise.resolve();
    }
    if (!announcement.host && hostLive) additionals.push(...this.#hostRecords());
    announcement.sent++;
    if (announcement.sent < this.#announceCount) {
      announcement.timer = this.#ctx.setTimeout(
        () => void this.#announceStep(announcement),
        this.#announceInterval * 2 ** (announcement.sent - 1),
      );
    } else {
      this.#announcements.delete(announcement);
    }
    this.#counters.announcements++;
    const message = emptyMessage(true);
    message.answers = answers;
    message.additionals = additionals;
    this.#noteMulticast([...answers, ...additionals]);
    return this.#send(message);
  }

  /** Sends `records` with TTL 0, {@link GOODBYE_REPEATS} times; resolves after the last. */
  #goodbye(records: MdnsRecord[]): Promise<void> {
    const answers = dedupe(records).map((r) => ({ ...r, ttl: 0, flush: false }) as MdnsRecord);
    for (const r of answers) this.#lastMulticast.delete(recordKey(r));
    const done = new Promise<void>((resolve) => {
      const step = (left: number) => {
        this.#counters.goodbyes++;
        const message = emptyMessage(true);
        message.answers = answers;
        const sending = this.#send(message);
        if (left <= 1) {
          void sending.then(resolve);
          return;
        }
        this.#ctx.setTimeout(() => step(left - 1), GOODBYE_INTERVAL_MS);
      };
      step(GOODBYE_REPEATS);
    });
    this.#goodbyes.add(done);
    void done.then(() => this.#goodbyes.delete(done));
    return done;
  }

  #send(message: MdnsMessage, to?: Endpoint): Promise<void> {
    try {
      return Promise.resolve(this.#ctx.send(message, to)).catch(() => {
        this.#counters.sendErrors++;
      });
    } catch {
      this.#counters.sendErrors++;
      return Promise.resolve();
    }
  }

  #noteMulticast(records: MdnsRecord[]): void {
    const now = this.#ctx.now();
    for (const record of records) this.#lastMulticast.set(recordKey(record), now);
  }

  // -------------------------------------------------------------------------
  // Responses received: conflicts and cooperation
  // -------------------------------------------------------------------------

  #handleResponse(message: MdnsMessage, from: Endpoint): void {
    if (from?.port !== MDNS_PORT) {
      this.#counters.ignored++;
      return;
    }
    let acted = false;
    const received = [...(message.answers ?? []), ...(message.additionals ?? [])];
    // Probing (§8.1): any record for a name being probed, other than ours, is a conflict.
    for (const run of [...this.#runs]) {
      const proposed = this.#proposed(run);
      const conflicted = new Set<string>();
      for (const record of received) {
        const key = safeNameKey(record);
        const ours = key === undefined ? undefined : proposed.get(key)?.records;
        if (key === undefined || ours === undefined || conflicted.has(key)) continue;
        acted = true;
        if (record.ttl === 0) continue; // a goodbye gives the name up
        const theirs = safeRecordKey(record);
        if (theirs === undefined) continue;
        if (ours.some((r) => recordKey(r) === theirs)) continue;
        conflicted.add(key);
      }
      if (conflicted.size === 0) continue;
      const host = run.host && conflicted.has(nameKey(this.hostName));
      const services = new Set(
        [...run.services].filter((s) => conflicted.has(nameKey(this.#name(s)))),
      );
      this.#probeConflicts(run, host, services);
    }
    // Live names (§9, §6.6, §7.4).
    const established = this.#established();
    const byKey = new Map(established.map((e) => [e.key, e]));
    const uniqueNames = this.#uniqueNames();
    const conflicted = new Set<string>();
    const reannounce: Entry[] = [];
    for (const record of received) {
      const theirs = safeRecordKey(record);
      if (theirs === undefined) continue;
      const mine = byKey.get(theirs);
      if (mine !== undefined) {
        acted = true;
        if (record.ttl < mine.record.ttl / 2) reannounce.push(mine);
        else if (record.ttl >= mine.record.ttl) this.#dropPendingMulticast(mine.key);
        continue;
      }
      const key = nameKey(record.name);
      const unique = uniqueNames.get(key);
      if (unique === undefined) continue;
      acted = true;
      if (record.ttl === 0 || record.type === "NSEC") continue;
      if (!unique.types.includes(record.type)) continue;
      conflicted.add(key);
    }
    if (reannounce.length > 0) {
      this.#counters.reannouncements += reannounce.length;
      this.#scheduleAnswers(undefined, reannounce, "", {
        delay: this.#delayFor(reannounce, false),
        minInterval: MULTICAST_MIN_INTERVAL_MS,
      });
    }
    if (conflicted.has(nameKey(this.hostName)) && this.#hostState === "announced") {
      this.#reprobeHost();
    }
    for (const service of [...this.#services]) {
      if (service.state === "announced" && conflicted.has(nameKey(this.#name(service)))) {
        this.#reprobeService(service);
      }
    }
    if (!acted) this.#counters.ignored++;
  }

  #dropPendingMulticast(key: string): void {
    const pending = this.#pending.get(MULTICAST);
    if (pending === undefined || !pending.answers.delete(key)) return;
    if (pending.answers.size === 0) this.#dropPending(MULTICAST);
  }

  // -------------------------------------------------------------------------
  // Queries received
  // -------------------------------------------------------------------------

  #handleQuery(message: MdnsMessage, from: Endpoint): void {
    if (from === null || typeof from !== "object") return;
    const legacy = from.port !== MDNS_PORT;
    const source = endpointKey(from);
    const known = knownAnswers(message.answers ?? []);
    let acted = this.#applyKnownAnswers(known, source);
    const authorities = message.authorities ?? [];
    const questions = message.questions ?? [];
    if (!legacy && authorities.length > 0 && this.#tieBreak(questions, authorities)) acted = true;

    const established = this.#established();
    const uniqueNames = this.#uniqueNames();
    const probe = authorities.length > 0;
    const now = this.#ctx.now();
    const unicast = new Map<string, Entry>();
    const multicast = new Map<string, Entry>();
    let defence = false;
    for (const question of questions) {
      const key = safeQuestionKey(question);
      if (key === undefined) continue;
      const matches = established.filter((e) =>
        nameKey(e.record.name) === key &&
        (question.type === "ANY" || question.type === e.record.type)
      );
      const unique = uniqueNames.get(key);
      if (matches.length === 0 && unique !== undefined && question.type !== "ANY") {
        const nsec: MdnsRecord = {
          name: unique.name,
          type: "NSEC",
          ttl: unique.ttl,
          flush: true,
          data: { nextDomain: unique.name, types: unique.types },
        };
        matches.push({ record: nsec, key: recordKey(nsec), unique: true });
      }
      if (matches.length > 0) acted = true;
      if (probe && unique !== undefined) defence = true;
      for (const entry of matches) {
        const knownTtl = known.get(entry.key);
        if (knownTtl !== undefined && knownTtl >= entry.record.ttl / 2) {
          this.#counters.knownAnswerSuppressions++;
          continue;
        }
        const last = this.#lastMulticast.get(entry.key);
        const recent = last !== undefined && now - last <= entry.record.ttl * 1000 / 4;
        if (legacy || (question.unicastResponse && recent)) unicast.set(entry.key, entry);
        else multicast.set(entry.key, entry);
      }
    }
    if (!acted) {
      this.#counters.ignored++;
      return;
    }
    if (legacy) {
      if (unicast.size > 0) this.#sendLegacy(message, from, [...unicast.values()]);
      return;
    }
    if (unicast.size > 0) {
      // A unicast reply cannot collide with other responders' multicast
      // answers, which is what the 20-120 ms delay of shared records is for
      // (§6): it goes at once, which is what makes a new browser fast.
      const entries = [...unicast.values()];
      this.#scheduleAnswers(from, entries, source, {
        delay: defence || !message.truncated ? 0 : this.#delayFor(entries, true),
        minInterval: 0,
      });
    }
    if (multicast.size > 0) {
      const entries = [...multicast.values()];
      this.#scheduleAnswers(undefined, entries, source, {
        delay: defence ? 0 : this.#delayFor(entries, message.truncated),
        minInterval: defence ? DEFENCE_MIN_INTERVAL_MS : MULTICAST_MIN_INTERVAL_MS,
      });
    }
  }

  /**
   * Simultaneous probes (§8.2): a probe from another host for a name we are
   * probing. When our records are lexicographically earlier we lose: wait
   * 1 s and probe again. Returns whether one of our probing names was asked.
   */
  #tieBreak(questions: MdnsQuestion[], authorities: MdnsRecord[]): boolean {
    let concerned = false;
    const asked = new Set<string>();
    for (const question of questions) {
      const key = safeQuestionKey(question);
      if (key !== undefined) asked.add(key);
    }
    for (const run of [...this.#runs]) {
      let lost = false;
      for (const [key, { records: ours }] of this.#proposed(run)) {
        if (!asked.has(key)) continue;
        const theirs = authorities.filter((r) => safeNameKey(r) === key);
        if (theirs.length === 0) continue;
        concerned = true;
        let order: number;
        try {
          order = compareProbeRecords(ours, theirs);
        } catch {
          continue; // their records do not even encode: nothing to defer to
        }
        if (order < 0) lost = true;
      }
      if (!lost) continue;
      this.#counters.probeDeferrals++;
      this.#conflictTimes.push(this.#ctx.now());
      this.#restartRun(run, this.#tooManyConflicts() ? CONFLICT_BACKOFF_MS : PROBE_DEFER_MS);
    }
    return concerned;
  }

  /** §7.2: known answers from a querier remove its pending answers. */
  #applyKnownAnswers(known: Map<string, number>, source: string): boolean {
    if (known.size === 0) return false;
    let acted = false;
    for (const [destination, pending] of [...this.#pending]) {
      for (const [key, answer] of [...pending.answers]) {
        const ttl = known.get(key);
        if (ttl === undefined || !answer.requesters.has(source)) continue;
        const entry = this.#established().find((e) => e.key === key);
        if (entry !== undefined && ttl < entry.record.ttl / 2) continue;
        acted = true;
        answer.requesters.delete(source);
        if (answer.requesters.size === 0) {
          pending.answers.delete(key);
          this.#counters.knownAnswerSuppressions++;
        }
      }
      if (pending.answers.size === 0) this.#dropPending(destination);
    }
    return acted;
  }

  #delayFor(entries: Entry[], truncated: boolean): number {
    if (truncated) {
      return TRUNCATED_DELAY_MIN_MS + Math.floor(this.#ctx.random() * (SHARED_DELAY_SPAN_MS + 1));
    }
    if (entries.every((e) => e.unique)) return 0;
    return SHARED_DELAY_MIN_MS + Math.floor(this.#ctx.random() * (SHARED_DELAY_SPAN_MS + 1));
  }

  /** Queues answers for a destination (multicast when `to` is undefined), or sends them now. */
  #scheduleAnswers(
    to: Endpoint | undefined,
    entries: Entry[],
    source: string,
    options: { delay: number; minInterval: number },
  ): void {
    const destination = to === undefined ? MULTICAST : endpointKey(to);
    if (options.delay === 0) {
      this.#sendAnswers(to, entries.map((e) => e.key), new Map(), options.minInterval);
      return;
    }
    let pending = this.#pending.get(destination);
    const due = this.#ctx.now() + options.delay;
    if (pending === undefined) {
      pending = { to, answers: new Map(), due, timer: undefined };
      this.#pending.set(destination, pending);
      const queued = pending;
      pending.timer = this.#ctx.setTimeout(
        () => this.#flushPending(destination, queued),
        options.delay,
      );
    } else if (due > pending.due && options.delay >= TRUNCATED_DELAY_MIN_MS) {
      // A truncated query: give its known answers time to arrive.
      this.#ctx.clearTimeout(pending.timer);
      pending.due = due;
      const queued = pending;
      pending.timer = this.#ctx.setTimeout(
        () => this.#flushPending(destination, queued),
        options.delay,
      );
    }
    for (const entry of entries) {
      const answer = pending.answers.get(entry.key);
      if (answer === undefined) {
        pending.answers.set(entry.key, {
          requesters: new Set(source === "" ? [] : [source]),
          minInterval: options.minInterval,
        });
      } else {
        if (source !== "") answer.requesters.add(source);
        answer.minInterval = Math.min(answer.minInterval, options.minInterval);
      }
    }
  }

  #dropPending(destination: string): void {
    const pending = this.#pending.get(destination);
    if (pending === undefined) return;
    this.#ctx.clearTimeout(pending.timer);
    this.#pending.delete(destination);
  }

  #flushPending(destination: string, pending: PendingResponse): void {
    if (this.#pending.get(destination) !== pending) return;
    this.#pending.delete(destination);
    if (this.#closed) return;
    const intervals = new Map<string, number>();
    for (const [key, answer] of pending.answers) intervals.set(key, answer.minInterval);
    this.#sendAnswers(pending.to, [...pending.answers.keys()], intervals, 0);
  }

  /**
   * Sends the records with these keys that we still own, with their
   * additional records; multicast answers obey the once-per-interval limit.
   */
  #sendAnswers(
    to: Endpoint | undefined,
    keys: string[],
    intervals: Map<string, number>,
    minInterval: number,
  ): void {
    const current = new Map(this.#established().map((e) => [e.key, e]));
    const now = this.#ctx.now();
    const answers: MdnsRecord[] = [];
    for (const key of keys) {
      let record = current.get(key)?.record;
      if (record === undefined && key.includes("|NSEC|")) record = this.#nsecFor(key);
      if (record === undefined) continue;
      if (to === undefined) {
        const last = this.#lastMulticast.get(key);
        const interval = intervals.get(key) ?? minInterval;
        if (last !== undefined && now - last < interval) {
          this.#counters.rateLimited++;
          continue;
        }
      }
      answers.push(record);
    }
    if (answers.length === 0) return;
    const message = emptyMessage(true);
    message.answers = answers;
    message.additionals = this.#additionals(answers);
    if (to === undefined) {
      this.#counters.multicastResponses++;
      this.#noteMulticast([...answers, ...message.additionals]);
    } else {
      this.#counters.unicastResponses++;
    }
    void this.#send(message, to);
  }

  /** The NSEC record with this key, if it still describes one of our unique names. */
  #nsecFor(key: string): MdnsRecord | undefined {
    for (const unique of this.#uniqueNames().values()) {
      const nsec: MdnsRecord = {
        name: unique.name,
        type: "NSEC",
        ttl: unique.ttl,
        flush: true,
        data: { nextDomain: unique.name, types: unique.types },
      };
      if (recordKey(nsec) === key) return nsec;
    }
    return undefined;
  }

  /** RFC 6763 §12 and RFC 6762 §6.2: what a querier will want next. */
  #additionals(answers: MdnsRecord[]): MdnsRecord[] {
    const established = this.#established().map((e) => e.record);
    const inAnswers = new Set(answers.map((r) => recordKey(r)));
    const out = new Map<string, MdnsRecord>();
    const add = (record: MdnsRecord) => {
      const key = recordKey(record);
      if (!inAnswers.has(key) && !out.has(key)) out.set(key, record);
    };
    const addresses = (name: string, except?: RecordType) => {
      const key = nameKey(name);
      for (const r of established) {
        if ((r.type === "A" || r.type === "AAAA") && r.type !== except && nameKey(r.name) === key) {
          add(r);
        }
      }
    };
    const pass = (records: MdnsRecord[]) => {
      for (const answer of records) {
        if (answer.type === "PTR") {
          const key = nameKey(answer.data);
          const instance = established.filter((r) =>
            nameKey(r.name) === key && (r.type === "SRV" || r.type === "TXT")
          );
          for (const r of instance) add(r);
          for (const r of instance) if (r.type === "SRV") addresses(r.data.target);
        } else if (answer.type === "SRV") {
          addresses(answer.data.target);
        } else if (answer.type === "A" || answer.type === "AAAA") {
          addresses(answer.name, answer.type);
        }
      }
    };
    pass(answers);
    return [...out.values()];
  }

  /** §6.7: a one-shot querier on another port gets a plain DNS answer, at once. */
  #sendLegacy(query: MdnsMessage, to: Endpoint, entries: Entry[]): void {
    const cap = (r: MdnsRecord): MdnsRecord =>
      ({ ...r, ttl: Math.min(r.ttl, LEGACY_MAX_TTL), flush: false }) as MdnsRecord;
    const answers = entries.map((e) => e.record);
    const message = emptyMessage(true);
    message.id = query.id;
    message.questions = query.questions.map((q) => ({ ...q }));
    message.answers = answers.map(cap);
    message.additionals = this.#additionals(answers).map(cap);
    this.#counters.legacyResponses++;
    void this.#send(message, to);
  }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const MULTICAST = "multicast";

function endpointKey(endpoint: Endpoint): string {
  return `${endpoint.address}|${endpoint.port}`;
}

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function safeNameKey(record: MdnsRecord): string | undefined {
  return typeof record?.name === "string" ? nameKey(record.name) : undefined;
}

function safeQuestionKey(question: MdnsQuestion): string | undefined {
  return typeof question?.name === "string" ? nameKey(question.name) : undefined;
}

function safeRecordKey(record: MdnsRecord): string | undefined {
  try {
    return recordKey(record);
  } catch {
    return undefined;
  }
}

/** Known answers of a query: record key → the TTL the querier holds (the largest). */
function knownAnswers(records: MdnsRecord[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const record of records) {
    const key = safeRecordKey(record);
    if (key === undefined || typeof record.ttl !== "number") continue;
    out.set(key, Math.max(out.get(key) ?? 0, record.ttl));
  }
  return out;
}

function dedupe(records: MdnsRecord[]): MdnsRecord[] {
  const seen = new Set<string>();
  return records.filter((r) => {
    const key = recordKey(r);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The canonical text of an IPv4 or IPv6 address (zone dropped), or undefined if invalid. */
function canonicalAddress(address: unknown): string | undefined {
  if (typeof address !== "string") return undefined;
  try {
    if (address.includes(":")) return formatIpv6(ipv6Bytes(address.replace(/%.*$/, "")));
    ipv4Bytes(address);
    return address;
  } catch {
    return undefined;
  }
}

function utf8Length(text: string): number {
  return encoder.encode(text).length;
}

/** `base + suffix`, with `base` cut (at a code point) so that the label fits 63 bytes. */
function suffixedLabel(base: string, suffix: string): string {
  const room = MAX_LABEL_BYTES - utf8Length(suffix);
  let cut = base;
  while (utf8Length(cut) > room) cut = Array.from(cut).slice(0, -1).join("");
  return `${cut.trimEnd()}${suffix}`;
}

function checkHostLabel(label: unknown): string {
  if (typeof label !== "string") {
    throw new TypeError(
      `Cannot create a responder as 'hostLabel' must be a string: current value is ${show(label)}`,
    );
  }
  const bytes = utf8Length(label);
  if (bytes < 1 || bytes > MAX_LABEL_BYTES || label.includes(".")) {
    throw new RangeError(
      `Cannot create a responder as 'hostLabel' must be 1..${MAX_LABEL_BYTES} bytes without dots: current value is ${
        show(label)
      }`,
    );
  }
  return label;
}

function checkInteger(
  value: unknown,
  fallback: number,
  min: number,
  max: number,
  field: string,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Cannot create a responder as '${field}' must be an integer in ${min}..${max}: current value is ${
        show(value)
      }`,
    );
  }
  return value;
}

function checkTtl(value: unknown, fallback: number, field: string): number {
  return checkInteger(value, fallback, 1, MAX_TTL, field);
}

function checkCallback<T>(value: T | undefined, field: string): T | undefined {
  if (value !== undefined && typeof value !== "function") {
    throw new TypeError(
      `Cannot create a responder as '${field}' must be a function: current value is ${show(value)}`,
    );
  }
  return value;
}

const SERVICE_TYPE = /^_[A-Za-z0-9_-]{1,62}\._(?:tcp|udp)\.local$/i;

function checkRegistration(service: ServiceRegistration): Service {
  if (service === null || typeof service !== "object") {
    throw new TypeError(
      `Cannot register a service as 'service' must be an object: current value is ${show(service)}`,
    );
  }
  const { instance, port } = service;
  if (typeof instance !== "string") {
    throw new TypeError(
      `Cannot register a service as 'instance' must be a string: current value is ${
        show(instance)
      }`,
    );
  }
  const bytes = utf8Length(instance);
  if (bytes < 1 || bytes > MAX_LABEL_BYTES) {
    throw new RangeError(
      `Cannot register a service as 'instance' must be 1..${MAX_LABEL_BYTES} bytes of UTF-8: current length is ${bytes}`,
    );
  }
  if (typeof service.serviceType !== "string") {
    throw new TypeError(
      `Cannot register a service as 'serviceType' must be a string: current value is ${
        show(service.serviceType)
      }`,
    );
  }
  const type = service.serviceType.endsWith(".")
    ? service.serviceType.slice(0, -1)
    : service.serviceType;
  if (!SERVICE_TYPE.test(type)) {
    throw new RangeError(
      `Cannot register a service as 'serviceType' must look like "_name._tcp.local" or "_name._udp.local": current value is ${
        show(service.serviceType)
      }`,
    );
  }
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `Cannot register a service as 'port' must be an integer in 0..65535: current value is ${
        show(port)
      }`,
    );
  }
  const txt = service.txt ?? [];
  if (!Array.isArray(txt)) {
    throw new TypeError(
      `Cannot register a service as 'txt' must be an array of Uint8Array: current value is ${
        show(txt)
      }`,
    );
  }
  txt.forEach((string, i) => {
    if (!(string instanceof Uint8Array) || string.length > MAX_TXT_STRING_BYTES) {
      throw new RangeError(
        `Cannot register a service as 'txt[${i}]' must be a Uint8Array of at most ${MAX_TXT_STRING_BYTES} bytes: current value is ${
          string instanceof Uint8Array ? `${string.length} bytes long` : show(string)
        }`,
      );
    }
  });
  const entry: Service = {
    baseLabel: instance,
    label: instance,
    nextSuffix: 2,
    type,
    port,
    // No strings at all is published as one empty string (RFC 6763 §6.1).
    txt: txt.length === 0 ? [new Uint8Array(0)] : txt.map((s) => s.slice()),
    state: "probing",
    registered: false,
    names: new Set(),
  };
  // The longest rename must still fit a DNS name (255 bytes).
  try {
    nameWireBytes(`${escapeLabel(suffixedLabel(instance, " (99)"))}.${type}`);
    nameWireBytes(`${escapeLabel(instance)}.${type}`);
  } catch {
    throw new RangeError(
      `Cannot register a service as the instance name must fit 255 bytes: current value is ${
        show(`${instance}.${type}`)
      }`,
    );
  }
  return entry;
}
