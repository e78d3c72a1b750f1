import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import {
  MdnsConflictError,
  Responder,
  ResponderClosedError,
  type ResponderOptions,
  type ServiceRegistration,
} from "../../discovery/mdns/_responder.ts";
import {
  emptyMessage,
  type Endpoint,
  type EngineContext,
  type MdnsMessage,
  type MdnsRecord,
  type QuestionType,
} from "../../discovery/mdns/_types.ts";

// ---------------------------------------------------------------------------
// A fake engine: records what is sent, with the scheduler's time
// ---------------------------------------------------------------------------

interface Sent {
  at: number;
  message: MdnsMessage;
  to: Endpoint | undefined;
}

/** mulberry32: a small seeded generator of uniform numbers in [0, 1). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class FakeContext implements EngineContext {
  readonly scheduler = new ManualScheduler();
  readonly sent: Sent[] = [];
  addressList: string[];
  readonly #random: () => number;

  constructor(options: { addresses?: string[]; random?: () => number } = {}) {
    this.addressList = options.addresses ?? ["192.168.1.10"];
    // 0.5 makes every random wait the middle of its range: probes wait 125 ms,
    // shared answers 70 ms, answers to truncated queries 450 ms.
    this.#random = options.random ?? (() => 0.5);
  }

  send(message: MdnsMessage, to?: Endpoint): Promise<void> {
    this.sent.push({ at: this.scheduler.now, message: structuredClone(message), to });
    return Promise.resolve();
  }
  now(): number {
    return this.scheduler.now;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    return this.scheduler.setTimeout(callback, ms);
  }
  clearTimeout(handle: unknown): void {
    this.scheduler.clearTimeout(handle);
  }
  random(): number {
    return this.#random();
  }
  addresses(): string[] {
    return [...this.addressList];
  }

  /** What was sent at or after `since` (ms). */
  since(since: number): Sent[] {
    return this.sent.filter((s) => s.at >= since);
  }
  probes(): Sent[] {
    return this.sent.filter((s) => !s.message.response && s.message.authorities.length > 0);
  }
  responses(): Sent[] {
    return this.sent.filter((s) => s.message.response);
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const TYPE = "_x._tcp.local";
const NAME = `Sensor 7.${TYPE}`;
const HOST = "host-1.local";
const PEER: Endpoint = { address: "192.168.1.20", port: 5353 };
const SENSOR: ServiceRegistration = {
  instance: "Sensor 7",
  serviceType: TYPE,
  port: 8080,
  txt: [enc.encode("id=1")],
};
/** With random() = 0.5: probes at 125, 375 and 625 ms, probing done at 875 ms. */
const PROBES_AT = [125, 375, 625];
const ANNOUNCED_AT = 875;
/** Announcements 1 s then 2 s apart. */
const ANNOUNCEMENTS_AT = [875, 1875, 3875];

function setup(
  options: Partial<ResponderOptions> = {},
  context: { addresses?: string[]; random?: () => number } = {},
): { ctx: FakeContext; responder: Responder } {
  const ctx = new FakeContext(context);
  const responder = new Responder(ctx, { hostLabel: "host-1", ...options });
  return { ctx, responder };
}

/** Registers and runs time until the registration resolves (and past the announcements). */
async function published(
  ctx: FakeContext,
  responder: Responder,
  service: ServiceRegistration = SENSOR,
  settle = 5000,
): Promise<string> {
  const start = ctx.scheduler.now;
  const registration = responder.register(service);
  ctx.scheduler.advance(settle);
  const { instanceName } = await registration;
  assert(ctx.scheduler.now - start === settle);
  return instanceName;
}

/** A one-line description of a record, for readable assertions. */
function describe(record: MdnsRecord): string {
  let data: string;
  switch (record.type) {
    case "SRV":
      data =
        `${record.data.priority} ${record.data.weight} ${record.data.port} ${record.data.target}`;
      break;
    case "TXT":
      data = JSON.stringify(record.data.map((s) => dec.decode(s)));
      break;
    case "NSEC":
      data = `${record.data.nextDomain} [${record.data.types.join(" ")}]`;
      break;
    default:
      data = record.data;
  }
  return `${record.name} ${record.type} ${data} ttl=${record.ttl}${record.flush ? " flush" : ""}`;
}

function describeAll(records: MdnsRecord[]): string[] {
  return records.map(describe);
}

function query(
  questions: [string, QuestionType, boolean?][],
  options: {
    answers?: MdnsRecord[];
    authorities?: MdnsRecord[];
    id?: number;
    truncated?: boolean;
  } = {},
): MdnsMessage {
  const message = emptyMessage(false);
  message.id = options.id ?? 0;
  message.truncated = options.truncated ?? false;
  message.questions = questions.map(([name, type, qu]) => ({
    name,
    type,
    unicastResponse: qu ?? false,
  }));
  message.answers = options.answers ?? [];
  message.authorities = options.authorities ?? [];
  return message;
}

function response(answers: MdnsRecord[], additionals: MdnsRecord[] = []): MdnsMessage {
  const message = emptyMessage(true);
  message.answers = answers;
  message.additionals = additionals;
  return message;
}

function srv(name: string, port: number, target = "other.local", ttl = 120): MdnsRecord {
  return { name, type: "SRV", ttl, flush: true, data: { priority: 0, weight: 0, port, target } };
}

function ptr(name: string, data: string, ttl = 4500): MdnsRecord {
  return { name, type: "PTR", ttl, flush: false, data };
}

function a(name: string, data: string, ttl = 120): MdnsRecord {
  return { name, type: "A", ttl, flush: true, data };
}

const EXPECTED_RECORDS = [
  `${HOST} A 192.168.1.10 ttl=120 flush`,
  `${TYPE} PTR ${NAME} ttl=4500`,
  `${NAME} SRV 0 0 8080 ${HOST} ttl=120 flush`,
  `${NAME} TXT ["id=1"] ttl=4500 flush`,
  `_services._dns-sd._udp.local PTR ${TYPE} ttl=4500`,
];

// ---------------------------------------------------------------------------
// Probing
// ---------------------------------------------------------------------------

Deno.test("register probes three times 250 ms apart after a random wait, for the instance and host names", () => {
  const { ctx, responder } = setup();
  void responder.register(SENSOR);
  ctx.scheduler.advance(ANNOUNCED_AT - 1);
  const probes = ctx.probes();
  assertEquals(probes.map((p) => p.at), PROBES_AT);
  for (const [i, probe] of probes.entries()) {
    assertEquals(probe.to, undefined);
    assertEquals(probe.message.id, 0);
    assertEquals(probe.message.response, false);
    assertEquals(probe.message.questions, [
      { name: HOST, type: "ANY", unicastResponse: i === 0 },
      { name: NAME, type: "ANY", unicastResponse: i === 0 },
    ]);
    assertEquals(describeAll(probe.message.authorities), [
      `${HOST} A 192.168.1.10 ttl=120 flush`,
      `${NAME} SRV 0 0 8080 ${HOST} ttl=120 flush`,
      `${NAME} TXT ["id=1"] ttl=4500 flush`,
    ]);
    assertEquals(probe.message.answers, []);
  }
  assertEquals(ctx.responses(), []);
  assertEquals(responder.counters.probes, 3);
});

Deno.test("the wait before the first probe is drawn from 0..250 ms with the context's random", () => {
  const twin = seeded(42);
  const expected = Math.floor(twin() * 250);
  const { ctx, responder } = setup({}, { random: seeded(42) });
  void responder.register(SENSOR);
  ctx.scheduler.advance(1000);
  const times = ctx.probes().map((p) => p.at);
  assertEquals(times, [expected, expected + 250, expected + 500]);
  assert(expected >= 0 && expected < 250);
});

Deno.test("a second service probes only its own name once the host name is established", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  const start = ctx.scheduler.now;
  void responder.register({ ...SENSOR, instance: "Camera" });
  ctx.scheduler.advance(1000);
  const probes = ctx.probes().filter((p) => p.at >= start);
  assertEquals(probes.length, 3);
  assertEquals(probes[0].message.questions, [
    { name: `Camera.${TYPE}`, type: "ANY", unicastResponse: true },
  ]);
  assertEquals(describeAll(probes[0].message.authorities), [
    `Camera.${TYPE} SRV 0 0 8080 ${HOST} ttl=120 flush`,
    `Camera.${TYPE} TXT ["id=1"] ttl=4500 flush`,
  ]);
});

