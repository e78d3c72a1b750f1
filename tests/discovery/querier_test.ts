import { assert, assertEquals, assertThrows } from "../_assert.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import { type BrowseEvent, Querier, type QuerierOptions } from "../../discovery/mdns/_querier.ts";
import {
  type AaaaRecord,
  type ARecord,
  emptyMessage,
  type Endpoint,
  type EngineContext,
  type MdnsMessage,
  type MdnsRecord,
  type PtrRecord,
  type SrvRecord,
  type TxtRecord,
} from "../../discovery/mdns/_types.ts";

const TYPE = "_x._tcp.local";
const INSTANCE = "Sensor 7._x._tcp.local";
const HOST = "host-7.local";
const PEER: Endpoint = { address: "10.0.0.7", port: 5353 };
const encoder = new TextEncoder();

// ---------------------------------------------------------------------------
// Records and messages
// ---------------------------------------------------------------------------

function ptr(options: { ttl?: number; instance?: string; type?: string } = {}): PtrRecord {
  return {
    name: options.type ?? TYPE,
    type: "PTR",
    ttl: options.ttl ?? 4500,
    flush: false,
    data: options.instance ?? INSTANCE,
  };
}

function srv(
  options: { ttl?: number; port?: number; target?: string; name?: string; flush?: boolean } = {},
): SrvRecord {
  return {
    name: options.name ?? INSTANCE,
    type: "SRV",
    ttl: options.ttl ?? 120,
    flush: options.flush ?? true,
    data: { priority: 0, weight: 0, port: options.port ?? 8080, target: options.target ?? HOST },
  };
}

function txt(strings: string[], options: { ttl?: number; name?: string } = {}): TxtRecord {
  return {
    name: options.name ?? INSTANCE,
    type: "TXT",
    ttl: options.ttl ?? 4500,
    flush: true,
    data: strings.map((string) => encoder.encode(string)),
  };
}

function a(data: string, options: { ttl?: number; name?: string; flush?: boolean } = {}): ARecord {
  return {
    name: options.name ?? HOST,
    type: "A",
    ttl: options.ttl ?? 120,
    flush: options.flush ?? true,
    data,
  };
}

function aaaa(data: string, options: { ttl?: number; name?: string } = {}): AaaaRecord {
  return { name: options.name ?? HOST, type: "AAAA", ttl: options.ttl ?? 120, flush: true, data };
}

function response(answers: MdnsRecord[], additionals: MdnsRecord[] = []): MdnsMessage {
  const message = emptyMessage(true);
  message.answers.push(...answers);
  message.additionals.push(...additionals);
  return message;
}

function query(
  questions: { name: string; type: "PTR" | "SRV" | "A"; unicastResponse?: boolean }[],
  knownAnswers: MdnsRecord[] = [],
): MdnsMessage {
  const message = emptyMessage(false);
  for (const question of questions) {
    message.questions.push({ unicastResponse: false, ...question });
  }
  message.answers.push(...knownAnswers);
  return message;
}

// ---------------------------------------------------------------------------
// The fake engine
// ---------------------------------------------------------------------------

interface Sent {
  at: number;
  message: MdnsMessage;
}

/** A seeded PRNG (mulberry32), uniform in [0, 1). */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * A querier on a ManualScheduler. `random` defaults to a constant 0.5: the
 * first query is then due at 70 ms and every refresh point gets +1 %.
 */
class Harness {
  readonly scheduler = new ManualScheduler();
  readonly sent: Sent[] = [];
  readonly events: BrowseEvent[] = [];
  readonly querier: Querier;
  sendFails = false;

  constructor(options: QuerierOptions & { random?: () => number } = {}) {
    const random = options.random ?? (() => 0.5);
    const ctx: EngineContext = {
      send: (message) => {
        this.sent.push({ at: this.scheduler.now, message: structuredClone(message) });
        return this.sendFails ? Promise.reject(new Error("no route")) : Promise.resolve();
      },
      now: () => this.scheduler.now,
      setTimeout: (callback, ms) => this.scheduler.setTimeout(callback, ms),
      clearTimeout: (handle) => this.scheduler.clearTimeout(handle),
      random,
      addresses: () => ["10.0.0.1"],
    };
    this.querier = new Querier(ctx, options);
  }

  browse(type = TYPE): { close(): void } {
    return this.querier.browse(type, (event) => this.events.push(event));
  }

  receive(message: MdnsMessage, from: Endpoint = PEER): void {
    this.querier.handle(message, from);
  }

  advance(ms: number): void {
    this.scheduler.advance(ms);
  }

