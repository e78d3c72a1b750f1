import { assert, assertEquals, assertThrows } from "../_assert.ts";
import {
  DEFAULT_MAX_RECORDS,
  EXPIRY_GRACE_MS,
  RecordCache,
  type RecordCacheOptions,
} from "../../discovery/mdns/_cache.ts";
import { InvalidRecordError } from "../../discovery/mdns/_records.ts";
import type { ARecord, PtrRecord, SrvRecord, TxtRecord } from "../../discovery/mdns/_types.ts";

const HOST = "host-7.local";

function a(data: string, options: { ttl?: number; flush?: boolean; name?: string } = {}): ARecord {
  return {
    name: options.name ?? HOST,
    type: "A",
    ttl: options.ttl ?? 120,
    flush: options.flush ?? true,
    data,
  };
}

function ptr(instance: string, ttl = 4500): PtrRecord {
  return { name: "_x._tcp.local", type: "PTR", ttl, flush: false, data: instance };
}

function srv(port: number, ttl = 120): SrvRecord {
  return {
    name: "i._x._tcp.local",
    type: "SRV",
    ttl,
    flush: true,
    data: { priority: 0, weight: 0, port, target: HOST },
  };
}

function txt(text: string, ttl = 4500): TxtRecord {
  return {
    name: "i._x._tcp.local",
    type: "TXT",
    ttl,
    flush: true,
    data: [new TextEncoder().encode(text)],
  };
}

/** A cache whose refresh jitter is a fixed fraction of its 2 % range. */
function cache(options: RecordCacheOptions = {}): RecordCache {
  return new RecordCache({ random: () => 0, ...options });
}

function datas(records: { record: { data: unknown } }[]): unknown[] {
  return records.map((entry) => entry.record.data);
}

Deno.test("RecordCache.add caches a new record until its TTL runs out", () => {
  const c = cache();
  const result = c.add(a("10.0.0.1"), 5_000);
  assertEquals(result.kind, "new");
  assertEquals(result.flushed, []);
  assertEquals(result.evicted, []);
  assertEquals(result.entry?.receivedAt, 5_000);
  assertEquals(result.entry?.expiresAt, 125_000);
  assertEquals(result.entry?.ttlMs, 120_000);
  assertEquals(result.entry?.expiring, false);
  assertEquals(c.size, 1);
  assertEquals(c.expire(124_999), []);
  assertEquals(datas(c.expire(125_000)), ["10.0.0.1"]);
  assertEquals(c.size, 0);
  assertEquals(c.nextDeadline(), undefined);
});

Deno.test("RecordCache.find matches names case-insensitively and filters by type", () => {
  const c = cache();
  c.add(a("10.0.0.1"), 0);
  c.add({ name: "HOST-7.local", type: "AAAA", ttl: 120, flush: true, data: "fe80::1" }, 0);
  c.add(a("10.0.0.2", { name: "other.local" }), 0);
  assertEquals(datas(c.find("Host-7.Local")), ["10.0.0.1", "fe80::1"]);
  assertEquals(datas(c.find("host-7.local.", "A")), ["10.0.0.1"]);
  assertEquals(datas(c.find("HOST-7.LOCAL", "AAAA")), ["fe80::1"]);
  assertEquals(c.find("host-7.local", "SRV"), []);
  assertEquals(c.find("nobody.local"), []);
});

Deno.test("RecordCache.add treats a record with another name case as the same record", () => {
  const c = cache();
  c.add(a("10.0.0.1"), 0);
  const result = c.add(a("10.0.0.1", { name: "Host-7.LOCAL" }), 1_000);
  assertEquals(result.kind, "refreshed");
  assertEquals(c.size, 1);
  assertEquals(c.get(a("10.0.0.1"))?.record.name, "Host-7.LOCAL");
});

Deno.test("RecordCache.add refreshes a cached record: TTL, expiry and refresh points restart", () => {
  const c = cache();
  c.add(a("10.0.0.1"), 0);
  const result = c.add(a("10.0.0.1", { ttl: 60 }), 50_000);
  assertEquals(result.kind, "refreshed");
  assertEquals(result.entry?.receivedAt, 50_000);
  assertEquals(result.entry?.ttlMs, 60_000);
  assertEquals(result.entry?.expiresAt, 110_000);
  assertEquals(result.entry?.refreshAt, [98_000, 101_000, 104_000, 107_000]);
  assertEquals(c.expire(109_999), []);
  assertEquals(c.expire(110_000).length, 1);
});

