/**
 * The mDNS record cache of the querier (private), after RFC 6762 §10: every
 * record received in a response is kept until its TTL runs out, with the
 * cache-flush rule of §10.2, the one-second grace of goodbyes (§10.1), the
 * refresh points of §5.2 and a bound on its size so that hostile traffic
 * cannot grow it without limit.
 *
 * Time is whatever clock the caller passes in, in milliseconds; the cache
 * sets no timers. The owner asks {@linkcode RecordCache.nextDeadline} when
 * to call {@linkcode RecordCache.expire} and
 * {@linkcode RecordCache.dueRefreshes} next.
 *
 * @module
 */

import { recordKey } from "./_records.ts";
import { type MdnsRecord, nameKey, type RecordType } from "./_types.ts";

/** The default bound on the number of cached records. */
export const DEFAULT_MAX_RECORDS = 10_000;

/** The default longest TTL honoured, in seconds (1 day); longer TTLs are clamped to it. */
export const DEFAULT_MAX_TTL_SECONDS = 86_400;

/**
 * How long a record lives on after a goodbye (TTL 0, RFC 6762 §10.1) or after
 * the cache-flush bit of a newer record condemned it (§10.2), in milliseconds.
 */
export const EXPIRY_GRACE_MS = 1_000;

/**
 * The fractions of a record's TTL at which the querier should ask for it
 * again (RFC 6762 §5.2); each point gets up to {@linkcode REFRESH_JITTER} more.
 */
export const REFRESH_FRACTIONS: readonly number[] = Object.freeze([0.8, 0.85, 0.9, 0.95]);

/** The random variation added to each refresh point, as a fraction of the TTL (2 %). */
export const REFRESH_JITTER = 0.02;

/** Options of {@linkcode RecordCache}. */
export interface RecordCacheOptions {
  /**
   * The most records kept; past it, the record closest to expiry is evicted
   * (and counted in {@linkcode RecordCache.evictions}).
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
   * A uniform random number in [0, 1), for the jitter of the refresh points.
   *
   * @default {Math.random}
   */
  random?: () => number;
}

/** One cached record and its timing. All times are in the caller's clock, in milliseconds. */
export interface CachedRecord {
  /** The record's identity: `recordKey(record)` (name case-insensitive, type, RDATA). */
  readonly key: string;
  /** The record as last received, its TTL clamped to the cache's maximum. */
  readonly record: MdnsRecord;
  /** When the record was last received with a TTL above 0. */
  readonly receivedAt: number;
  /** The record's TTL when last received, in milliseconds (clamped). */
  readonly ttlMs: number;
  /** When the record leaves the cache. */
  readonly expiresAt: number;
  /**
   * Whether the record was condemned by a goodbye or by the cache-flush bit
   * of a newer record: it expires within {@linkcode EXPIRY_GRACE_MS} and is
   * no longer refreshed, but a new copy of it received in time rescues it.
   */
  readonly expiring: boolean;
  /** The refresh points still ahead, ascending (empty once expiring). */
  readonly refreshAt: readonly number[];
}

/**
 * What {@linkcode RecordCache.add} did with the record:
 * - `"new"`: it was not cached, now it is;
 * - `"refreshed"`: it was cached (same name, type and RDATA): its TTL, expiry
 *   and refresh points start again, and an expiring record is rescued;
 * - `"goodbye"`: a TTL of 0 for a cached record: it now expires in 1 s;
 * - `"ignored"`: a TTL of 0 for a record that was not cached.
 */
export type CacheAddKind = "new" | "refreshed" | "goodbye" | "ignored";

/** The outcome of {@linkcode RecordCache.add}. */
export interface CacheAddResult {
  /** What happened to the record itself. */
  kind: CacheAddKind;
  /** The record's cache entry, unless the record was ignored. */
  entry: CachedRecord | undefined;
  /**
   * Other records of the same name and type that the record's cache-flush
   * bit condemned (RFC 6762 §10.2): they now expire in 1 s. Non-empty means
   * the record replaced (part of) a cached record set.
   */
  flushed: CachedRecord[];
  /** Records evicted to keep the cache within its bound. */
  evicted: CachedRecord[];
}

/** A cache entry; handed out as a read-only {@linkcode CachedRecord}. */
interface Entry {
  key: string;
  nameKey: string;
  record: MdnsRecord;
  receivedAt: number;
  ttlMs: number;
  expiresAt: number;
  expiring: boolean;
  refreshAt: number[];
  /** Bumped whenever `expiresAt` changes, to invalidate stale heap items. */
  expiryGeneration: number;
  /** Bumped whenever `refreshAt` changes. */
  refreshGeneration: number;
}

interface HeapItem {
  at: number;
  sequence: number;
  entry: Entry;
  generation: number;
}