Deno.test("two services registered together share one probe with the host name", async () => {
  const { ctx, responder } = setup();
  const first = responder.register(SENSOR);
  const second = responder.register({ ...SENSOR, instance: "Camera" });
  ctx.scheduler.advance(5000);
  assertEquals((await first).instanceName, NAME);
  assertEquals((await second).instanceName, `Camera.${TYPE}`);
  assertEquals(ctx.probes().map((p) => p.at), PROBES_AT);
  assertEquals(ctx.probes()[0].message.questions.map((q) => q.name), [
    HOST,
    NAME,
    `Camera.${TYPE}`,
  ]);
  assertEquals(ctx.responses().map((r) => r.at), ANNOUNCEMENTS_AT);
  assertEquals(ctx.responses()[0].message.answers.length, 8);
});

Deno.test("a service probed before the host name waits for it and is announced with it", async () => {
  const { ctx, responder } = setup();
  const first = responder.register(SENSOR);
  ctx.scheduler.advance(130); // the host name's first probe went out at 125 ms
  const second = responder.register({ ...SENSOR, instance: "Camera" }); // probes at 255 ms
  ctx.scheduler.advance(10);
  responder.handle(response([a(HOST, "192.168.1.99")]), PEER); // the host probes again at 265 ms
  ctx.scheduler.advance(5000);
  assertEquals((await first).instanceName, NAME);
  assertEquals((await second).instanceName, `Camera.${TYPE}`);
  const probes = ctx.probes().map((p) => [p.at, p.message.questions.map((q) => q.name)]);
  assertEquals(probes, [
    [125, [HOST, NAME]],
    [255, [`Camera.${TYPE}`]],
    [265, ["host-1-2.local", NAME]],
    [505, [`Camera.${TYPE}`]],
    [515, ["host-1-2.local", NAME]],
    [755, [`Camera.${TYPE}`]],
    [765, ["host-1-2.local", NAME]],
  ]);
  // Camera's probing ended at 1005 ms, but it goes out only with the host name, at 1015 ms.
  const [announcement] = ctx.responses();
  assertEquals(announcement.at, 1015);
  assertEquals(
    describeAll(announcement.message.answers.filter((r) => r.type === "SRV")),
    [
      `${NAME} SRV 0 0 8080 host-1-2.local ttl=120 flush`,
      `Camera.${TYPE} SRV 0 0 8080 host-1-2.local ttl=120 flush`,
    ],
  );
});

// ---------------------------------------------------------------------------
// Announcing
// ---------------------------------------------------------------------------