  /** The sent queries that ask the browse question (one PTR question for `type`). */
  browseQueries(type = TYPE): Sent[] {
    return this.sent.filter(({ message }) =>
      message.questions.length === 1 && message.questions[0].type === "PTR" &&
      message.questions[0].name.toLowerCase() === type.toLowerCase()
    );
  }

  /** The sent queries that ask anything but a PTR. */
  otherQueries(): Sent[] {
    return this.sent.filter(({ message }) => message.questions.some((q) => q.type !== "PTR"));
  }

  /** Takes the events recorded so far. */
  take(): BrowseEvent[] {
    return this.events.splice(0);
  }
}

function questions(sent: Sent): string[] {
  return sent.message.questions.map((q) => `${q.name} ${q.type}${q.unicastResponse ? " QU" : ""}`);
}

function summary(events: BrowseEvent[]): string[] {
  return events.map((event) =>
    event.kind === "updated"
      ? `updated ${event.instance.name} [${event.changed.join(",")}]`
      : `${event.kind} ${event.instance.name}`
  );
}

function bytes(strings: string[]): Uint8Array[] {
  return strings.map((string) => encoder.encode(string));
}

/** The full announcement of INSTANCE in one packet, as a DNS-SD responder sends it. */
function announcement(options: { port?: number; addresses?: string[]; text?: string[] } = {}) {
  return response(
    [ptr()],
    [
      srv({ port: options.port }),
      txt(options.text ?? ["name=seven"]),
      ...(options.addresses ?? ["10.0.0.7"]).map((address) =>
        address.includes(":") ? aaaa(address) : a(address)
      ),
    ],
  );
}

// ---------------------------------------------------------------------------
// Continuous querying
// ---------------------------------------------------------------------------

Deno.test("Querier sends the first browse query 20-120 ms after browse, with the QU bit", () => {
  const h = new Harness();
  h.browse();
  h.advance(69);
  assertEquals(h.sent.length, 0);
  h.advance(1);
  assertEquals(h.sent.length, 1);
  assertEquals(h.sent[0].at, 70);
  assertEquals(questions(h.sent[0]), [`${TYPE} PTR QU`]);
  assertEquals(h.sent[0].message.response, false);
  assertEquals(h.sent[0].message.answers, []);
  h.querier.close();
});

Deno.test("Querier draws the first-query delay from 20-120 ms with the injected randomness", () => {
  const delays: number[] = [];
  for (let seed = 1; seed <= 50; seed++) {
    const h = new Harness({ random: seeded(seed) });
    h.browse();
    h.advance(200);
    delays.push(h.sent[0].at);
    h.querier.close();
  }
  assert(delays.every((delay) => delay >= 20 && delay < 120), `delays ${delays}`);
  assert(new Set(delays).size > 10, "the delays vary with the seed");
  // Same seed, same schedule.
  const again = new Harness({ random: seeded(7) });
  again.browse();
  again.advance(200);
  assertEquals(again.sent[0].at, delays[6]);
  again.querier.close();
});

Deno.test("Querier spaces browse queries 1 s, 2 s, 4 s ... apart, QM after the first", () => {
  const h = new Harness();
  h.browse();
  h.advance(70 + 1_000 + 2_000 + 4_000 + 8_000);
  assertEquals(h.sent.map((sent) => sent.at), [70, 1_070, 3_070, 7_070, 15_070]);
  assertEquals(h.sent.slice(1).map(questions), Array(4).fill([`${TYPE} PTR`]));
  assertEquals(h.querier.counters.browseQueries, 5);
  h.querier.close();
});

Deno.test("Querier caps the gap between browse queries at 60 minutes", () => {
  const h = new Harness();
  h.browse();
  h.advance(10 * 3_600_000);
  const times = h.sent.map((sent) => sent.at);
  const gaps = times.slice(1).map((time, i) => time - times[i]);
  const doubling = Array.from({ length: 12 }, (_, i) => 1_000 * 2 ** i); // 1 s .. 2048 s
  assertEquals(gaps.slice(0, 12), doubling);
  assert(gaps.length > 14);
  assertEquals(gaps.slice(12), Array(gaps.length - 12).fill(3_600_000));
  h.querier.close();
});