/**
 * A binary min-heap of (time, insertion order) with lazy deletion: an item is
 * stale when its entry left the cache or its generation moved on; stale items
 * are dropped when they reach the top or when the heap is rebuilt.
 */
class LazyHeap {
  #items: HeapItem[] = [];
  #sequence = 0;
  readonly #isValid: (item: HeapItem) => boolean;

  constructor(isValid: (item: HeapItem) => boolean) {
    this.#isValid = isValid;
  }

  get length(): number {
    return this.#items.length;
  }

  push(at: number, entry: Entry, generation: number): void {
    this.#items.push({ at, sequence: this.#sequence++, entry, generation });
    this.#up(this.#items.length - 1);
  }

  /** The earliest valid item, dropping stale ones on the way. */
  peek(): HeapItem | undefined {
    while (this.#items.length > 0) {
      const top = this.#items[0];
      if (this.#isValid(top)) return top;
      this.#removeTop();
    }
    return undefined;
  }

  /** Removes and returns the earliest valid item. */
  pop(): HeapItem | undefined {
    const top = this.peek();
    if (top !== undefined) this.#removeTop();
    return top;
  }

  /** Replaces the content with `items` (valid ones), keeping their order of insertion. */
  rebuild(items: HeapItem[]): void {
    this.#items = items.filter(this.#isValid).sort(compareItems);
  }

  validItems(): HeapItem[] {
    return this.#items.filter(this.#isValid);
  }

  clear(): void {
    this.#items = [];
  }

  #removeTop(): void {
    const last = this.#items.pop()!;
    if (this.#items.length === 0) return;
    this.#items[0] = last;
    this.#down(0);
  }

  #up(index: number): void {
    const items = this.#items;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (compareItems(items[index], items[parent]) >= 0) return;
      [items[index], items[parent]] = [items[parent], items[index]];
      index = parent;
    }
  }

  #down(index: number): void {
    const items = this.#items;
    for (;;) {
      const left = 2 * index + 1;
      const right = left + 1;
      let smallest = index;
      if (left < items.length && compareItems(items[left], items[smallest]) < 0) smallest = left;
      if (right < items.length && compareItems(items[right], items[smallest]) < 0) {
        smallest = right;
      }
      if (smallest === index) return;
      [items[index], items[smallest]] = [items[smallest], items[index]];
      index = smallest;
    }
  }
}

function compareItems(a: HeapItem, b: HeapItem): number {
  return a.at !== b.at ? a.at - b.at : a.sequence - b.sequence;
}

