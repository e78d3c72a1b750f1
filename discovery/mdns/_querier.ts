/**
 * The mDNS querier (private): browses for DNS-SD service types (RFC 6763)
 * with continuous mDNS querying (RFC 6762 §5.2), keeps a record cache
 * (§10), resolves each instance to a port, a host and addresses, and tells
 * listeners when instances appear, change and go.
 *
 * Everything goes through an {@linkcode EngineContext}: sending, time,
 * timers and randomness, so a test drives it deterministically.
 *
 * @module
 */

import { MAX_DELAY_MS } from "../../rpc/scheduler.ts";
import { type CachedRecord, RecordCache } from "./_cache.ts";
import { recordKey } from "./_records.ts";
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
  type SrvRecord,
  type TxtRecord,
} from "./_types.ts";

/** A service instance resolved to a port, a host and its addresses. */
export interface ResolvedInstance {
  /**
   * The full instance name as the PTR record gave it, e.g.
   * `"Sensor 7._x._tcp.local"`; the spelling first reported stays while the
   * instance is known (names are case-insensitive).
   */
  name: string;
  /** The browsed service type, as passed to {@linkcode Querier.browse} (no trailing dot). */
  serviceType: string;
  /** The port of the instance's SRV record. */
  port: number;
  /** The SRV target: the host name that owns the addresses (spelling kept like `name`). */
  target: string;
  /** The target's addresses: IPv4 (numeric order) then IPv6 (text order), no duplicates. */
  addresses: string[];
  /**
   * The strings of the instance's TXT record (`key=value` bytes); empty when
   * there is no TXT record or it is the empty TXT record (one empty string).
   */
  txt: Uint8Array[];
}

/** A field of a {@linkcode ResolvedInstance} that an `updated` event reports as changed. */
export type InstanceField = "port" | "target" | "addresses" | "txt";

/**
 * What a browse reports, for one instance at a time, in order:
 * - `added`: the instance became resolvable (its PTR, its SRV and at least
 *   one address of the SRV target are cached);
 * - `updated`: the SRV port or target, the TXT strings or the address set of
 *   an added instance changed; `changed` lists which, in the order
 *   port, target, addresses, txt;
 * - `removed`: the instance is no longer resolvable: its PTR left the cache
 *   (1 s after a goodbye, or at the end of its TTL), or its SRV did, or the
 *   last address of its target did. `instance` is the last state reported.
 *   Should it become resolvable again, `added` is reported again.
 */
export type BrowseEvent =
  | { kind: "added"; instance: ResolvedInstance }
  | { kind: "updated"; instance: ResolvedInstance; changed: InstanceField[] }
  | { kind: "removed"; instance: ResolvedInstance };

/** Receives the events of one browse. Exceptions are caught and counted. */
export type BrowseListener = (event: BrowseEvent) => void;

/** Ends one browse. */
export interface Browse {
  /** Stops delivering events to this browse's listener. Idempotent. */
  close(): void;
}

/** Options of {@linkcode Querier}. */
export interface QuerierOptions {
  /**
   * The most records the cache keeps (evicting the closest to expiry).
   *
   * @default {10000}
   */
  maxRecords?: number;
  /**
   * The longest TTL honoured, in seconds; longer ones are clamped to it.
   *
   * @default {86400}
   */
  maxTtlSeconds?: number;
  /**
   * The range of the random delay before the first query of a browse, in
   * milliseconds: `[min, max)` (RFC 6762 §5.2: 20-120 ms).
   *
   * @default {[20, 120]}
   */
  firstQueryDelayMs?: readonly [number, number];
  /**
   * The gap between the first and the second query of a browse, in
   * milliseconds; each later gap doubles (RFC 6762 §5.2: at least 1 s).
   *
   * @default {1000}
   */
  firstQueryIntervalMs?: number;
  /**
   * The longest gap between two queries of a browse, in milliseconds
   * (RFC 6762 §5.2 allows capping at 60 minutes).
   *
   * @default {3600000}
   */
  maxQueryIntervalMs?: number;
  /**
   * How many resolution queries (SRV/TXT of an instance, A/AAAA of its
   * host) are sent before giving up, 1 s, 2 s, 4 s ... apart; receiving the
   * instance's PTR again starts over.
   *
   * @default {5}
   */
  maxResolveAttempts?: number;
  /**
   * Ignore responses whose source port is not 5353, as RFC 6762 §6 requires.
   *
   * @default {true}
   */
  checkSourcePort?: boolean;
}