Deno.test("Querier lists the PTR answers it knows with more than half their TTL left", () => {
  const h = new Harness();
  h.browse();
  h.advance(80);
  h.receive(response([ptr({ ttl: 100 }), ptr({ ttl: 100, instance: "other._x._tcp.local" })]));
  h.receive(response([ptr({ ttl: 10, instance: "short._x._tcp.local" })]));
  h.advance(63_000);
  const queries = h.browseQueries();
  const known = queries.map(({ at, message }) => [
    at,
    ...message.answers.map((record) => `${(record as PtrRecord).data} ${record.ttl}`),
  ]);
  assertEquals(known, [
    [70],
    [1_070, `${INSTANCE} 99`, "other._x._tcp.local 99", "short._x._tcp.local 9"],
    [3_070, `${INSTANCE} 97`, "other._x._tcp.local 97", "short._x._tcp.local 7"], // 7.01 s of 10
    [7_070, `${INSTANCE} 93`, "other._x._tcp.local 93"], // short: 3.01 s left, under half
    // The refresh queries for the short-lived PTR (81, 86, 91, 96 % of 10 s) list the others.
    [8_180, `${INSTANCE} 91`, "other._x._tcp.local 91"],
    [8_680, `${INSTANCE} 91`, "other._x._tcp.local 91"],
    [9_180, `${INSTANCE} 90`, "other._x._tcp.local 90"],
    [9_680, `${INSTANCE} 90`, "other._x._tcp.local 90"],
    [15_070, `${INSTANCE} 85`, "other._x._tcp.local 85"],
    [31_070, `${INSTANCE} 69`, "other._x._tcp.local 69"],
    [63_070], // 37 s left of 100 s: under half
  ]);
  assertEquals(queries[1].message.answers.map((record) => record.flush), [false, false, false]);
  h.querier.close();
});

Deno.test("Querier shares one query schedule among browses of one type", () => {
  const h = new Harness();
  const first = h.browse();
  h.advance(500);
  const second = h.browse("_X._TCP.local.");
  h.advance(3_000);
  assertEquals(h.sent.map((sent) => sent.at), [70, 1_070, 3_070]);
  first.close();
  h.advance(4_000);
  assertEquals(h.sent.map((sent) => sent.at), [70, 1_070, 3_070, 7_070]);
  second.close();
  h.advance(100_000);
  assertEquals(h.sent.length, 4);
  assertEquals(h.scheduler.pending, 0);
  h.querier.close();
});

Deno.test("Querier skips a browse query another host just asked with no answer it lacks", () => {
  const h = new Harness();
  h.browse();
  h.advance(1_070); // queries at 70 and 1 070; the next is due at 3 070
  h.advance(1_500);
  const other: Endpoint = { address: "10.0.0.8", port: 5353 };
  h.receive(query([{ name: TYPE, type: "PTR" }]), other);
  assertEquals(h.querier.counters.suppressedQueries, 1);
  h.advance(1_000);
  assertEquals(h.sent.map((sent) => sent.at), [70, 1_070]);
  // Counted as sent at 2 570: the next gap is 4 s.
  h.advance(3_000);
  assertEquals(h.sent.map((sent) => sent.at), [70, 1_070, 6_570]);
  h.querier.close();
});

Deno.test("Querier still asks when the other query lists an answer it lacks, is QU, ours or early", () => {
  const h = new Harness();
  h.browse();
  h.advance(1_070);
  h.advance(1_500); // 2 570; ours is due at 3 070
  const foreign = ptr({ instance: "unknown._x._tcp.local" });
  h.receive(query([{ name: TYPE, type: "PTR" }], [foreign]));
  h.receive(query([{ name: TYPE, type: "PTR" }]), { address: "10.0.0.1", port: 5353 }); // ours
  h.receive(query([{ name: TYPE, type: "PTR", unicastResponse: true }]));
  h.advance(500);
  assertEquals(h.sent.map((sent) => sent.at), [70, 1_070, 3_070]);
  h.advance(1_000); // 4 070; ours is due at 7 070: too far off to count
  h.receive(query([{ name: TYPE, type: "PTR" }]));
  h.advance(3_000);
  assertEquals(h.sent.map((sent) => sent.at), [70, 1_070, 3_070, 7_070]);
  assertEquals(h.querier.counters.suppressedQueries, 0);
  h.querier.close();
});

// ---------------------------------------------------------------------------
// Resolution and events
// ---------------------------------------------------------------------------

Deno.test("Querier reports an instance announced in one packet with its additionals", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(announcement({ addresses: ["fe80::7", "10.0.0.7", "10.0.0.10", "10.0.0.9"] }));
  assertEquals(h.take(), [{
    kind: "added",
    instance: {
      name: INSTANCE,
      serviceType: TYPE,
      port: 8080,
      target: HOST,
      addresses: ["10.0.0.7", "10.0.0.9", "10.0.0.10", "fe80::7"],
      txt: bytes(["name=seven"]),
    },
  }]);
  assertEquals(h.otherQueries(), []);
  assertEquals(h.querier.counters.resolveQueries, 0);
  h.querier.close();
});