function positiveInteger(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot create the record cache as '${field}' must be an integer >= 1: current value is ${value}`,
    );
  }
  return value;
}

/**
 * The record cache of RFC 6762 §10, keyed by record identity (name
 * case-insensitively, type, RDATA; see `recordKey`).
 *
 * - A record received with a TTL above 0 is added or refreshed: it expires
 *   TTL seconds later (clamped to `maxTtlSeconds`), with refresh points at
 *   80, 85, 90 and 95 % of its TTL plus 0-2 % random each (§5.2).
 * - A goodbye (TTL 0) for a cached record makes it expire 1 s later instead
 *   of at once (§10.1); a goodbye for an unknown record is ignored.
 * - The cache-flush bit (§10.2) on a record with a TTL above 0 condemns the
 *   other records of the same name and type that were received more than
 *   1 s ago: they expire 1 s later. Records received within the last second
 *   (the rest of the same announcement, say) stay. A goodbye never flushes
 *   its siblings.
 * - At most `maxRecords` records are kept; adding one more evicts the record
 *   closest to expiry, counted in {@linkcode RecordCache.evictions}.
 *
 * The cache never removes a record by itself: {@linkcode RecordCache.expire}
 * does, when the owner calls it.
 *
 * @example
 * ```ts ignore
 * const cache = new RecordCache({ random: () => 0 });
 * cache.add({ name: "h.local", type: "A", ttl: 120, flush: true, data: "10.0.0.1" }, 0);
 * cache.find("H.local", "A").length; // 1
 * cache.nextDeadline(); // 96_000: the first refresh point, 80 % of 120 s
 * cache.expire(120_000).length; // 1
 * ```
 */
export class RecordCache {
  readonly #maxRecords: number;
  readonly #maxTtlMs: number;
  readonly #random: () => number;
  readonly #entries = new Map<string, Entry>();
  /** nameKey → (recordKey → entry), for lookups by name. */
  readonly #byName = new Map<string, Map<string, Entry>>();
  readonly #expiries = new LazyHeap((item) =>
    this.#entries.get(item.entry.key) === item.entry &&
    item.entry.expiryGeneration === item.generation
  );
  readonly #refreshes = new LazyHeap((item) =>
    this.#entries.get(item.entry.key) === item.entry &&
    item.entry.refreshGeneration === item.generation
  );
  #evictions = 0;

  /**
   * Creates an empty cache.
   *
   * @param options The bound, the longest TTL and the random source.
   * @throws {RangeError} When `maxRecords` or `maxTtlSeconds` is not an integer >= 1.
   */
  constructor(options: RecordCacheOptions = {}) {
    this.#maxRecords = positiveInteger(options.maxRecords ?? DEFAULT_MAX_RECORDS, "maxRecords");
    this.#maxTtlMs = positiveInteger(
      options.maxTtlSeconds ?? DEFAULT_MAX_TTL_SECONDS,
      "maxTtlSeconds",
    ) * 1000;
    this.#random = options.random ?? Math.random;
  }

  /** How many records are cached (including expiring ones not yet removed). */
  get size(): number {
    return this.#entries.size;
  }

  /** How many records were evicted to keep the cache within its bound, since creation. */
  get evictions(): number {
    return this.#evictions;
  }

  /** The most records kept. */
  get maxRecords(): number {
    return this.#maxRecords;
  }

  /**
   * Adds (or refreshes, or says goodbye to) a record received in a response
   * at `nowMs`, applying the cache-flush rule.
   *
   * @param record A record from the answer or additional section of a response.
   * @param nowMs The current time, in milliseconds.
   * @returns What changed.
   * @throws {InvalidRecordError} (from `_records.ts`) when the record's data is malformed.
   */
  add(record: MdnsRecord, nowMs: number): CacheAddResult {
    const key = recordKey(record);
    const existing = this.#entries.get(key);
    const ttlMs = this.#ttlMs(record.ttl);
    if (ttlMs === 0) {
      if (existing === undefined) {
        return { kind: "ignored", entry: undefined, flushed: [], evicted: [] };
      }
      this.#condemn(existing, nowMs);
      return { kind: "goodbye", entry: existing, flushed: [], evicted: [] };
    }
    const stored = { ...record, ttl: ttlMs / 1000 } as MdnsRecord;
    const flushed = record.flush ? this.#flushSiblings(key, record, nowMs) : [];
    if (existing !== undefined) {
      existing.record = stored;
      this.#arm(existing, nowMs, ttlMs);
      return { kind: "refreshed", entry: existing, flushed, evicted: [] };
    }
    const evicted: CachedRecord[] = [];
    while (this.#entries.size >= this.#maxRecords) {
      const victim = this.#expiries.pop();
      if (victim === undefined) break;
      this.#remove(victim.entry);
      this.#evictions++;
      evicted.push(victim.entry);
    }
    const entry: Entry = {
      key,
      nameKey: nameKey(record.name),
      record: stored,
      receivedAt: nowMs,
      ttlMs,
      expiresAt: nowMs,
      expiring: false,
      refreshAt: [],
      expiryGeneration: 0,
      refreshGeneration: 0,
    };
    this.#entries.set(key, entry);
    let names = this.#byName.get(entry.nameKey);
    if (names === undefined) {
      names = new Map();
      this.#byName.set(entry.nameKey, names);
    }
    names.set(key, entry);
    this.#arm(entry, nowMs, ttlMs);
    return { kind: "new", entry, flushed, evicted };
  }

  /**
   * Removes every record whose expiry is at or before `nowMs`.
   *
   * @param nowMs The current time, in milliseconds.
   * @returns The removed records, soonest-expiring first.
   */
  expire(nowMs: number): CachedRecord[] {
    const removed: CachedRecord[] = [];
    for (let top = this.#expiries.peek(); top !== undefined && top.at <= nowMs;) {
      this.#expiries.pop();
      this.#remove(top.entry);
      removed.push(top.entry);
      top = this.#expiries.peek();
    }
    return removed;
  }

  /**
   * The records that passed one of their refresh points at or before
   * `nowMs` since the last call, each once, earliest first. A record whose
   * several points all passed is reported once and those points are used up.
   *
   * @param nowMs The current time, in milliseconds.
   */
  dueRefreshes(nowMs: number): CachedRecord[] {
    const due: CachedRecord[] = [];
    for (let top = this.#refreshes.peek(); top !== undefined && top.at <= nowMs;) {
      this.#refreshes.pop();
      const entry = top.entry;
      while (entry.refreshAt.length > 0 && entry.refreshAt[0] <= nowMs) entry.refreshAt.shift();
      entry.refreshGeneration++;
      if (entry.refreshAt.length > 0) {
        this.#refreshes.push(entry.refreshAt[0], entry, entry.refreshGeneration);
      }
      due.push(entry);
      top = this.#refreshes.peek();
    }
    this.#compact();
    return due;
  }

  /**
   * The earliest time at which {@linkcode RecordCache.expire} or
   * {@linkcode RecordCache.dueRefreshes} has something to do, or `undefined`
   * when the cache is empty.
   */
  nextDeadline(): number | undefined {
    const expiry = this.#expiries.peek()?.at;
    const refresh = this.#refreshes.peek()?.at;
    if (expiry === undefined) return refresh;
    if (refresh === undefined) return expiry;
    return Math.min(expiry, refresh);
  }

  /**
   * The cached records owned by `name` (case-insensitive), of `type` when
   * given, in the order they were first cached. Expired records that
   * {@linkcode RecordCache.expire} has not removed yet are included.
   *
   * @param name An owner name, with or without the trailing dot.
   * @param type Only records of this type.
   */
  find(name: string, type?: RecordType): CachedRecord[] {
    const names = this.#byName.get(nameKey(name));
    if (names === undefined) return [];
    const found: CachedRecord[] = [];
    for (const entry of names.values()) {
      if (type === undefined || entry.record.type === type) found.push(entry);
    }
    return found;
  }

  /**
   * The cache entry of this very record (same name, type and RDATA), if cached.
   *
   * @throws {InvalidRecordError} (from `_records.ts`) when the record's data is malformed.
   */
  get(record: MdnsRecord): CachedRecord | undefined {
    return this.#entries.get(recordKey(record));
  }

  /** Every cached record, in the order they were first cached. */
  records(): CachedRecord[] {
    return [...this.#entries.values()];
  }

  /** Forgets every record (the eviction count stays). */
  clear(): void {
    this.#entries.clear();
    this.#byName.clear();
    this.#expiries.clear();
    this.#refreshes.clear();
  }

  /** The TTL in milliseconds that the cache honours for a received TTL in seconds. */
  #ttlMs(ttl: number): number {
    if (!(ttl > 0)) return 0; // 0, negative or NaN: a goodbye
    return Math.min(Math.ceil(ttl) * 1000, this.#maxTtlMs);
  }

  /** (Re)starts an entry's life: received now with `ttlMs`, refresh points ahead. */
  #arm(entry: Entry, nowMs: number, ttlMs: number): void {
    entry.receivedAt = nowMs;
    entry.ttlMs = ttlMs;
    entry.expiring = false;
    this.#setExpiry(entry, nowMs + ttlMs);
    entry.refreshAt = REFRESH_FRACTIONS.map((fraction) =>
      nowMs + Math.floor(ttlMs * (fraction + this.#random() * REFRESH_JITTER))
    );
    entry.refreshGeneration++;
    this.#refreshes.push(entry.refreshAt[0], entry, entry.refreshGeneration);
    this.#compact();
  }

  /** Makes an entry expire within the grace period and stops refreshing it. */
  #condemn(entry: Entry, nowMs: number): void {
    entry.expiring = true;
    if (entry.refreshAt.length > 0) {
      entry.refreshAt = [];
      entry.refreshGeneration++;
    }
    const at = nowMs + EXPIRY_GRACE_MS;
    if (at < entry.expiresAt) this.#setExpiry(entry, at);
  }

  #setExpiry(entry: Entry, at: number): void {
    entry.expiresAt = at;
    entry.expiryGeneration++;
    this.#expiries.push(at, entry, entry.expiryGeneration);
  }

  /** The cache-flush rule: condemns same-name, same-type records received over 1 s ago. */
  #flushSiblings(key: string, record: MdnsRecord, nowMs: number): CachedRecord[] {
    const names = this.#byName.get(nameKey(record.name));
    if (names === undefined) return [];
    const flushed: CachedRecord[] = [];
    for (const entry of names.values()) {
      if (entry.key === key || entry.record.type !== record.type) continue;
      if (nowMs - entry.receivedAt <= EXPIRY_GRACE_MS) continue;
      if (entry.expiring && entry.expiresAt <= nowMs + EXPIRY_GRACE_MS) continue;
      this.#condemn(entry, nowMs);
      flushed.push(entry);
    }
    return flushed;
  }

  #remove(entry: Entry): void {
    this.#entries.delete(entry.key);
    const names = this.#byName.get(entry.nameKey);
    if (names !== undefined) {
      names.delete(entry.key);
      if (names.size === 0) this.#byName.delete(entry.nameKey);
    }
  }

  /** Rebuilds a heap that holds many more stale items than live ones. */
  #compact(): void {
    const limit = 2 * this.#entries.size + 64;
    if (this.#expiries.length > limit) this.#expiries.rebuild(this.#expiries.validItems());
    if (this.#refreshes.length > limit) this.#refreshes.rebuild(this.#refreshes.validItems());
  }
}