Deno.test("register announces 3 times at 0, 1 and 3 s after probing and resolves after the first", async () => {
  const { ctx, responder } = setup();
  let resolved: string | undefined;
  const registration = responder.register(SENSOR).then((r) => (resolved = r.instanceName));
  ctx.scheduler.advance(ANNOUNCED_AT - 1);
  await Promise.resolve();
  assertEquals(resolved, undefined);
  ctx.scheduler.advance(1);
  await registration;
  assertEquals(resolved, NAME);
  ctx.scheduler.advance(10_000);
  const announcements = ctx.responses();
  assertEquals(announcements.map((r) => r.at), ANNOUNCEMENTS_AT);
  for (const { message, to } of announcements) {
    assertEquals(to, undefined);
    assertEquals(message.id, 0);
    assertEquals(message.authoritative, true);
    assertEquals(message.questions, []);
    assertEquals(describeAll(message.answers), EXPECTED_RECORDS);
    assertEquals(message.additionals, []);
  }
  assertEquals(responder.counters.announcements, 3);
  assertEquals(responder.services, [NAME]);
});

Deno.test("announcement count and interval are configurable (2 announcements 225 ms apart)", async () => {
  const { ctx, responder } = setup({ announcements: 2, announceIntervalMs: 225 });
  await published(ctx, responder);
  assertEquals(ctx.responses().map((r) => r.at), [ANNOUNCED_AT, ANNOUNCED_AT + 225]);
});

Deno.test("an empty TXT is published as one empty string", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder, { ...SENSOR, txt: [] });
  const txt = ctx.responses()[0].message.answers.find((r) => r.type === "TXT")!;
  assertEquals(describe(txt), `${NAME} TXT [""] ttl=4500 flush`);
});

Deno.test("a dot in the instance label is escaped in the published names", async () => {
  const { ctx, responder } = setup();
  const name = await published(ctx, responder, { ...SENSOR, instance: "Room v1.2" });
  assertEquals(name, `Room v1\\.2.${TYPE}`);
  const ptrRecord = ctx.responses()[0].message.answers.find((r) => r.type === "PTR")!;
  assertEquals(ptrRecord.data, `Room v1\\.2.${TYPE}`);
});

Deno.test("IPv6 addresses are published as AAAA records next to the A records", async () => {
  const { ctx, responder } = setup({}, { addresses: ["192.168.1.10", "FE80::0:1%eth0"] });
  await published(ctx, responder);
  assertEquals(describeAll(ctx.responses()[0].message.answers.slice(0, 2)), [
    `${HOST} A 192.168.1.10 ttl=120 flush`,
    `${HOST} AAAA fe80::1 ttl=120 flush`,
  ]);
});

// ---------------------------------------------------------------------------
// Conflicts while probing
// ---------------------------------------------------------------------------

Deno.test("a conflicting response while probing renames the instance 'Name (2)' and probes again", async () => {
  const { ctx, responder } = setup();
  const registration = responder.register(SENSOR);
  ctx.scheduler.advance(200); // one probe sent
  responder.handle(response([srv(NAME, 9999)]), PEER);
  ctx.scheduler.advance(2000);
  const { instanceName } = await registration;
  assertEquals(instanceName, `Sensor 7 (2).${TYPE}`);
  const probes = ctx.probes();
  // The first attempt stops after one probe; the new one waits 0..250 ms again (125 ms).
  assertEquals(probes.map((p) => p.at), [125, 325, 575, 825]);
  assertEquals(probes[1].message.questions.map((q) => q.name), [HOST, `Sensor 7 (2).${TYPE}`]);
  assertEquals(ctx.responses()[0].at, 1075);
  const counters = responder.counters;
  assertEquals([counters.conflicts, counters.renames], [1, 1]);
});

Deno.test("a second conflict renames 'Name (3)'", async () => {
  const { ctx, responder } = setup();
  const registration = responder.register(SENSOR);
  ctx.scheduler.advance(200);
  responder.handle(response([srv(NAME, 9999)]), PEER);
  ctx.scheduler.advance(200);
  responder.handle(response([srv(`Sensor 7 (2).${TYPE}`, 9999)]), PEER);
  ctx.scheduler.advance(2000);
  assertEquals((await registration).instanceName, `Sensor 7 (3).${TYPE}`);
});

Deno.test("a response that repeats our own proposed records, or says goodbye, is no conflict", async () => {
  const { ctx, responder } = setup();
  const registration = responder.register(SENSOR);
  ctx.scheduler.advance(200);
  responder.handle(response([srv(NAME, 8080, HOST)]), PEER);
  responder.handle(response([{ ...srv(NAME, 9999), ttl: 0 }]), PEER);
  ctx.scheduler.advance(2000);
  assertEquals((await registration).instanceName, NAME);
  assertEquals(responder.counters.conflicts, 0);
});

Deno.test("a record of any type for the probed name is a conflict (a Python peer's A record on its instance name)", async () => {
  const { ctx, responder } = setup();
  const registration = responder.register(SENSOR);
  ctx.scheduler.advance(200);
  responder.handle(response([a(NAME, "192.168.1.99")]), PEER);
  ctx.scheduler.advance(2000);
  assertEquals((await registration).instanceName, `Sensor 7 (2).${TYPE}`);
});

Deno.test("a conflict for the host name renames the host 'label-2' and the SRV target follows", async () => {
  const { ctx, responder } = setup();
  const registration = responder.register(SENSOR);
  ctx.scheduler.advance(200);
  responder.handle(response([a(HOST, "192.168.1.99")]), PEER);
  ctx.scheduler.advance(3000);
  assertEquals((await registration).instanceName, NAME);
  assertEquals(responder.hostName, "host-1-2.local");
  assertEquals(describeAll(ctx.responses()[0].message.answers.slice(0, 3)), [
    "host-1-2.local A 192.168.1.10 ttl=120 flush",
    `${TYPE} PTR ${NAME} ttl=4500`,
    `${NAME} SRV 0 0 8080 host-1-2.local ttl=120 flush`,
  ]);
});