Deno.test("Querier reports added once PTR, SRV and an address are known, in any order", () => {
  const pieces: Record<string, MdnsRecord> = {
    PTR: ptr(),
    SRV: srv(),
    TXT: txt(["name=seven"]),
    A: a("10.0.0.7"),
  };
  const orders: string[][] = [];
  const permute = (rest: string[], prefix: string[]) => {
    if (rest.length === 0) orders.push(prefix);
    rest.forEach((piece, i) => permute(rest.filter((_, j) => j !== i), [...prefix, piece]));
  };
  permute(Object.keys(pieces), []);
  assertEquals(orders.length, 24);
  for (const order of orders) {
    const h = new Harness();
    h.browse();
    h.advance(100);
    const seen: string[] = [];
    for (const piece of order) {
      h.receive(response([pieces[piece]]));
      seen.push(piece);
      const complete = ["PTR", "SRV", "A"].every((needed) => seen.includes(needed));
      const events = h.take();
      const justCompleted = complete && ["PTR", "SRV", "A"].includes(piece);
      if (justCompleted) {
        assertEquals(summary(events), [`added ${INSTANCE}`], `order ${order}`);
        assertEquals(events[0].instance.addresses, ["10.0.0.7"]);
        assertEquals(
          events[0].instance.txt,
          seen.includes("TXT") ? bytes(["name=seven"]) : [],
          `order ${order}`,
        );
      } else if (complete) {
        assertEquals(summary(events), [`updated ${INSTANCE} [txt]`], `order ${order}`);
      } else {
        assertEquals(events, [], `order ${order} after ${piece}`);
      }
    }
    h.querier.close();
  }
});

Deno.test("Querier asks for the missing SRV and TXT at once, then retries 1, 2, 4, 8 s later", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(response([ptr()]));
  assertEquals(h.otherQueries().map((sent) => [sent.at, questions(sent)]), [
    [100, [`${INSTANCE} SRV`, `${INSTANCE} TXT`]],
  ]);
  h.advance(60_000);
  assertEquals(h.otherQueries().map((sent) => sent.at), [100, 1_100, 3_100, 7_100, 15_100]);
  assertEquals(h.querier.counters.resolveQueries, 5);
  assertEquals(h.events, []);
  h.querier.close();
});

Deno.test("Querier asks for the A and AAAA records of the SRV target once the SRV is known", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(response([ptr()]));
  h.advance(400);
  h.receive(response([srv(), txt(["name=seven"])]));
  assertEquals(h.otherQueries().map((sent) => [sent.at, questions(sent)]), [
    [100, [`${INSTANCE} SRV`, `${INSTANCE} TXT`]],
    [500, [`${HOST} A`, `${HOST} AAAA`]],
  ]);
  h.advance(1_000);
  assertEquals(h.otherQueries().map((sent) => [sent.at, questions(sent)]).slice(2), [
    [1_500, [`${HOST} A`, `${HOST} AAAA`]],
  ]);
  h.receive(response([aaaa("fe80::7")]));
  assertEquals(summary(h.take()), [`added ${INSTANCE}`]);
  h.advance(60_000);
  assertEquals(h.otherQueries().length, 3);
  h.querier.close();
});

Deno.test("Querier asks for several instances in one query, retries included", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(response([ptr(), ptr({ instance: "b._x._tcp.local" })]));
  h.advance(1_000);
  const expected = [
    `${INSTANCE} SRV`,
    `${INSTANCE} TXT`,
    "b._x._tcp.local SRV",
    "b._x._tcp.local TXT",
  ];
  assertEquals(h.otherQueries().map((sent) => [sent.at, questions(sent)]), [
    [100, expected],
    [1_100, expected],
  ]);
  h.querier.close();
});

Deno.test("Querier asks again after giving up when the instance's PTR comes again", () => {
  const h = new Harness({ maxResolveAttempts: 2 });
  h.browse();
  h.advance(100);
  h.receive(response([ptr()]));
  h.advance(10_000);
  assertEquals(h.otherQueries().map((sent) => sent.at), [100, 1_100]);
  h.receive(response([ptr()]));
  assertEquals(h.otherQueries().map((sent) => sent.at), [100, 1_100, 10_100]);
  h.querier.close();
});