Deno.test("RecordCache.add makes a goodbye expire the record 1 s later, not at once", () => {
  const c = cache();
  c.add(a("10.0.0.1"), 0);
  const result = c.add(a("10.0.0.1", { ttl: 0 }), 10_000);
  assertEquals(result.kind, "goodbye");
  assertEquals(result.entry?.expiring, true);
  assertEquals(result.entry?.expiresAt, 10_000 + EXPIRY_GRACE_MS);
  assertEquals(result.entry?.refreshAt, []);
  assertEquals(c.size, 1);
  assertEquals(c.nextDeadline(), 11_000);
  assertEquals(c.expire(10_999), []);
  assertEquals(datas(c.expire(11_000)), ["10.0.0.1"]);
  assertEquals(c.dueRefreshes(200_000), []);
});

Deno.test("RecordCache.add ignores a goodbye for a record it does not hold", () => {
  const c = cache();
  const result = c.add(a("10.0.0.1", { ttl: 0 }), 0);
  assertEquals(result.kind, "ignored");
  assertEquals(result.entry, undefined);
  assertEquals(c.size, 0);
});

Deno.test("RecordCache.add rescues a record said goodbye to when it comes again within 1 s", () => {
  const c = cache();
  c.add(a("10.0.0.1"), 0);
  c.add(a("10.0.0.1", { ttl: 0 }), 10_000);
  const result = c.add(a("10.0.0.1"), 10_500);
  assertEquals(result.kind, "refreshed");
  assertEquals(result.entry?.expiring, false);
  assertEquals(result.entry?.expiresAt, 130_500);
  assertEquals(c.expire(11_000), []);
  assertEquals(c.size, 1);
});