Deno.test("with onConflict 'fail' a conflict rejects register with MdnsConflictError", async () => {
  const { ctx, responder } = setup({ onConflict: "fail" });
  const registration = responder.register(SENSOR);
  ctx.scheduler.advance(200);
  responder.handle(response([srv(NAME, 9999)]), PEER);
  const error = await assertRejects(() => registration, MdnsConflictError, "must be unique");
  assertEquals(error.instanceName, NAME);
  ctx.scheduler.advance(5000);
  // Nothing is announced: with no service left the host name is not published either.
  assertEquals(ctx.responses(), []);
  assertEquals(ctx.probes().length, 1);
  assertEquals(ctx.scheduler.pending, 0);
});

Deno.test("registering a name this responder already publishes renames it without asking the network", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  assertEquals(await published(ctx, responder), `Sensor 7 (2).${TYPE}`);
  assertEquals(responder.counters.conflicts, 0);
  const { responder: strict, ctx: ctx2 } = setup({ onConflict: "fail" });
  await published(ctx2, strict);
  await assertRejects(() => strict.register(SENSOR), MdnsConflictError, "already publishes it");
});

Deno.test("after 15 conflicts within 10 s the next probe attempt waits 5 s", () => {
  const { ctx, responder } = setup();
  void responder.register(SENSOR);
  for (let k = 0; k < 15; k++) {
    ctx.scheduler.advanceToNext(); // the first probe of an attempt
    const name = ctx.probes().at(-1)!.message.questions[1].name;
    responder.handle(response([srv(name, 9999)]), PEER);
  }
  const lastConflictAt = ctx.scheduler.now;
  assertEquals(responder.counters.conflicts, 15);
  assertEquals(ctx.scheduler.nextIn, 5000);
  ctx.scheduler.advanceToNext();
  assertEquals(ctx.probes().at(-1)!.at, lastConflictAt + 5000);
  assertEquals(ctx.probes().at(-1)!.message.questions[1].name, `Sensor 7 (16).${TYPE}`);
});

// ---------------------------------------------------------------------------
// Simultaneous probes (§8.2)
// ---------------------------------------------------------------------------

Deno.test("losing a simultaneous-probe tie-break waits 1 s, then probes again", async () => {
  const { ctx, responder } = setup();
  const registration = responder.register(SENSOR);
  ctx.scheduler.advance(200);
  // Their SRV has a greater port: their records are lexicographically later, they win.
  const theirs = query([[NAME, "ANY", true]], {
    authorities: [srv(NAME, 9090, "other.local"), {
      name: NAME,
      type: "TXT",
      ttl: 4500,
      flush: true,
      data: [enc.encode("id=1")],
    }],
  });
  responder.handle(theirs, PEER);
  ctx.scheduler.advance(3000);
  assertEquals(ctx.probes().map((p) => p.at), [125, 1200, 1450, 1700]);
  assertEquals((await registration).instanceName, NAME);
  assertEquals(ctx.responses()[0].at, 1950);
  assertEquals(responder.counters.probeDeferrals, 1);
  assertEquals(responder.counters.conflicts, 0);
});

Deno.test("winning a simultaneous-probe tie-break goes on probing undisturbed", async () => {
  const { ctx, responder } = setup();
  const registration = responder.register(SENSOR);
  ctx.scheduler.advance(200);
  const theirs = query([[NAME, "ANY", true]], {
    authorities: [srv(NAME, 1000, "other.local"), {
      name: NAME,
      type: "TXT",
      ttl: 4500,
      flush: true,
      data: [enc.encode("id=1")],
    }],
  });
  responder.handle(theirs, PEER);
  ctx.scheduler.advance(1000);
  assertEquals(ctx.probes().map((p) => p.at), PROBES_AT);
  assertEquals((await registration).instanceName, NAME);
  assertEquals(responder.counters.probeDeferrals, 0);
});

Deno.test("our own probe, looped back, is neither a conflict nor a lost tie-break", async () => {
  const { ctx, responder } = setup();
  const registration = responder.register(SENSOR);
  ctx.scheduler.advance(200);
  responder.handle(ctx.probes()[0].message, { address: "192.168.1.10", port: 5353 });
  ctx.scheduler.advance(1000);
  assertEquals(ctx.probes().map((p) => p.at), PROBES_AT);
  assertEquals((await registration).instanceName, NAME);
});

// ---------------------------------------------------------------------------
// Answering queries
// ---------------------------------------------------------------------------

Deno.test("a PTR question is answered after 20..120 ms with SRV, TXT and A as additionals", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([[TYPE, "PTR"]]), PEER);
  assertEquals(ctx.since(5000), []);
  ctx.scheduler.advance(69);
  assertEquals(ctx.since(5000), []);
  ctx.scheduler.advance(1);
  const [reply] = ctx.since(5000);
  assertEquals(reply.at, 5070);
  assertEquals(reply.to, undefined);
  assertEquals(reply.message.id, 0);
  assertEquals(reply.message.questions, []);
  assertEquals(describeAll(reply.message.answers), [`${TYPE} PTR ${NAME} ttl=4500`]);
  assertEquals(describeAll(reply.message.additionals), [
    `${NAME} SRV 0 0 8080 ${HOST} ttl=120 flush`,
    `${NAME} TXT ["id=1"] ttl=4500 flush`,
    `${HOST} A 192.168.1.10 ttl=120 flush`,
  ]);
  assertEquals(responder.counters.multicastResponses, 1);
});

Deno.test("an SRV question is answered at once (a unique answer) with the A record as additional", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([[NAME.toUpperCase(), "SRV"]]), PEER);
  const [reply] = ctx.since(5000);
  assertEquals(reply.at, 5000);
  assertEquals(describeAll(reply.message.answers), [`${NAME} SRV 0 0 8080 ${HOST} ttl=120 flush`]);
  assertEquals(describeAll(reply.message.additionals), [`${HOST} A 192.168.1.10 ttl=120 flush`]);
});