Deno.test("Querier reports what changed: port, target, addresses, txt", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(announcement());
  h.take();
  h.advance(2_000);
  h.receive(response([srv({ port: 9090 })]));
  h.advance(2_000);
  h.receive(response([txt(["name=seven", "v=2"])]));
  h.advance(2_000);
  h.receive(response([a("10.0.0.8", { flush: false })]));
  h.advance(2_000);
  h.receive(response([srv({ port: 9090, target: "Host-8.local" })], [a("10.0.0.80", {
    name: "host-8.local",
  })]));
  const events = h.take();
  assertEquals(summary(events), [
    `updated ${INSTANCE} [port]`,
    `updated ${INSTANCE} [txt]`,
    `updated ${INSTANCE} [addresses]`,
    `updated ${INSTANCE} [target,addresses]`,
  ]);
  assertEquals(events[0].instance.port, 9090);
  assertEquals(events[1].instance.txt, bytes(["name=seven", "v=2"]));
  assertEquals(events[2].instance.addresses, ["10.0.0.7", "10.0.0.8"]);
  assertEquals(events[3].instance.target, "Host-8.local");
  assertEquals(events[3].instance.addresses, ["10.0.0.80"]);
  h.querier.close();
});

Deno.test("Querier reports no update for an identical re-announcement", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(announcement());
  assertEquals(summary(h.take()), [`added ${INSTANCE}`]);
  for (let i = 0; i < 3; i++) {
    h.advance(1_500);
    h.receive(announcement());
  }
  h.receive(response([ptr({ instance: "SENSOR 7._X._TCP.LOCAL" })]));
  assertEquals(h.take(), []);
  h.querier.close();
});

Deno.test("Querier reports a cache-flush that replaces the address set as one update", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(announcement({ addresses: ["10.0.0.7", "10.0.0.17"] }));
  h.take();
  h.advance(5_000);
  h.receive(response([a("10.0.0.27")]));
  const events = h.take();
  assertEquals(summary(events), [`updated ${INSTANCE} [addresses]`]);
  assertEquals(events[0].instance.addresses, ["10.0.0.27"]);
  assertEquals(h.querier.cached(HOST, "A").length, 3); // the old ones linger for 1 s
  h.advance(1_000);
  assertEquals(h.take(), []);
  assertEquals(h.querier.cached(HOST, "A").map((entry) => entry.record.data), ["10.0.0.27"]);
  h.querier.close();
});

Deno.test("Querier reports the removal 1 s after a goodbye for the PTR", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(announcement());
  h.take();
  h.advance(5_000);
  h.receive(response([ptr({ ttl: 0 })]));
  assertEquals(h.take(), []);
  h.advance(999);
  assertEquals(h.take(), []);
  h.advance(1);
  const events = h.take();
  assertEquals(summary(events), [`removed ${INSTANCE}`]);
  assertEquals(events[0].instance.port, 8080);
  assertEquals(events[0].instance.addresses, ["10.0.0.7"]);
  assertEquals(h.scheduler.now, 6_100);
  h.querier.close();
});

Deno.test("Querier reports an instance removed and then added again when it comes back", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(announcement());
  h.advance(1_000);
  h.receive(
    response([ptr({ ttl: 0 }), srv({ ttl: 0 }), txt([], { ttl: 0 }), a("10.0.0.7", { ttl: 0 })]),
  );
  h.advance(1_000);
  h.receive(announcement({ port: 7070 }));
  const events = h.take();
  assertEquals(summary(events), [`added ${INSTANCE}`, `removed ${INSTANCE}`, `added ${INSTANCE}`]);
  assertEquals(events[2].instance.port, 7070);
  h.querier.close();
});

Deno.test("Querier asks at 80, 85, 90, 95 % of the TTL and removes the instance at its end", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(announcement()); // SRV and A: 120 s; PTR and TXT: 4500 s
  h.take();
  h.advance(120_000 - 1);
  const refreshes = h.sent.filter((sent) =>
    sent.at > 100 && sent.message.questions[0].type !== "PTR"
  );
  // random() = 0.5: +1 % jitter, so 81, 86, 91 and 96 % of 120 s after 100 ms.
  assertEquals(refreshes.map((sent) => [sent.at, questions(sent)]), [
    [97_300, [`${INSTANCE} SRV`, `${HOST} A`]],
    [103_300, [`${INSTANCE} SRV`, `${HOST} A`]],
    [109_300, [`${INSTANCE} SRV`, `${HOST} A`]],
    [115_300, [`${INSTANCE} SRV`, `${HOST} A`]],
  ]);
  assertEquals(refreshes[0].message.answers, []);
  assertEquals(h.querier.counters.refreshQueries, 4);
  assertEquals(h.take(), []);
  h.advance(1);
  assertEquals(summary(h.take()), [`removed ${INSTANCE}`]);
  assertEquals(h.scheduler.now, 120_100);
  h.querier.close();
});