/** What a {@linkcode Querier} did and dropped, since it was created. */
export interface QuerierCounters {
  /** Continuous browse queries sent (PTR questions for browsed types). */
  browseQueries: number;
  /** Browse queries not sent because another host asked the same question (RFC 6762 §7.3). */
  suppressedQueries: number;
  /** Refresh queries sent (records of interest at 80-95 % of their TTL). */
  refreshQueries: number;
  /** Resolution queries sent (missing SRV, TXT, A/AAAA). */
  resolveQueries: number;
  /** Responses whose records went into the cache. */
  responses: number;
  /** Responses ignored because their source port was not 5353. */
  ignoredResponses: number;
  /** Records in responses that could not be cached because their data was malformed. */
  invalidRecords: number;
  /** Events delivered to listeners. */
  events: number;
  /** Exceptions thrown by listeners (caught). */
  listenerErrors: number;
  /** Sends that failed (`EngineContext.send` threw or rejected). */
  sendErrors: number;
  /** Exceptions inside timer callbacks (a bug; caught so the process survives). */
  internalErrors: number;
  /** Records evicted from the cache to keep it within its bound. */
  cacheEvictions: number;
  /** Records currently cached. */
  cachedRecords: number;
}

/** How many spellings (letter cases) of one instance name are remembered. */
const MAX_SPELLINGS = 4;

/** The gap before the first retry of a resolution query; later gaps double. */
const RESOLVE_RETRY_MS = 1_000;

/**
 * How close our next browse query must be for another host's identical
 * query to count as ours (RFC 6762 §7.3), in milliseconds.
 */
const SUPPRESS_WINDOW_MS = 1_000;

interface Subscription {
  listener: BrowseListener;
  active: boolean;
}

interface BrowseState {
  key: string;
  serviceType: string;
  subscriptions: Set<Subscription>;
  /** nameKey(instance name) → state. */
  instances: Map<string, InstanceState>;
  timer: unknown;
  /** When the pending browse query is due (ms). */
  nextQueryAt: number;
  /** The gap after the next query (ms). */
  interval: number;
  /** Browse queries sent or counted as sent. */
  queries: number;
}

interface InstanceState {
  key: string;
  browse: BrowseState;
  /** The name as the PTR record spelled it. */
  name: string;
  /** The spellings of the name seen in PTR records (at most MAX_SPELLINGS). */
  spellings: Set<string>;
  /** More spellings were seen than kept: finding the PTR needs a scan. */
  manySpellings: boolean;
  /** The last state reported in an `added`/`updated` event; undefined when not added. */
  reported: ResolvedInstance | undefined;
  /** nameKey of the chosen SRV's target, indexed in #byTarget. */
  targetKey: string | undefined;
  resolveTimer: unknown;
  resolveAttempts: number;
  /** The question keys the last resolution query asked. */
  asked: Set<string>;
  disposed: boolean;
}

function checkDelayRange(range: readonly [number, number]): readonly [number, number] {
  if (
    !Array.isArray(range) || range.length !== 2 || !range.every(Number.isFinite) ||
    range[0] < 0 || range[1] < range[0]
  ) {
    throw new RangeError(
      `Cannot create the querier as 'firstQueryDelayMs' must be [min, max] with 0 <= min <= max: ` +
        `current value is ${JSON.stringify(range)}`,
    );
  }
  return range;
}

function checkPositive(value: number, field: string, integer: boolean): number {
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new RangeError(
      `Cannot create the querier as '${field}' must be ${
        integer ? "an integer >= 1" : "a number > 0"
      }: current value is ${value}`,
    );
  }
  return value;
}

/**
 * Browses for DNS-SD services over mDNS: the querier half of the engine.
 *
 * - **Continuous querying** (RFC 6762 §5.2): each browsed type is asked for
 *   (a PTR question) first after a random 20-120 ms, with the QU bit
 *   (§5.4), then 1 s later, then at gaps doubling up to 60 minutes. Several
 *   browses of one type share one schedule. Each query lists the PTR
 *   answers already known with more than half their TTL left (§7.1). When
 *   another host asks the same question (QM) with no known answer we lack,
 *   less than 1 s before our next query is due, ours counts as sent (§7.3).
 * - **Cache** (§10): only responses feed it, from the answer and additional
 *   sections; see {@linkcode RecordCache} for TTLs, goodbyes and the
 *   cache-flush bit. Responses from a source port other than 5353 are
 *   ignored (§6).
 * - **Refresh** (§5.2): at 80, 85, 90 and 95 % (+0-2 %) of a record's TTL,
 *   the record is asked for again if it is still needed: a PTR of a browsed
 *   type, the SRV or TXT of a tracked instance, an A or AAAA of the target
 *   of a tracked instance. The refresh questions due at one time go in one
 *   query.
 * - **Resolution**: when a tracked instance lacks its SRV or TXT record, or
 *   its SRV target lacks addresses, one query asks for all of them (SRV,
 *   TXT, A and AAAA as needed), sent at once and retried 1 s, 2 s, 4 s ...
 *   later up to `maxResolveAttempts` in all; when what is missing changes
 *   (the SRV arrives, now the addresses are missing), the count restarts.
 *   Receiving the PTR again after giving up starts over. The questions of
 *   one response, or of retries falling due together, go in one query.
 * - **Events**: see {@linkcode BrowseEvent}. They are delivered
 *   synchronously from {@linkcode Querier.handle}, from a timer callback or,
 *   for instances already known, from {@linkcode Querier.browse} itself, in
 *   order per instance. An identical re-announcement is not an update.
 *   While a record set is being replaced (cache-flush) or said goodbye to,
 *   records on their way out are not used when live ones exist, so the
 *   change is reported at once.
 *
 * A PTR may name an instance outside its type (DNS-SD subtypes do); it is
 * tracked like any other. Each browsed type tracks its instances
 * separately.
 *
 * @example
 * ```ts ignore
 * const querier = new Querier(context);
 * const browse = querier.browse("_x._tcp.local", (event) => console.log(event.kind));
 * // the engine calls querier.handle(message, from) for every message received
 * browse.close();
 * querier.close();
 * ```
 */