Deno.test("a TXT question is answered at once with no additionals", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([[NAME, "TXT"]]), PEER);
  const [reply] = ctx.since(5000);
  assertEquals(describeAll(reply.message.answers), [`${NAME} TXT ["id=1"] ttl=4500 flush`]);
  assertEquals(reply.message.additionals, []);
});

Deno.test("an A question is answered with the AAAA records as additionals", async () => {
  const { ctx, responder } = setup({}, { addresses: ["192.168.1.10", "fe80::1"] });
  await published(ctx, responder);
  responder.handle(query([[HOST, "A"]]), PEER);
  const [reply] = ctx.since(5000);
  assertEquals(reply.at, 5000);
  assertEquals(describeAll(reply.message.answers), [`${HOST} A 192.168.1.10 ttl=120 flush`]);
  assertEquals(describeAll(reply.message.additionals), [`${HOST} AAAA fe80::1 ttl=120 flush`]);
});

Deno.test("an ANY question for the instance is answered with SRV and TXT, and A as additional", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([[NAME, "ANY"]]), PEER);
  const [reply] = ctx.since(5000);
  assertEquals(reply.at, 5000);
  assertEquals(describeAll(reply.message.answers), [
    `${NAME} SRV 0 0 8080 ${HOST} ttl=120 flush`,
    `${NAME} TXT ["id=1"] ttl=4500 flush`,
  ]);
  assertEquals(describeAll(reply.message.additionals), [`${HOST} A 192.168.1.10 ttl=120 flush`]);
});

Deno.test("an AAAA question for an IPv4-only host is answered with an NSEC record", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([[HOST, "AAAA"]]), PEER);
  const [reply] = ctx.since(5000);
  assertEquals(reply.at, 5000);
  assertEquals(describeAll(reply.message.answers), [`${HOST} NSEC ${HOST} [A] ttl=120 flush`]);
});

Deno.test("the DNS-SD service type enumeration is answered with the type", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([["_services._dns-sd._udp.local", "PTR"]]), PEER);
  ctx.scheduler.advance(200);
  const [reply] = ctx.since(5000);
  assertEquals(reply.at, 5070);
  assertEquals(describeAll(reply.message.answers), [
    `_services._dns-sd._udp.local PTR ${TYPE} ttl=4500`,
  ]);
  assertEquals(reply.message.additionals, []);
});

Deno.test("several questions in one query get one aggregated response", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([[TYPE, "PTR"], [NAME, "SRV"]]), PEER);
  ctx.scheduler.advance(200);
  const replies = ctx.since(5000);
  assertEquals(replies.length, 1);
  assertEquals(replies[0].at, 5070);
  assertEquals(describeAll(replies[0].message.answers), [
    `${TYPE} PTR ${NAME} ttl=4500`,
    `${NAME} SRV 0 0 8080 ${HOST} ttl=120 flush`,
  ]);
  assertEquals(describeAll(replies[0].message.additionals), [
    `${NAME} TXT ["id=1"] ttl=4500 flush`,
    `${HOST} A 192.168.1.10 ttl=120 flush`,
  ]);
});

Deno.test("names are not answered while they are still being probed", () => {
  const { ctx, responder } = setup();
  void responder.register(SENSOR);
  ctx.scheduler.advance(300);
  responder.handle(query([[NAME, "ANY"], [TYPE, "PTR"], [HOST, "A"]]), PEER);
  ctx.scheduler.advance(200);
  assertEquals(ctx.responses(), []);
});

Deno.test("a QU question gets a unicast reply to the source when the record was multicast recently", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  const source = { address: "192.168.1.20", port: 5353 };
  responder.handle(query([[NAME, "SRV", true]]), source);
  const [reply] = ctx.since(5000);
  assertEquals(reply.to, source);
  assertEquals(reply.message.id, 0);
  assertEquals(reply.message.questions, []);
  assertEquals(describeAll(reply.message.answers), [`${NAME} SRV 0 0 8080 ${HOST} ttl=120 flush`]);
  assertEquals(responder.counters.unicastResponses, 1);
});

Deno.test("a QU question is answered by multicast when the record was not multicast within a quarter of its TTL", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  // SRV TTL 120 s: a quarter is 30 s after the last announcement at 3.875 s.
  ctx.scheduler.advance(ANNOUNCEMENTS_AT[2] + 30_001 - ctx.scheduler.now);
  const at = ctx.scheduler.now;
  responder.handle(query([[NAME, "SRV", true]]), PEER);
  const [reply] = ctx.since(at);
  assertEquals(reply.to, undefined);
  assertEquals(responder.counters.multicastResponses, 1);
});

Deno.test("a legacy query (source port not 5353) gets a unicast reply with its id, its questions and TTLs of at most 10 s", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  const legacy = { address: "192.168.1.30", port: 49152 };
  responder.handle(query([[TYPE, "PTR"]], { id: 0x1234 }), legacy);
  const [reply] = ctx.since(5000);
  assertEquals(reply.at, 5000);
  assertEquals(reply.to, legacy);
  assertEquals(reply.message.id, 0x1234);
  assertEquals(reply.message.questions, [{ name: TYPE, type: "PTR", unicastResponse: false }]);
  assertEquals(describeAll(reply.message.answers), [`${TYPE} PTR ${NAME} ttl=10`]);
  assertEquals(describeAll(reply.message.additionals), [
    `${NAME} SRV 0 0 8080 ${HOST} ttl=10`,
    `${NAME} TXT ["id=1"] ttl=10`,
    `${HOST} A 192.168.1.10 ttl=10`,
  ]);
  assertEquals(responder.counters.legacyResponses, 1);
});