Deno.test("Querier keeps an instance whose refresh queries are answered", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(announcement());
  h.take();
  // A responder that answers every refresh query at once, for 1 000 s.
  let answered = 0;
  while (h.scheduler.now < 1_000_000) {
    const before = h.sent.length;
    h.scheduler.advanceToNext();
    for (const { message } of h.sent.slice(before)) {
      if (message.questions.some((question) => question.type === "SRV")) {
        h.receive(response([srv(), a("10.0.0.7")]));
        answered++;
      }
    }
  }
  assertEquals(h.take(), []);
  assert(answered >= 10, `answered ${answered} refresh queries`);
  // One query per TTL cycle: each answer restarts the refresh points at 80 %.
  assertEquals(h.querier.counters.refreshQueries, answered);
  assertEquals(h.querier.cached(INSTANCE, "SRV").length, 1);
  h.querier.close();
});

Deno.test("Querier removes the instance when its PTR reaches the end of its TTL", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(
    response([ptr({ ttl: 10 })], [srv({ ttl: 4500 }), txt([]), a("10.0.0.7", { ttl: 4500 })]),
  );
  assertEquals(summary(h.take()), [`added ${INSTANCE}`]);
  h.advance(10_000 - 1);
  const ptrRefreshes = h.sent.filter((sent) =>
    sent.at > 100 && sent.at % 1_000 !== 70 && sent.message.questions[0].type === "PTR"
  );
  assertEquals(ptrRefreshes.map((sent) => sent.at), [8_200, 8_700, 9_200, 9_700]);
  assertEquals(h.take(), []);
  h.advance(1);
  assertEquals(summary(h.take()), [`removed ${INSTANCE}`]);
  h.querier.close();
});

Deno.test("Querier removes the instance when its SRV or its last address expires", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(announcement());
  h.take();
  h.advance(1_000);
  h.receive(response([srv({ ttl: 0 })]));
  h.advance(1_000);
  assertEquals(summary(h.take()), [`removed ${INSTANCE}`]);
  // The PTR is still there: the querier asks for the SRV again.
  assertEquals(questions(h.otherQueries().at(-1)!), [`${INSTANCE} SRV`]);
  h.receive(response([srv()]));
  assertEquals(summary(h.take()), [`added ${INSTANCE}`]);
  h.advance(1_500);
  h.receive(response([a("10.0.0.7", { ttl: 0 })]));
  h.advance(1_000);
  assertEquals(summary(h.take()), [`removed ${INSTANCE}`]);
  assertEquals(questions(h.otherQueries().at(-1)!), [`${HOST} A`, `${HOST} AAAA`]);
  h.querier.close();
});

Deno.test("Querier matches names case-insensitively and reports them as received", () => {
  const h = new Harness();
  h.querier.browse("_X._TCP.Local.", (event) => h.events.push(event));
  h.advance(100);
  assertEquals(questions(h.sent[0]), ["_X._TCP.Local PTR QU"]);
  h.receive(response([ptr({ type: "_x._tcp.LOCAL", instance: "Sensor 7._X._tcp.local" })]));
  h.receive(response([srv({ name: "sensor 7._x._TCP.local", target: "HOST-7.local" })]));
  h.receive(response([a("10.0.0.7", { name: "host-7.LOCAL" })]));
  const events = h.take();
  assertEquals(summary(events), ["added Sensor 7._X._tcp.local"]);
  assertEquals(events[0].instance.serviceType, "_X._TCP.Local");
  assertEquals(events[0].instance.target, "HOST-7.local");
  h.querier.close();
});

Deno.test("Querier keeps an instance while a PTR in another letter case is still live", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  h.receive(announcement());
  h.receive(response([ptr({ instance: "SENSOR 7._x._tcp.local" })]));
  h.advance(1_000);
  h.receive(response([ptr({ ttl: 0 })]));
  h.advance(5_000);
  assertEquals(summary(h.take()), [`added ${INSTANCE}`]);
  h.receive(response([ptr({ ttl: 0, instance: "SENSOR 7._x._tcp.local" })]));
  h.advance(1_000);
  assertEquals(summary(h.take()), [`removed ${INSTANCE}`]);
  h.querier.close();
});