Deno.test("RecordCache.add with the cache-flush bit condemns siblings received over 1 s ago", () => {
  const c = cache();
  c.add(a("10.0.0.1"), 0);
  c.add(a("10.0.0.2"), 0);
  c.add(a("10.0.0.9", { name: "other.local" }), 0);
  c.add({ name: HOST, type: "AAAA", ttl: 120, flush: true, data: "fe80::1" }, 0);
  const result = c.add(a("10.0.0.3"), 5_000);
  assertEquals(result.kind, "new");
  assertEquals(datas(result.flushed), ["10.0.0.1", "10.0.0.2"]);
  for (const entry of result.flushed) {
    assertEquals(entry.expiring, true);
    assertEquals(entry.expiresAt, 6_000);
  }
  // Marked, not deleted: still there during the grace second.
  assertEquals(datas(c.find(HOST, "A")), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
  assertEquals(datas(c.expire(6_000)), ["10.0.0.1", "10.0.0.2"]);
  assertEquals(datas(c.find(HOST)), ["fe80::1", "10.0.0.3"]);
  assertEquals(c.find("other.local").length, 1);
});

Deno.test("RecordCache.add with the cache-flush bit keeps siblings received within the last second", () => {
  const c = cache();
  c.add(a("10.0.0.1"), 10_000);
  const result = c.add(a("10.0.0.2"), 11_000);
  assertEquals(result.flushed, []);
  assertEquals(c.get(a("10.0.0.1"))?.expiring, false);
  // One more millisecond and the first one counts as old.
  const later = c.add(a("10.0.0.3"), 11_001);
  assertEquals(datas(later.flushed), ["10.0.0.1"]);
});

Deno.test("RecordCache.add rebuilds a whole announced set under the cache-flush bit", () => {
  const c = cache();
  c.add(a("10.0.0.1"), 0);
  c.add(a("10.0.0.2"), 0);
  // The host announces 10.0.0.2 and 10.0.0.3 in one packet: 10.0.0.1 goes, 10.0.0.2 stays.
  c.add(a("10.0.0.2"), 5_000);
  c.add(a("10.0.0.3"), 5_000);
  assertEquals(c.get(a("10.0.0.1"))?.expiring, true);
  assertEquals(c.get(a("10.0.0.2"))?.expiring, false);
  assertEquals(datas(c.expire(6_000)), ["10.0.0.1"]);
  assertEquals(datas(c.find(HOST, "A")), ["10.0.0.2", "10.0.0.3"]);
});

Deno.test("RecordCache.add without the cache-flush bit adds to the set", () => {
  const c = cache();
  c.add(ptr("one._x._tcp.local"), 0);
  const result = c.add(ptr("two._x._tcp.local"), 5_000);
  assertEquals(result.flushed, []);
  assertEquals(c.find("_x._tcp.local", "PTR").length, 2);
});

Deno.test("RecordCache.add does not flush siblings on a goodbye with the cache-flush bit", () => {
  const c = cache();
  c.add(a("10.0.0.1"), 0);
  c.add(a("10.0.0.2"), 0);
  const result = c.add(a("10.0.0.1", { ttl: 0 }), 5_000);
  assertEquals(result.kind, "goodbye");
  assertEquals(result.flushed, []);
  assertEquals(c.get(a("10.0.0.2"))?.expiring, false);
});

Deno.test("RecordCache replaces an SRV record under the cache-flush bit", () => {
  const c = cache();
  c.add(srv(8080), 0);
  const result = c.add(srv(9090), 3_000);
  assertEquals(result.kind, "new");
  assertEquals(result.flushed.map((entry) => (entry.record as SrvRecord).data.port), [8080]);
  c.expire(4_000);
  assertEquals(c.find("i._x._tcp.local", "SRV").map((e) => (e.record as SrvRecord).data.port), [
    9090,
  ]);
  assertEquals(c.find("i._x._tcp.local", "TXT"), []);
  c.add(txt("a=1"), 4_000);
  assertEquals(c.find("i._x._tcp.local").length, 2);
});

Deno.test("RecordCache computes refresh points at 80, 85, 90 and 95 % of the TTL plus up to 2 %", () => {
  const low = cache({ random: () => 0 });
  assertEquals(low.add(a("10.0.0.1"), 1_000).entry?.refreshAt, [97_000, 103_000, 109_000, 115_000]);
  const high = cache({ random: () => 0.999_999 });
  assertEquals(high.add(a("10.0.0.1"), 1_000).entry?.refreshAt, [
    99_399,
    105_399,
    111_399,
    117_399,
  ]);
  const draws: number[] = [];
  const seeded = cache({
    random: () => {
      const value = [0.25, 0.5, 0.75, 0][draws.length % 4];
      draws.push(value);
      return value;
    },
  });
  assertEquals(seeded.add(a("10.0.0.1", { ttl: 100 }), 0).entry?.refreshAt, [
    80_500,
    86_000,
    91_500,
    95_000,
  ]);
  assertEquals(draws.length, 4);
});

Deno.test("RecordCache.dueRefreshes reports each refresh point once, in time order", () => {
  const c = cache();
  c.add(a("10.0.0.1"), 0); // points 96, 102, 108, 114 s
  c.add(a("10.0.0.2", { ttl: 100 }), 0); // points 80, 85, 90, 95 s
  assertEquals(c.nextDeadline(), 80_000);
  assertEquals(c.dueRefreshes(79_999), []);
  assertEquals(datas(c.dueRefreshes(80_000)), ["10.0.0.2"]);
  assertEquals(c.dueRefreshes(80_000), []);
  assertEquals(c.nextDeadline(), 85_000);
  assertEquals(datas(c.dueRefreshes(96_000)), ["10.0.0.2", "10.0.0.1"]);
  assertEquals(c.get(a("10.0.0.2"))?.refreshAt, []);
  assertEquals(c.get(a("10.0.0.1"))?.refreshAt, [102_000, 108_000, 114_000]);
  assertEquals(c.nextDeadline(), 100_000); // 10.0.0.2 expires before 10.0.0.1's next point
  assertEquals(datas(c.expire(100_000)), ["10.0.0.2"]);
  assertEquals(c.nextDeadline(), 102_000);
});

Deno.test("RecordCache.dueRefreshes stops once a refresh answer restarts the record", () => {
  const c = cache();
  c.add(a("10.0.0.1"), 0);
  assertEquals(c.dueRefreshes(96_000).length, 1);
  c.add(a("10.0.0.1"), 97_000); // the answer to the refresh query
  assertEquals(c.dueRefreshes(114_000), []);
  assertEquals(c.expire(120_000), []);
  assertEquals(c.nextDeadline(), 97_000 + 96_000);
});

Deno.test("RecordCache clamps a huge TTL to maxTtlSeconds", () => {
  const c = cache();
  const result = c.add(a("10.0.0.1", { ttl: 4_294_967_295 }), 0);
  assertEquals(result.entry?.ttlMs, 86_400_000);
  assertEquals(result.entry?.record.ttl, 86_400);
  assertEquals(result.entry?.expiresAt, 86_400_000);
  const short = cache({ maxTtlSeconds: 60 });
  assertEquals(short.add(a("10.0.0.1"), 0).entry?.expiresAt, 60_000);
});

Deno.test("RecordCache evicts the record closest to expiry past its bound, and counts it", () => {
  const c = cache({ maxRecords: 3 });
  c.add(a("10.0.0.1", { ttl: 300 }), 0);
  c.add(a("10.0.0.2", { ttl: 100 }), 0);
  c.add(a("10.0.0.3", { ttl: 200 }), 0);
  const result = c.add(a("10.0.0.4", { ttl: 400 }), 0);
  assertEquals(result.kind, "new");
  assertEquals(datas(result.evicted), ["10.0.0.2"]);
  assertEquals(c.size, 3);
  assertEquals(c.evictions, 1);
  // Refreshing a cached record never evicts.
  assertEquals(c.add(a("10.0.0.1", { ttl: 300 }), 1).evicted, []);
  assertEquals(c.evictions, 1);
  const next = c.add(a("10.0.0.5", { ttl: 500 }), 2);
  assertEquals(datas(next.evicted), ["10.0.0.3"]);
  assertEquals(c.evictions, 2);
  assertEquals(datas(c.find(HOST, "A")).sort(), ["10.0.0.1", "10.0.0.4", "10.0.0.5"]);
});

Deno.test("RecordCache stays within its default bound under a flood of distinct records", () => {
  const c = new RecordCache({ random: () => 0.5 });
  assertEquals(c.maxRecords, DEFAULT_MAX_RECORDS);
  for (let i = 0; i < 12_000; i++) {
    c.add(a(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, { name: `h${i}.local` }), i);
  }
  assertEquals(c.size, 10_000);
  assertEquals(c.evictions, 2_000);
  // The oldest went first (same TTL: the earliest received expires first).
  assertEquals(c.find("h1999.local"), []);
  assertEquals(c.find("h2000.local").length, 1);
});

Deno.test("RecordCache keeps its deadlines right after many refreshes of one record", () => {
  const c = cache();
  for (let i = 0; i < 1_000; i++) c.add(a("10.0.0.1"), i * 10);
  c.add(a("10.0.0.2", { ttl: 10 }), 10_000);
  assertEquals(c.nextDeadline(), 18_000);
  assertEquals(datas(c.dueRefreshes(18_000)), ["10.0.0.2"]);
  assertEquals(datas(c.expire(20_000)), ["10.0.0.2"]);
  assertEquals(c.nextDeadline(), 9_990 + 96_000);
  assertEquals(c.expire(9_990 + 119_999), []);
  assertEquals(datas(c.expire(9_990 + 120_000)), ["10.0.0.1"]);
  assertEquals(c.size, 0);
});

Deno.test("RecordCache.expire returns the expired records soonest first", () => {
  const c = cache();
  c.add(a("10.0.0.1", { ttl: 30 }), 0);
  c.add(a("10.0.0.2", { ttl: 10 }), 0);
  c.add(a("10.0.0.3", { ttl: 20 }), 0);
  assertEquals(datas(c.expire(30_000)), ["10.0.0.2", "10.0.0.3", "10.0.0.1"]);
});

Deno.test("RecordCache.clear forgets every record but keeps the eviction count", () => {
  const c = cache({ maxRecords: 1 });
  c.add(a("10.0.0.1"), 0);
  c.add(a("10.0.0.2"), 0);
  c.clear();
  assertEquals(c.size, 0);
  assertEquals(c.records(), []);
  assertEquals(c.nextDeadline(), undefined);
  assertEquals(c.evictions, 1);
});

Deno.test("RecordCache.add throws InvalidRecordError for malformed data and caches nothing", () => {
  const c = cache();
  assertThrows(() => c.add(a("10.0.0.300"), 0), InvalidRecordError, "dotted IPv4");
  assertEquals(c.size, 0);
});

Deno.test("RecordCache rejects a bound or a TTL clamp that is not an integer >= 1", () => {
  assertThrows(() => new RecordCache({ maxRecords: 0 }), RangeError, "'maxRecords'");
  assertThrows(() => new RecordCache({ maxTtlSeconds: 1.5 }), RangeError, "'maxTtlSeconds'");
  assert(new RecordCache({ maxRecords: 1 }) instanceof RecordCache);
});