Deno.test("a known answer with at least half the TTL suppresses the answer; with less it does not", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([[TYPE, "PTR"]], { answers: [ptr(TYPE, NAME, 2250)] }), PEER);
  ctx.scheduler.advance(500);
  assertEquals(ctx.since(5000), []);
  assertEquals(responder.counters.knownAnswerSuppressions, 1);
  responder.handle(query([[TYPE, "PTR"]], { answers: [ptr(TYPE, NAME, 2249)] }), PEER);
  ctx.scheduler.advance(500);
  assertEquals(ctx.since(5000).map((s) => describeAll(s.message.answers)), [[
    `${TYPE} PTR ${NAME} ttl=4500`,
  ]]);
});

Deno.test("known answers in a follow-up packet of a truncated query suppress the pending answer", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([[TYPE, "PTR"]], { truncated: true }), PEER);
  ctx.scheduler.advance(100);
  responder.handle(query([], { answers: [ptr(TYPE, NAME)] }), PEER);
  ctx.scheduler.advance(1000);
  assertEquals(ctx.since(5000), []);
  assertEquals(responder.counters.knownAnswerSuppressions, 1);
});

Deno.test("a truncated query is answered after 400..500 ms", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([[TYPE, "PTR"]], { truncated: true }), PEER);
  ctx.scheduler.advance(1000);
  assertEquals(ctx.since(5000).map((s) => s.at), [5450]);
});

Deno.test("the same record is not multicast again within 1 s", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([[NAME, "SRV"]]), PEER);
  ctx.scheduler.advance(500);
  responder.handle(query([[NAME, "SRV"]]), PEER);
  ctx.scheduler.advance(499);
  responder.handle(query([[NAME, "SRV"]]), PEER);
  ctx.scheduler.advance(1);
  responder.handle(query([[NAME, "SRV"]]), PEER);
  assertEquals(ctx.since(5000).map((s) => s.at), [5000, 6000]);
  assertEquals(responder.counters.rateLimited, 2);
});

Deno.test("a probe from another host for our name is answered at once, even within 1 s of a multicast", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([[NAME, "SRV"]]), PEER);
  ctx.scheduler.advance(300);
  const probe = query([[NAME, "ANY"]], { authorities: [srv(NAME, 9999)] });
  responder.handle(probe, PEER);
  const replies = ctx.since(5000);
  assertEquals(replies.map((s) => [s.at, s.to]), [[5000, undefined], [5300, undefined]]);
  assertEquals(describeAll(replies[1].message.answers), [
    `${NAME} SRV 0 0 8080 ${HOST} ttl=120 flush`,
    `${NAME} TXT ["id=1"] ttl=4500 flush`,
  ]);
  assertEquals(responder.counters.conflicts, 0);
});

Deno.test("an answer another responder multicasts first, with at least our TTL, is not sent again", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([[TYPE, "PTR"]]), PEER);
  ctx.scheduler.advance(30);
  responder.handle(response([ptr(TYPE, NAME)]), { address: "192.168.1.40", port: 5353 });
  ctx.scheduler.advance(500);
  assertEquals(ctx.since(5000), []);
});

Deno.test("our own record seen with less than half its TTL is announced again", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(response([ptr(TYPE, NAME, 0)]), PEER);
  ctx.scheduler.advance(200);
  const [reply] = ctx.since(5000);
  assertEquals(reply.at, 5070);
  assertEquals(describeAll(reply.message.answers), [`${TYPE} PTR ${NAME} ttl=4500`]);
  assertEquals(responder.counters.reannouncements, 1);
});

// ---------------------------------------------------------------------------
// Conflicts after announcing (§9)
// ---------------------------------------------------------------------------

Deno.test("a conflicting record for a live name makes it probe again, and a defended name is renamed", async () => {
  const renames: [string, string][] = [];
  const { ctx, responder } = setup({ onRenamed: (from, to) => renames.push([from, to]) });
  await published(ctx, responder);
  responder.handle(response([srv(NAME, 9999)]), PEER);
  assertEquals(responder.counters.conflicts, 1);
  ctx.scheduler.advance(130); // 125 ms: the first new probe
  const reprobe = ctx.probes().at(-1)!;
  assertEquals(reprobe.at, 5125);
  assertEquals(reprobe.message.questions, [{ name: NAME, type: "ANY", unicastResponse: true }]);
  // While it probes again, the name is not answered.
  responder.handle(query([[NAME, "SRV"]]), PEER);
  assertEquals(ctx.since(5000).filter((s) => s.message.response), []);
  // The other host defends the name: we rename and say goodbye to our old PTR.
  responder.handle(response([srv(NAME, 9999)]), PEER);
  assertEquals(renames, [[NAME, `Sensor 7 (2).${TYPE}`]]);
  const goodbye = ctx.since(5000).find((s) => s.message.response)!;
  assertEquals(describeAll(goodbye.message.answers), [`${TYPE} PTR ${NAME} ttl=0`]);
  ctx.scheduler.advance(2000);
  assertEquals(responder.services, [`Sensor 7 (2).${TYPE}`]);
  const announcement =
    ctx.since(5130).filter((s) =>
      s.message.response && s.message.answers.some((r) => r.ttl > 0)
    )[0];
  assertEquals(describeAll(announcement.message.answers).slice(0, 2), [
    `${TYPE} PTR Sensor 7 (2).${TYPE} ttl=4500`,
    `Sensor 7 (2).${TYPE} SRV 0 0 8080 ${HOST} ttl=120 flush`,
  ]);
  // An old name still works for unregister.
  await Promise.all([responder.unregister(NAME), ctx.scheduler.advance(200)]);
  assertEquals(responder.services, []);
});