Deno.test("Querier tells every browse of a type, and a late one what is known already", () => {
  const h = new Harness();
  const one: string[] = [];
  const two: string[] = [];
  const first = h.querier.browse(TYPE, (event) => one.push(event.kind));
  h.advance(100);
  h.receive(announcement());
  h.querier.browse(TYPE, (event) => two.push(event.kind));
  assertEquals(one, ["added"]);
  assertEquals(two, ["added"]); // before browse returned
  h.advance(2_000);
  h.receive(response([srv({ port: 9090 })]));
  assertEquals(one, ["added", "updated"]);
  assertEquals(two, ["added", "updated"]);
  first.close();
  h.receive(response([ptr({ ttl: 0 })]));
  h.advance(1_000);
  assertEquals(one, ["added", "updated"]);
  assertEquals(two, ["added", "updated", "removed"]);
  h.querier.close();
});

Deno.test("Querier reports what the cache already holds to a browse started later", () => {
  const h = new Harness();
  h.receive(announcement());
  assertEquals(h.querier.counters.cachedRecords, 4);
  h.advance(5_000);
  h.browse();
  const events = h.take();
  assertEquals(summary(events), [`added ${INSTANCE}`]);
  assertEquals(events[0].instance.txt, bytes(["name=seven"]));
  h.querier.close();
});

Deno.test("Querier keeps browses of different types apart", () => {
  const h = new Harness();
  const ys: BrowseEvent[] = [];
  h.browse();
  h.querier.browse("_y._udp.local", (event) => ys.push(event));
  h.advance(100);
  assertEquals(h.sent.map(questions), [[`${TYPE} PTR QU`], ["_y._udp.local PTR QU"]]);
  h.receive(announcement());
  assertEquals(summary(h.take()), [`added ${INSTANCE}`]);
  assertEquals(ys, []);
  h.querier.close();
});

// ---------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------

Deno.test("Querier survives odd but well-formed responses", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  // An SRV and a TXT for an instance nobody browses for, a PTR of another type.
  h.receive(
    response([srv({ name: "stray._z._tcp.local" }), txt([], { name: "stray._z._tcp.local" })]),
  );
  h.receive(response([ptr({ type: "_z._tcp.local", instance: "z._z._tcp.local" })]));
  assertEquals(h.take(), []);
  // A PTR of our type naming an instance of another type (DNS-SD subtypes do this).
  h.receive(response([ptr({ instance: "Printer._ipp._tcp.local" })], [
    srv({ name: "Printer._ipp._tcp.local", port: 631 }),
    a("10.0.0.7"),
  ]));
  const events = h.take();
  assertEquals(summary(events), ["added Printer._ipp._tcp.local"]);
  assertEquals(events[0].instance.serviceType, TYPE);
  // A PTR to the type itself, an SRV whose target is the instance (as Python peers do).
  h.receive(response([ptr({ instance: TYPE })]));
  h.receive(response([ptr({ instance: "py._x._tcp.local" })], [
    srv({ name: "py._x._tcp.local", target: "py._x._tcp.local" }),
    a("10.0.0.5", { name: "py._x._tcp.local" }),
  ]));
  assertEquals(summary(h.take()), ["added py._x._tcp.local"]);
  // An empty response, and one with questions.
  h.receive(response([]));
  const withQuestion = response([]);
  withQuestion.questions.push({ name: TYPE, type: "PTR", unicastResponse: false });
  h.receive(withQuestion);
  // A malformed record (the codec would reject it) is dropped and counted.
  h.receive(response([a("999.1.1.1")]));
  assertEquals(h.querier.counters.invalidRecords, 1);
  assertEquals(h.take(), []);
  h.querier.close();
});

Deno.test("Querier clamps a huge TTL to one day", () => {
  const h = new Harness();
  h.browse();
  h.advance(100);
  const forever = 4_294_967_295;
  h.receive(response([ptr({ ttl: forever })], [
    srv({ ttl: forever }),
    txt([], { ttl: forever }),
    a("10.0.0.7", { ttl: forever }),
  ]));
  assertEquals(summary(h.take()), [`added ${INSTANCE}`]);
  assertEquals(h.querier.cached(INSTANCE, "SRV")[0].expiresAt, 100 + 86_400_000);
  h.advance(86_400_000);
  assertEquals(summary(h.take()), [`removed ${INSTANCE}`]);
  h.querier.close();
});

Deno.test("Querier ignores responses from a source port other than 5353", () => {
  const h = new Harness();
  h.browse();
  h.receive(announcement(), { address: "10.0.0.7", port: 40_000 });
  assertEquals(h.take(), []);
  assertEquals(h.querier.counters.ignoredResponses, 1);
  assertEquals(h.querier.counters.cachedRecords, 0);
  const lenient = new Harness({ checkSourcePort: false });
  lenient.browse();
  lenient.receive(announcement(), { address: "10.0.0.7", port: 40_000 });
  assertEquals(summary(lenient.take()), [`added ${INSTANCE}`]);
  h.querier.close();
  lenient.querier.close();
});