export class Querier {
  readonly #ctx: EngineContext;
  readonly #cache: RecordCache;
  readonly #firstDelay: readonly [number, number];
  readonly #firstInterval: number;
  readonly #maxInterval: number;
  readonly #maxResolveAttempts: number;
  readonly #checkSourcePort: boolean;
  /** nameKey(service type) → browse. */
  readonly #browses = new Map<string, BrowseState>();
  /** nameKey(instance name) → its states (one per browse tracking it). */
  readonly #byInstance = new Map<string, Set<InstanceState>>();
  /** nameKey(SRV target) → the instances whose chosen SRV points there. */
  readonly #byTarget = new Map<string, Set<InstanceState>>();
  /** Resolution questions to send at the end of the current step, by question key. */
  readonly #pendingQuestions = new Map<string, MdnsQuestion>();
  #maintenanceTimer: unknown = undefined;
  #flushTimer: unknown = undefined;
  #maintenanceAt = Infinity;
  #closed = false;
  readonly #counters = {
    browseQueries: 0,
    suppressedQueries: 0,
    refreshQueries: 0,
    resolveQueries: 0,
    responses: 0,
    ignoredResponses: 0,
    invalidRecords: 0,
    events: 0,
    listenerErrors: 0,
    sendErrors: 0,
    internalErrors: 0,
  };

  /**
   * Creates a querier; it sends nothing until something is browsed.
   *
   * @param ctx Sending, time, timers and randomness.
   * @param options Cache bound, TTL clamp, query schedule, resolution retries.
   * @throws {RangeError} When an option is out of range.
   */
  constructor(ctx: EngineContext, options: QuerierOptions = {}) {
    this.#ctx = ctx;
    this.#cache = new RecordCache({
      maxRecords: options.maxRecords,
      maxTtlSeconds: options.maxTtlSeconds,
      random: () => ctx.random(),
    });
    this.#firstDelay = checkDelayRange(options.firstQueryDelayMs ?? [20, 120]);
    this.#firstInterval = checkPositive(
      options.firstQueryIntervalMs ?? 1_000,
      "firstQueryIntervalMs",
      false,
    );
    this.#maxInterval = checkPositive(
      options.maxQueryIntervalMs ?? 3_600_000,
      "maxQueryIntervalMs",
      false,
    );
    this.#maxResolveAttempts = checkPositive(
      options.maxResolveAttempts ?? 5,
      "maxResolveAttempts",
      true,
    );
    this.#checkSourcePort = options.checkSourcePort ?? true;
  }

  /** What the querier did and dropped (a fresh object). */
  get counters(): QuerierCounters {
    return {
      ...this.#counters,
      cacheEvictions: this.#cache.evictions,
      cachedRecords: this.#cache.size,
    };
  }

  /** Whether {@linkcode Querier.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The cached records owned by `name` (case-insensitive), of `type` when
   * given: a read-only view of the cache, for diagnostics and tests.
   */
  cached(name: string, type?: RecordType): CachedRecord[] {
    return this.#cache.find(name, type);
  }

  /**
   * Browses for instances of `serviceType` (a full name such as
   * `"_x._tcp.local"`; a trailing dot is dropped, case is ignored for
   * matching). The first browse of a type starts its query schedule; later
   * ones share it. Instances already resolved are reported to `listener`
   * as `added` before this method returns.
   *
   * @param serviceType The service type to browse.
   * @param listener Receives the events of this browse.
   * @returns A handle that ends this browse.
   * @throws {Error} When the querier is closed.
   * @throws {TypeError} When `serviceType` is not a non-empty string or `listener` not a function.
   */
  browse(serviceType: string, listener: BrowseListener): Browse {
    if (this.#closed) throw new Error("Cannot browse as the querier is closed");
    if (typeof serviceType !== "string" || nameKey(serviceType) === "") {
      throw new TypeError(
        `Cannot browse as 'serviceType' must be a non-empty name: current value is ${
          JSON.stringify(serviceType)
        }`,
      );
    }
    if (typeof listener !== "function") {
      throw new TypeError(
        `Cannot browse as 'listener' must be a function: current value is ${typeof listener}`,
      );
    }
    const key = nameKey(serviceType);
    // Bring the cache up to date first, so that the new listener hears of no
    // removal of an instance it was never told about.
    const expired = new Set<InstanceState>();
    this.#expire(this.#ctx.now(), expired);
    this.#settle(expired);
    if (this.#closed) throw new Error("Cannot browse as the querier is closed");
    const subscription: Subscription = { listener, active: true };
    const handle: Browse = { close: () => this.#unsubscribe(key, subscription) };
    let state = this.#browses.get(key);
    if (state !== undefined) {
      state.subscriptions.add(subscription);
      for (const instance of [...state.instances.values()]) {
        if (instance.reported === undefined || instance.disposed || !subscription.active) continue;
        this.#deliver(subscription, { kind: "added", instance: copyInstance(instance.reported) });
      }
      this.#scheduleMaintenance();
      return handle;
    }
    const display = serviceType.endsWith(".") ? serviceType.slice(0, -1) : serviceType;
    state = {
      key,
      serviceType: display,
      subscriptions: new Set([subscription]),
      instances: new Map(),
      timer: undefined,
      nextQueryAt: 0,
      interval: this.#firstInterval,
      queries: 0,
    };
    this.#browses.set(key, state);
    const [min, max] = this.#firstDelay;
    this.#scheduleBrowseQuery(state, min + this.#ctx.random() * (max - min));
    const known = new Set<InstanceState>();
    for (const entry of this.#cache.find(key, "PTR")) {
      known.add(this.#track(state, (entry.record as { data: string }).data));
    }
    this.#settle(known);
    this.#scheduleMaintenance();
    return handle;
  }

  /**
   * Takes in one received message. Responses (from port 5353) feed the
   * cache and may produce events and resolution queries; queries are only
   * looked at for duplicate question suppression (RFC 6762 §7.3). Never
   * throws on well-formed messages, however odd.
   *
   * @param message The decoded message.
   * @param from Where it came from.
   */
  handle(message: MdnsMessage, from: Endpoint): void {
    if (this.#closed) return;
    if (!message.response) {
      this.#observeQuery(message, from);
      return;
    }
    if (this.#checkSourcePort && from.port !== MDNS_PORT) {
      this.#counters.ignoredResponses++;
      return;
    }
    this.#counters.responses++;
    const now = this.#ctx.now();
    const affected = new Set<InstanceState>();
    this.#expire(now, affected);
    for (const record of [...message.answers, ...message.additionals]) {
      let result;
      try {
        result = this.#cache.add(record, now);
      } catch {
        this.#counters.invalidRecords++;
        continue;
      }
      if (result.kind === "ignored") continue;
      this.#noteRecord(record, affected, result.kind === "new" || result.kind === "refreshed");
      for (const entry of result.flushed) this.#noteRecord(entry.record, affected, false);
      for (const entry of result.evicted) this.#noteRecord(entry.record, affected, false);
    }
    this.#settle(affected);
    this.#scheduleMaintenance();
  }

  /**
   * Stops every browse and timer and forgets the cache; later messages are
   * ignored and {@linkcode Querier.browse} throws. No events are delivered
   * for the instances still known. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const state of [...this.#browses.values()]) this.#disposeBrowse(state);
    if (this.#maintenanceTimer !== undefined) this.#ctx.clearTimeout(this.#maintenanceTimer);
    this.#maintenanceTimer = undefined;
    this.#maintenanceAt = Infinity;
    if (this.#flushTimer !== undefined) this.#ctx.clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#pendingQuestions.clear();
    this.#cache.clear();
  }

  // -------------------------------------------------------------------------
  // Browses and their continuous queries
  // -------------------------------------------------------------------------

  #unsubscribe(key: string, subscription: Subscription): void {
    if (!subscription.active) return;
    subscription.active = false;
    const state = this.#browses.get(key);
    if (state === undefined || !state.subscriptions.delete(subscription)) return;
    if (state.subscriptions.size === 0) this.#disposeBrowse(state);
  }

  #disposeBrowse(state: BrowseState): void {
    if (this.#browses.get(state.key) === state) this.#browses.delete(state.key);
    for (const subscription of state.subscriptions) subscription.active = false;
    state.subscriptions.clear();
    if (state.timer !== undefined) this.#ctx.clearTimeout(state.timer);
    state.timer = undefined;
    for (const instance of [...state.instances.values()]) this.#disposeInstance(instance);
  }

  #scheduleBrowseQuery(state: BrowseState, delay: number): void {
    state.nextQueryAt = this.#ctx.now() + delay;
    state.timer = this.#setTimer(() => {
      state.timer = undefined;
      if (this.#browses.get(state.key) !== state) return;
      this.#sendBrowseQuery(state);
      this.#advanceSchedule(state);
    }, delay);
  }

  /** Counts a browse query as sent and schedules the next one. */
  #advanceSchedule(state: BrowseState): void {
    state.queries++;
    const gap = state.interval;
    state.interval = Math.min(state.interval * 2, this.#maxInterval);
    this.#scheduleBrowseQuery(state, Math.min(gap, this.#maxInterval));
  }

  #sendBrowseQuery(state: BrowseState): void {
    const now = this.#ctx.now();
    const message = emptyMessage(false);
    message.questions.push({
      name: state.serviceType,
      type: "PTR",
      unicastResponse: state.queries === 0,
    });
    for (const record of this.#knownAnswers(state.key, "PTR", now)) message.answers.push(record);
    this.#counters.browseQueries++;
    this.#send(message);
  }

  /**
   * Duplicate question suppression (RFC 6762 §7.3): another host's QM
   * question for a browsed type, whose known answers are all ones we would
   * list too, counts as our next query when that is due within 1 s. Queries
   * from this host's own addresses (our own, looped back) never count.
   */
  #observeQuery(message: MdnsMessage, from: Endpoint): void {
    if (message.truncated) return; // its known answers continue elsewhere: cannot judge
    if (!message.questions.some((question) => this.#browses.has(nameKey(question.name)))) return;
    let own: string[];
    try {
      own = this.#ctx.addresses();
    } catch {
      own = [];
    }
    if (own.includes(from.address)) return;
    const now = this.#ctx.now();
    for (const question of message.questions) {
      if (question.unicastResponse || (question.type !== "PTR" && question.type !== "ANY")) {
        continue;
      }
      const state = this.#browses.get(nameKey(question.name));
      if (state === undefined || state.timer === undefined || state.queries === 0) continue;
      if (state.nextQueryAt - now > SUPPRESS_WINDOW_MS) continue;
      const ours = new Set<string>();
      for (const record of this.#knownAnswers(state.key, "PTR", now)) ours.add(recordKey(record));
      const theirs = message.answers.filter((record) =>
        record.type === "PTR" && nameKey(record.name) === state.key
      );
      let covered = true;
      for (const record of theirs) {
        try {
          if (!ours.has(recordKey(record))) covered = false;
        } catch {
          covered = false;
        }
      }
      if (!covered) continue;
      this.#ctx.clearTimeout(state.timer);
      state.timer = undefined;
      this.#counters.suppressedQueries++;
      this.#advanceSchedule(state);
    }
  }

  /**
   * The known-answer list for a question (RFC 6762 §7.1): cached records of
   * that name and type, not on their way out, with more than half their TTL
   * left; TTL set to what remains, cache-flush bit cleared.
   */
  #knownAnswers(name: string, type: RecordType, now: number): MdnsRecord[] {
    const answers: MdnsRecord[] = [];
    for (const entry of this.#cache.find(name, type)) {
      const remaining = entry.expiresAt - now;
      if (entry.expiring || remaining * 2 <= entry.ttlMs) continue;
      answers.push({ ...entry.record, ttl: Math.floor(remaining / 1000), flush: false });
    }
    return answers;
  }

  // -------------------------------------------------------------------------
  // Cache maintenance: expiry and refresh
  // -------------------------------------------------------------------------

  /** Removes expired records, noting the instances they touch. */
  #expire(now: number, affected: Set<InstanceState>): void {
    for (const entry of this.#cache.expire(now)) this.#noteRecord(entry.record, affected, false);
  }

  #scheduleMaintenance(): void {
    if (this.#closed) return;
    const deadline = this.#cache.nextDeadline();
    if (deadline === undefined) {
      if (this.#maintenanceTimer !== undefined) this.#ctx.clearTimeout(this.#maintenanceTimer);
      this.#maintenanceTimer = undefined;
      this.#maintenanceAt = Infinity;
      return;
    }
    if (this.#maintenanceTimer !== undefined && this.#maintenanceAt <= deadline) return;
    if (this.#maintenanceTimer !== undefined) this.#ctx.clearTimeout(this.#maintenanceTimer);
    const delay = Math.max(0, Math.ceil(deadline - this.#ctx.now()));
    this.#maintenanceAt = deadline;
    this.#maintenanceTimer = this.#setTimer(() => {
      this.#maintenanceTimer = undefined;
      this.#maintenanceAt = Infinity;
      this.#maintain();
    }, delay);
  }

  #maintain(): void {
    if (this.#closed) return;
    const now = this.#ctx.now();
    const affected = new Set<InstanceState>();
    this.#expire(now, affected);
    const questions = new Map<string, MdnsQuestion>();
    for (const entry of this.#cache.dueRefreshes(now)) {
      const { name, type } = entry.record;
      if (!this.#isWanted(name, type)) continue;
      questions.set(questionKey(name, type), { name, type, unicastResponse: false });
    }
    if (questions.size > 0) {
      this.#counters.refreshQueries++;
      this.#send(this.#query([...questions.values()], now));
    }
    this.#settle(affected);
    this.#scheduleMaintenance();
  }

  /** Whether a record of this name and type is still of interest (worth refreshing). */
  #isWanted(name: string, type: RecordType): boolean {
    const key = nameKey(name);
    switch (type) {
      case "PTR":
        return this.#browses.has(key);
      case "SRV":
      case "TXT":
        return (this.#byInstance.get(key)?.size ?? 0) > 0;
      case "A":
      case "AAAA":
        return (this.#byTarget.get(key)?.size ?? 0) > 0;
      default:
        return false;
    }
  }

  // -------------------------------------------------------------------------
  // Instances: tracking, evaluation, events, resolution
  // -------------------------------------------------------------------------

  /**
   * Notes the instances a cached record concerns. `received` is true when
   * the record was just received with a TTL above 0.
   */
  #noteRecord(record: MdnsRecord, affected: Set<InstanceState>, received: boolean): void {
    const key = nameKey(record.name);
    switch (record.type) {
      case "PTR": {
        const state = this.#browses.get(key);
        if (state === undefined) return;
        const instanceKey = nameKey(record.data);
        let instance = state.instances.get(instanceKey);
        if (received) instance = this.#track(state, record.data);
        if (instance === undefined) return;
        if (
          received && instance.resolveTimer === undefined &&
          instance.resolveAttempts >= this.#maxResolveAttempts
        ) {
          instance.resolveAttempts = 0; // gave up before: the PTR came again, try again
          instance.asked.clear();
        }
        affected.add(instance);
        return;
      }
      case "SRV":
      case "TXT":
        for (const instance of this.#byInstance.get(key) ?? []) affected.add(instance);
        return;
      case "A":
      case "AAAA":
        for (const instance of this.#byTarget.get(key) ?? []) affected.add(instance);
        return;
      default:
        return;
    }
  }

  /** The state of an instance of a browse, created on first sight; notes the name's spelling. */
  #track(state: BrowseState, name: string): InstanceState {
    const key = nameKey(name);
    const existing = state.instances.get(key);
    if (existing !== undefined) {
      if (!existing.spellings.has(name)) {
        if (existing.spellings.size < MAX_SPELLINGS) existing.spellings.add(name);
        else existing.manySpellings = true;
      }
      return existing;
    }
    const instance: InstanceState = {
      key,
      browse: state,
      name,
      spellings: new Set([name]),
      manySpellings: false,
      reported: undefined,
      targetKey: undefined,
      resolveTimer: undefined,
      resolveAttempts: 0,
      asked: new Set(),
      disposed: false,
    };
    state.instances.set(key, instance);
    addToIndex(this.#byInstance, key, instance);
    return instance;
  }

  #disposeInstance(instance: InstanceState): void {
    if (instance.disposed) return;
    instance.disposed = true;
    if (instance.resolveTimer !== undefined) this.#ctx.clearTimeout(instance.resolveTimer);
    instance.resolveTimer = undefined;
    if (instance.browse.instances.get(instance.key) === instance) {
      instance.browse.instances.delete(instance.key);
    }
    removeFromIndex(this.#byInstance, instance.key, instance);
    if (instance.targetKey !== undefined) {
      removeFromIndex(this.#byTarget, instance.targetKey, instance);
    }
  }

  /** Evaluates the affected instances (events), then sends the resolution questions. */
  #settle(affected: Set<InstanceState>): void {
    for (const instance of affected) {
      if (this.#closed) break;
      this.#evaluate(instance);
    }
    this.#flushResolution();
  }

  /** Compares an instance's state in the cache with what was reported, and reports the change. */
  #evaluate(instance: InstanceState): void {
    if (instance.disposed) return;
    const ptr = this.#instancePtr(instance);
    if (ptr === undefined) {
      const last = instance.reported;
      this.#disposeInstance(instance);
      if (last !== undefined) this.#emit(instance.browse, { kind: "removed", instance: last });
      return;
    }
    instance.name = (ptr as { data: string }).data;
    const srv = this.#best(this.#cache.find(instance.key, "SRV")) as SrvRecord | undefined;
    const targetKey = srv === undefined ? undefined : nameKey(srv.data.target);
    if (targetKey !== instance.targetKey) {
      if (instance.targetKey !== undefined) {
        removeFromIndex(this.#byTarget, instance.targetKey, instance);
      }
      if (targetKey !== undefined) addToIndex(this.#byTarget, targetKey, instance);
      instance.targetKey = targetKey;
    }
    const txt = this.#best(this.#cache.find(instance.key, "TXT")) as TxtRecord | undefined;
    const addresses = srv === undefined ? [] : this.#addresses(srv.data.target);
    const last = instance.reported;
    // Names keep the spelling first reported: a change of letter case is no change.
    const view: ResolvedInstance | undefined = srv === undefined || addresses.length === 0
      ? undefined
      : {
        name: last?.name ?? instance.name,
        serviceType: instance.browse.serviceType,
        port: srv.data.port,
        target: last !== undefined && nameKey(last.target) === targetKey
          ? last.target
          : srv.data.target,
        addresses,
        txt: txt === undefined ? [] : txt.data.filter((string) => string.length > 0),
      };
    if (view !== undefined && last === undefined) {
      // An instance seen only on its way out (its PTR said goodbye) is not added.
      if (this.#cache.get(ptr)?.expiring === true) return;
      instance.reported = view;
      this.#emit(instance.browse, { kind: "added", instance: view });
    } else if (view !== undefined && last !== undefined) {
      const changed = changedFields(last, view);
      instance.reported = view;
      if (changed.length > 0) {
        this.#emit(instance.browse, { kind: "updated", instance: view, changed });
      }
    } else if (view === undefined && last !== undefined) {
      instance.reported = undefined;
      this.#emit(instance.browse, { kind: "removed", instance: last });
    }
    if (this.#closed || instance.disposed) return;
    this.#resolve(instance, srv, txt, addresses.length > 0);
  }

  /**
   * The instance's PTR record, cached at all (a goodbye removes the instance
   * only 1 s later, RFC 6762 §10.1), looked up under each spelling of the
   * name seen; past a few spellings, by scanning the type's PTRs.
   */
  #instancePtr(instance: InstanceState): MdnsRecord | undefined {
    const state = instance.browse;
    if (instance.manySpellings) {
      return this.#best(
        this.#cache.find(state.key, "PTR")
          .filter((entry) => nameKey((entry.record as { data: string }).data) === instance.key),
      );
    }
    const entries: CachedRecord[] = [];
    for (const data of instance.spellings) {
      try {
        const entry = this.#cache.get({ name: state.key, type: "PTR", ttl: 0, flush: false, data });
        if (entry !== undefined) entries.push(entry);
      } catch {
        // Not a name the cache can hold.
      }
    }
    return this.#best(entries);
  }

  /** The cached entries not on their way out, or all of them when every one is. */
  #liveFirst(entries: CachedRecord[]): CachedRecord[] {
    const live = entries.filter((entry) => !entry.expiring);
    return live.length > 0 ? live : entries;
  }

  /**
   * The record to use out of several of one name and type: live before
   * expiring, most recently received first, then (SRV) lowest priority and
   * highest weight, then record key.
   */
  #best(entries: CachedRecord[]): MdnsRecord | undefined {
    if (entries.length === 0) return undefined;
    const sorted = [...entries].sort((a, b) => {
      if (a.expiring !== b.expiring) return a.expiring ? 1 : -1;
      if (a.receivedAt !== b.receivedAt) return b.receivedAt - a.receivedAt;
      if (a.record.type === "SRV" && b.record.type === "SRV") {
        if (a.record.data.priority !== b.record.data.priority) {
          return a.record.data.priority - b.record.data.priority;
        }
        if (a.record.data.weight !== b.record.data.weight) {
          return b.record.data.weight - a.record.data.weight;
        }
      }
      return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
    });
    return sorted[0].record;
  }

  /** The addresses of a host: A then AAAA, live ones (or all when none is live), sorted. */
  #addresses(host: string): string[] {
    const entries = this.#liveFirst([
      ...this.#cache.find(host, "A"),
      ...this.#cache.find(host, "AAAA"),
    ]);
    const v4 = new Set<string>();
    const v6 = new Set<string>();
    for (const { record } of entries) {
      if (record.type === "A") v4.add(record.data);
      else if (record.type === "AAAA") v6.add(record.data.toLowerCase());
    }
    return [...[...v4].sort(compareIpv4), ...[...v6].sort()];
  }

  /**
   * Queues the resolution questions an instance needs (SRV, TXT, and A plus
   * AAAA of the SRV target) and arms its retry timer.
   */
  #resolve(
    instance: InstanceState,
    srv: SrvRecord | undefined,
    txt: TxtRecord | undefined,
    hasAddresses: boolean,
  ): void {
    const needed: MdnsQuestion[] = [];
    if (srv === undefined) {
      needed.push({ name: instance.name, type: "SRV", unicastResponse: false });
    }
    if (txt === undefined) {
      needed.push({ name: instance.name, type: "TXT", unicastResponse: false });
    }
    if (srv !== undefined && !hasAddresses) {
      needed.push({ name: srv.data.target, type: "A", unicastResponse: false });
      needed.push({ name: srv.data.target, type: "AAAA", unicastResponse: false });
    }
    const keys = needed.map((question) => questionKey(question.name, question.type));
    if (needed.length === 0) {
      if (instance.resolveTimer !== undefined) this.#ctx.clearTimeout(instance.resolveTimer);
      instance.resolveTimer = undefined;
      instance.resolveAttempts = 0;
      instance.asked.clear();
      return;
    }
    if (keys.some((key) => !instance.asked.has(key))) {
      // Something new is missing: ask now and restart the count.
      if (instance.resolveTimer !== undefined) this.#ctx.clearTimeout(instance.resolveTimer);
      instance.resolveTimer = undefined;
      instance.resolveAttempts = 0;
    } else if (
      instance.resolveTimer !== undefined || instance.resolveAttempts >= this.#maxResolveAttempts
    ) {
      return;
    }
    needed.forEach((question, index) => this.#pendingQuestions.set(keys[index], question));
    instance.asked = new Set(keys);
    instance.resolveAttempts++;
    if (instance.resolveAttempts >= this.#maxResolveAttempts) return;
    const delay = RESOLVE_RETRY_MS * 2 ** (instance.resolveAttempts - 1);
    instance.resolveTimer = this.#setTimer(() => {
      instance.resolveTimer = undefined;
      if (this.#closed || instance.disposed) return;
      const affected = new Set([instance]);
      this.#expire(this.#ctx.now(), affected);
      for (const each of affected) {
        if (this.#closed) return;
        this.#evaluate(each);
      }
      this.#scheduleFlush();
      this.#scheduleMaintenance();
    }, delay);
  }

  /**
   * Sends the queued resolution questions from a 0 ms timer, so that the
   * retries falling due together go out in one query.
   */
  #scheduleFlush(): void {
    if (this.#flushTimer !== undefined || this.#pendingQuestions.size === 0) return;
    this.#flushTimer = this.#setTimer(() => {
      this.#flushTimer = undefined;
      this.#flushResolution();
    }, 0);
  }

  /** Sends the queued resolution questions as one query. */
  #flushResolution(): void {
    if (this.#pendingQuestions.size === 0) return;
    const questions = [...this.#pendingQuestions.values()];
    this.#pendingQuestions.clear();
    if (this.#closed) return;
    this.#counters.resolveQueries++;
    this.#send(this.#query(questions, this.#ctx.now()));
  }

  /** A QM query for `questions` with their known answers. */
  #query(questions: MdnsQuestion[], now: number): MdnsMessage {
    const message = emptyMessage(false);
    for (const question of questions) {
      message.questions.push(question);
      if (question.type === "ANY") continue;
      for (const record of this.#knownAnswers(question.name, question.type, now)) {
        message.answers.push(record);
      }
    }
    return message;
  }

  #emit(state: BrowseState, event: BrowseEvent): void {
    for (const subscription of [...state.subscriptions]) {
      if (this.#closed) return;
      if (!subscription.active) continue;
      const copy: BrowseEvent = event.kind === "updated"
        ? { kind: "updated", instance: copyInstance(event.instance), changed: [...event.changed] }
        : { kind: event.kind, instance: copyInstance(event.instance) };
      this.#deliver(subscription, copy);
    }
  }

  #deliver(subscription: Subscription, event: BrowseEvent): void {
    this.#counters.events++;
    try {
      subscription.listener(event);
    } catch {
      this.#counters.listenerErrors++;
    }
  }

  // -------------------------------------------------------------------------
  // Plumbing
  // -------------------------------------------------------------------------

  #send(message: MdnsMessage): void {
    try {
      this.#ctx.send(message).catch(() => {
        this.#counters.sendErrors++;
      });
    } catch {
      this.#counters.sendErrors++;
    }
  }

  /** Sets a timer whose callback never throws out (errors are counted). */
  #setTimer(callback: () => void, delay: number): unknown {
    return this.#ctx.setTimeout(() => {
      try {
        callback();
      } catch {
        this.#counters.internalErrors++;
      }
    }, Math.min(Math.max(0, delay), MAX_DELAY_MS));
  }
}

function questionKey(name: string, type: string): string {
  return `${nameKey(name)}|${type}`;
}

function addToIndex<T>(index: Map<string, Set<T>>, key: string, value: T): void {
  let set = index.get(key);
  if (set === undefined) {
    set = new Set();
    index.set(key, set);
  }
  set.add(value);
}

function removeFromIndex<T>(index: Map<string, Set<T>>, key: string, value: T): void {
  const set = index.get(key);
  if (set === undefined) return;
  set.delete(value);
  if (set.size === 0) index.delete(key);
}

function compareIpv4(a: string, b: string): number {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < 4; i++) {
    if (x[i] !== y[i]) return (x[i] ?? 0) - (y[i] ?? 0);
  }
  return 0;
}

function sameStrings(a: Uint8Array[], b: Uint8Array[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i].length !== b[i].length) return false;
    for (let j = 0; j < a[i].length; j++) if (a[i][j] !== b[i][j]) return false;
  }
  return true;
}

function changedFields(before: ResolvedInstance, after: ResolvedInstance): InstanceField[] {
  const changed: InstanceField[] = [];
  if (before.port !== after.port) changed.push("port");
  if (nameKey(before.target) !== nameKey(after.target)) changed.push("target");
  if (
    before.addresses.length !== after.addresses.length ||
    before.addresses.some((address, index) => address !== after.addresses[index])
  ) {
    changed.push("addresses");
  }
  if (!sameStrings(before.txt, after.txt)) changed.push("txt");
  return changed;
}

function copyInstance(instance: ResolvedInstance): ResolvedInstance {
  return {
    ...instance,
    addresses: [...instance.addresses],
    txt: instance.txt.map((string) => string.slice()),
  };
}