Deno.test("with onConflict 'fail' a live service that loses its name is withdrawn and reported", async () => {
  const withdrawn: string[] = [];
  const { ctx, responder } = setup({
    onConflict: "fail",
    onWithdrawn: (name, error) => withdrawn.push(`${name}: ${error.name}`),
  });
  await published(ctx, responder);
  responder.handle(response([srv(NAME, 9999)]), PEER);
  ctx.scheduler.advance(130);
  responder.handle(response([srv(NAME, 9999)]), PEER);
  assertEquals(withdrawn, [`${NAME}: MdnsConflictError`]);
  assertEquals(responder.services, []);
});

// ---------------------------------------------------------------------------
// Goodbyes, re-registration, close
// ---------------------------------------------------------------------------

Deno.test("unregister sends the service's records with TTL 0 twice, 125 ms apart, and keeps the host records", async () => {
  const { ctx, responder } = setup();
  const name = await published(ctx, responder);
  let done = false;
  const unregistering = responder.unregister(name).then(() => (done = true));
  await Promise.resolve();
  assertEquals(done, false);
  ctx.scheduler.advance(125);
  await unregistering;
  const goodbyes = ctx.since(5000);
  assertEquals(goodbyes.map((s) => [s.at, s.to]), [[5000, undefined], [5125, undefined]]);
  for (const { message } of goodbyes) {
    assertEquals(describeAll(message.answers), [
      `${TYPE} PTR ${NAME} ttl=0`,
      `${NAME} SRV 0 0 8080 ${HOST} ttl=0`,
      `${NAME} TXT ["id=1"] ttl=0`,
      `_services._dns-sd._udp.local PTR ${TYPE} ttl=0`,
    ]);
  }
  assertEquals(responder.counters.goodbyes, 2);
  // The service is gone; the host name still answers.
  const count = ctx.sent.length;
  responder.handle(query([[NAME, "SRV"], [HOST, "A"]]), PEER);
  assertEquals(ctx.sent.length, count + 1);
  assertEquals(describeAll(ctx.sent[count].message.answers), [
    `${HOST} A 192.168.1.10 ttl=120 flush`,
  ]);
});

Deno.test("the enumeration PTR gets no goodbye while another service of the type remains", async () => {
  const { ctx, responder } = setup();
  const first = await published(ctx, responder);
  await published(ctx, responder, { ...SENSOR, instance: "Camera" });
  const at = ctx.scheduler.now;
  await Promise.all([responder.unregister(first), ctx.scheduler.advance(125)]);
  assertEquals(
    ctx.since(at)[0].message.answers.map((r) => r.name),
    [TYPE, NAME, NAME],
  );
});

Deno.test("unregister of an unknown name, or of a registration in progress, throws RangeError", async () => {
  const { ctx, responder } = setup();
  await assertRejects(
    () => responder.unregister("nope._x._tcp.local"),
    RangeError,
    "current services are []",
  );
  void responder.register(SENSOR);
  ctx.scheduler.advance(200);
  await assertRejects(() => responder.unregister(NAME), RangeError, "still in progress");
});

Deno.test("the same name can be registered again right after unregister", async () => {
  const { ctx, responder } = setup();
  const name = await published(ctx, responder);
  const unregistering = responder.unregister(name);
  ctx.scheduler.advance(125);
  await unregistering;
  const goodbye = ctx.sent.at(-1)!.message;
  const at = ctx.scheduler.now;
  const again = responder.register({ ...SENSOR, port: 9090 });
  ctx.scheduler.advance(100);
  // Our own goodbye, looped back while we probe, is no conflict.
  responder.handle(goodbye, { address: "192.168.1.10", port: 5353 });
  ctx.scheduler.advance(5000);
  assertEquals((await again).instanceName, NAME);
  const probes = ctx.probes().filter((p) => p.at >= at);
  assertEquals(probes.map((p) => p.at - at), PROBES_AT);
  const announcement = ctx.since(at).find((s) =>
    s.message.response && s.message.answers.every((r) => r.ttl > 0)
  )!;
  assertEquals(announcement.at - at, ANNOUNCED_AT);
  assertEquals(
    describe(announcement.message.answers[1]),
    `${NAME} SRV 0 0 9090 ${HOST} ttl=120 flush`,
  );
  assertEquals(responder.counters.conflicts, 0);
});

Deno.test("close says goodbye to every record, rejects registrations in progress and leaves no timer", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  const pending = responder.register({ ...SENSOR, instance: "Camera" });
  ctx.scheduler.advance(200);
  const closing = responder.close();
  await assertRejects(() => pending, ResponderClosedError, "responder is closed");
  ctx.scheduler.advance(125);
  await closing;
  const goodbyes = ctx.since(5200).filter((s) => s.message.response);
  assertEquals(goodbyes.map((s) => s.at), [5200, 5325]);
  assertEquals(describeAll(goodbyes[0].message.answers), [
    `${HOST} A 192.168.1.10 ttl=0`,
    `${TYPE} PTR ${NAME} ttl=0`,
    `${NAME} SRV 0 0 8080 ${HOST} ttl=0`,
    `${NAME} TXT ["id=1"] ttl=0`,
    `_services._dns-sd._udp.local PTR ${TYPE} ttl=0`,
  ]);
  assertEquals(ctx.scheduler.pending, 0);
  assertEquals(responder.closed, true);
  // Closed: nothing more is sent, nothing is answered, registrations fail.
  const count = ctx.sent.length;
  responder.handle(query([[NAME, "SRV"]]), PEER);
  await assertRejects(() => responder.register(SENSOR), ResponderClosedError, "Cannot register");
  assertEquals(ctx.sent.length, count);
  assertEquals(await responder.close(), undefined);
  await assertRejects(() => responder.unregister(NAME), ResponderClosedError, "Cannot unregister");
});

Deno.test("close before anything was published sends nothing", async () => {
  const { ctx, responder } = setup();
  await responder.close();
  assertEquals(ctx.sent, []);
});