Deno.test("Querier does not cache the known answers of queries", () => {
  const h = new Harness();
  h.browse();
  h.receive(query([{ name: TYPE, type: "PTR" }], [ptr()]));
  assertEquals(h.querier.counters.cachedRecords, 0);
  h.querier.close();
});

Deno.test("Querier catches and counts listener exceptions; other listeners still hear", () => {
  const h = new Harness();
  h.querier.browse(TYPE, () => {
    throw new Error("listener bug");
  });
  const heard: string[] = [];
  h.querier.browse(TYPE, (event) => heard.push(event.kind));
  h.advance(100);
  h.receive(announcement());
  h.advance(2_000);
  h.receive(response([srv({ port: 9 })]));
  assertEquals(heard, ["added", "updated"]);
  assertEquals(h.querier.counters.listenerErrors, 2);
  assertEquals(h.querier.counters.events, 4);
  h.querier.close();
});

Deno.test("Querier copes with a listener that closes its browse or the querier", () => {
  const h = new Harness();
  const seen: string[] = [];
  const browse = h.querier.browse(TYPE, (event) => {
    seen.push(event.kind);
    browse.close();
  });
  h.advance(100);
  h.receive(announcement());
  h.advance(2_000);
  h.receive(response([srv({ port: 9 })]));
  assertEquals(seen, ["added"]);
  h.querier.browse(TYPE, () => h.querier.close());
  h.receive(announcement({ port: 1 }));
  assertEquals(h.querier.closed, true);
  assertEquals(h.scheduler.pending, 0);
});

Deno.test("Querier counts failed sends without throwing", async () => {
  const h = new Harness();
  h.sendFails = true;
  h.browse();
  h.advance(100);
  await Promise.resolve();
  assertEquals(h.querier.counters.sendErrors, 1);
  h.querier.close();
});

Deno.test("Querier bounds its cache and counts the evictions", () => {
  const h = new Harness({ maxRecords: 50 });
  h.browse();
  for (let i = 0; i < 200; i++) {
    h.receive(response([a(`10.0.${i >> 8}.${i & 255}`, { name: `flood-${i}.local` })]));
  }
  const counters = h.querier.counters;
  assertEquals(counters.cachedRecords, 50);
  assertEquals(counters.cacheEvictions, 150);
  h.querier.close();
});

Deno.test("Querier.close stops every timer and ignores what comes after", () => {
  const h = new Harness();
  h.browse();
  h.querier.browse("_y._udp.local", () => {});
  h.advance(100);
  h.receive(response([ptr()])); // a resolution retry timer
  h.receive(announcement({ addresses: ["10.0.0.9"] }));
  h.receive(response([ptr({ instance: "b._x._tcp.local" })]));
  assert(h.scheduler.pending >= 3);
  h.querier.close();
  assertEquals(h.scheduler.pending, 0);
  const sent = h.sent.length;
  h.receive(announcement({ port: 1 }));
  h.advance(1_000_000);
  assertEquals(h.sent.length, sent);
  assertEquals(h.scheduler.pending, 0);
  assertThrows(() => h.browse(), Error, "closed");
  h.querier.close(); // idempotent
});

Deno.test("Querier validates its arguments", () => {
  const h = new Harness();
  assertThrows(() => h.querier.browse("", () => {}), TypeError, "'serviceType'");
  assertThrows(
    () => h.querier.browse(TYPE, "nope" as unknown as () => void),
    TypeError,
    "'listener'",
  );
  assertThrows(
    () => new Harness({ firstQueryDelayMs: [120, 20] }),
    RangeError,
    "'firstQueryDelayMs'",
  );
  assertThrows(() => new Harness({ maxQueryIntervalMs: 0 }), RangeError, "'maxQueryIntervalMs'");
  assertThrows(() => new Harness({ maxResolveAttempts: 0 }), RangeError, "'maxResolveAttempts'");
  assertThrows(() => new Harness({ maxRecords: -1 }), RangeError, "'maxRecords'");
  h.querier.close();
});

Deno.test("Querier does not add an instance whose PTR already said goodbye", () => {
  const h = new Harness();
  h.receive(announcement()); // cached before anyone browses
  h.advance(2_000);
  h.receive(response([ptr({ ttl: 0 })]));
  h.browse(); // a browse that starts while the goodbye's second runs
  h.advance(5_000);
  assertEquals(summary(h.take()), []);
  h.querier.close();
});