Deno.test("an aborted registration stops probing and rejects with the signal's reason", async () => {
  const { ctx, responder } = setup();
  const controller = new AbortController();
  const registration = responder.register(SENSOR, controller.signal);
  ctx.scheduler.advance(200);
  controller.abort(new Error("no longer wanted"));
  await assertRejects(() => registration, Error, "no longer wanted");
  ctx.scheduler.advance(5000);
  assertEquals(ctx.probes().length, 1);
  assertEquals(ctx.responses(), []);
  await assertRejects(
    () => responder.register(SENSOR, AbortSignal.abort(new Error("already"))),
    Error,
    "already",
  );
});

// ---------------------------------------------------------------------------
// Address changes (§8.4)
// ---------------------------------------------------------------------------

Deno.test("addressesChanged says goodbye to vanished addresses and announces the new ones", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  ctx.addressList = ["192.168.1.11"];
  responder.addressesChanged();
  ctx.scheduler.advance(5000);
  const sent = ctx.since(5000);
  assertEquals(sent.map((s) => [s.at, describeAll(s.message.answers)]), [
    [5000, [`${HOST} A 192.168.1.10 ttl=0`]],
    [5000, [`${HOST} A 192.168.1.11 ttl=120 flush`]],
    [5125, [`${HOST} A 192.168.1.10 ttl=0`]],
    [6000, [`${HOST} A 192.168.1.11 ttl=120 flush`]],
    [8000, [`${HOST} A 192.168.1.11 ttl=120 flush`]],
  ]);
  responder.handle(query([[HOST, "A"]]), PEER);
  assertEquals(describeAll(ctx.sent.at(-1)!.message.answers), [
    `${HOST} A 192.168.1.11 ttl=120 flush`,
  ]);
});

Deno.test("addressesChanged does nothing when the addresses are the same", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  ctx.addressList = ["192.168.1.10"];
  responder.addressesChanged();
  ctx.scheduler.advance(5000);
  assertEquals(ctx.since(5000), []);
});

// ---------------------------------------------------------------------------
// Input that does not concern us
// ---------------------------------------------------------------------------

Deno.test("queries for other names and responses with other names' records are ignored", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([["printer._ipp._tcp.local", "ANY"], ["other.local", "A"]]), PEER);
  responder.handle(
    response([srv("printer._ipp._tcp.local", 631), a("other.local", "10.0.0.1")]),
    PEER,
  );
  // A response with conflicting records but from a port other than 5353 (RFC 6762 §11).
  responder.handle(response([srv(NAME, 9999)]), { address: "192.168.1.20", port: 40000 });
  // Records whose data does not even encode.
  responder.handle(response([a(HOST, "not an address")]), PEER);
  ctx.scheduler.advance(5000);
  assertEquals(ctx.since(5000), []);
  const counters = responder.counters;
  assertEquals(counters.ignored, 4);
  assertEquals(counters.conflicts, 0);
  assertEquals(responder.services, [NAME]);
});

Deno.test("an empty query and an empty response are ignored", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  responder.handle(query([]), PEER);
  responder.handle(response([]), PEER);
  ctx.scheduler.advance(1000);
  assertEquals(ctx.since(5000), []);
  assertEquals(responder.counters.ignored, 2);
});

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

Deno.test("invalid registrations are rejected with clear messages", async () => {
  const { responder } = setup();
  await assertRejects(
    () => responder.register({ ...SENSOR, port: 70000 }),
    RangeError,
    "Cannot register a service as 'port' must be an integer in 0..65535: current value is 70000",
  );
  await assertRejects(
    () => responder.register({ ...SENSOR, serviceType: "_x._tcp" }),
    RangeError,
    `'serviceType' must look like "_name._tcp.local"`,
  );
  await assertRejects(
    () => responder.register({ ...SENSOR, instance: "" }),
    RangeError,
    "'instance' must be 1..63 bytes",
  );
  await assertRejects(
    () => responder.register({ ...SENSOR, txt: [new Uint8Array(256)] }),
    RangeError,
    "'txt[0]' must be a Uint8Array of at most 255 bytes: current value is 256 bytes long",
  );
  await assertRejects(
    () => responder.register({ ...SENSOR, instance: 7 as unknown as string }),
    TypeError,
    "'instance' must be a string",
  );
});

Deno.test("invalid options are rejected with clear messages", () => {
  const ctx = new FakeContext();
  assertThrows(
    () => new Responder(ctx, { hostLabel: "a.b" }),
    RangeError,
    "'hostLabel' must be 1..63 bytes without dots",
  );
  assertThrows(
    () => new Responder(ctx, { hostLabel: "h", announcements: 1 }),
    RangeError,
    "'announcements' must be an integer in 2..8: current value is 1",
  );
  assertThrows(
    () => new Responder(ctx, { hostLabel: "h", onConflict: "ignore" as "fail" }),
    RangeError,
    `'onConflict' must be "rename" or "fail"`,
  );
});

Deno.test("a trailing dot in the service type is accepted and dropped", async () => {
  const { ctx, responder } = setup();
  assertEquals(await published(ctx, responder, { ...SENSOR, serviceType: `${TYPE}.` }), NAME);
});

Deno.test("a unicast reply to a QU question for a shared record is not delayed", async () => {
  const { ctx, responder } = setup();
  await published(ctx, responder);
  const source = { address: "192.168.1.20", port: 5353 };
  const at = ctx.scheduler.now;
  responder.handle(query([[TYPE, "PTR", true]]), source);
  const [reply] = ctx.since(at);
  assertEquals([reply.to, reply.at], [source, at]);
  assertEquals(reply.message.answers.map((r) => r.type), ["PTR"]);
});
