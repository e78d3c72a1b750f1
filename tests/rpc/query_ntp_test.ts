import { assert, assertEquals, assertRejects } from "../_assert.ts";
import { writeTimestamp } from "../../rpc/_ntp.ts";
import { NtpQueryError, queryNtp } from "../../rpc/query_ntp.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";

const T1 = 1_704_110_400_000_000;
const T4 = T1 + 300;
const T2 = T1 + 2_500_100;
const T3 = T2 + 50;

/** A client clock that reads T1 (the request), then T4 (every reply). */
function clientClock() {
  let k = 0;
  return { now: () => (k++ === 0 ? T1 : T4) };
}

interface ReplyFields {
  leap?: number;
  version?: number;
  mode?: number;
  stratum?: number;
  referenceId?: string;
  /** The originate bytes: the request's transmit by default. */
  originate?: Uint8Array;
  receive?: number | null;
  transmit?: number | null;
  length?: number;
}

function reply(request: Uint8Array, fields: ReplyFields = {}): Uint8Array {
  const { leap = 0, version = 4, mode = 4, stratum = 2, referenceId = "TEST" } = fields;
  const bytes = new Uint8Array(fields.length ?? 48);
  const full = new Uint8Array(48);
  const view = new DataView(full.buffer);
  full[0] = (leap << 6) | (version << 3) | mode;
  full[1] = stratum;
  full.set(new TextEncoder().encode(referenceId).subarray(0, 4), 12);
  full.set(fields.originate ?? request.subarray(40, 48), 24);
  if (fields.receive !== null) writeTimestamp(view, 32, fields.receive ?? T2);
  if (fields.transmit !== null) writeTimestamp(view, 40, fields.transmit ?? T3);
  bytes.set(full.subarray(0, Math.min(48, bytes.length)));
  return bytes;
}

/**
 * A fake server on loopback: for each request it sends what `respond`
 * returns, in order. `from` sends a reply from a second socket (another port).
 */
function fakeServer(
  respond: (request: Uint8Array) => { data: Uint8Array; foreign?: boolean }[],
) {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const other = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const requests: Uint8Array[] = [];
  const done = (async () => {
    try {
      for (;;) {
        const [data, from] = await conn.receive();
        requests.push(data.slice());
        for (const out of respond(data)) await (out.foreign ? other : conn).send(out.data, from);
      }
    } catch {
      // closed
    }
  })();
  return {
    port: (conn.addr as Deno.NetAddr).port,
    requests,
    async [Symbol.asyncDispose]() {
      conn.close();
      other.close();
      await done;
    },
  };
}

Deno.test("queryNtp measures offset and delay from a valid reply", async (t) => {
  await t.step("((T2 − T1) + (T3 − T4)) / 2 and (T4 − T1) − (T3 − T2)", async () => {
    await using server = fakeServer((req) => [{ data: reply(req) }]);
    const sample = await queryNtp("127.0.0.1", { port: server.port, clock: clientClock() });
    assertEquals(sample, {
      offsetMicros: 2_499_975,
      delayMicros: 250,
      localMicros: T4,
      stratum: 2,
      version: 4,
      referenceId: "84.69.83.84", // stratum 2: an IPv4 address ("TEST" as bytes)
      legacy: false,
    });
  });
  await t.step("the request is a 48-byte v4 client packet carrying T1", async () => {
    await using server = fakeServer((req) => [{ data: reply(req) }]);
    await queryNtp("127.0.0.1", { port: server.port, clock: clientClock() });
    const [request] = server.requests;
    assertEquals([request.length, request[0]], [48, 0x23]);
    const expected = new Uint8Array(8);
    writeTimestamp(new DataView(expected.buffer), 0, T1);
    assertEquals(Array.from(request.subarray(40)), Array.from(expected));
  });
  await t.step("a version 3 query gets a version 3 answer", async () => {
    await using server = fakeServer((req) => [{ data: reply(req, { version: 3 }) }]);
    const sample = await queryNtp("127.0.0.1", {
      port: server.port,
      clock: clientClock(),
      version: 3,
    });
    assertEquals([server.requests[0][0], sample.version], [0x1b, 3]);
  });
  await t.step("a Python tsercom server's reply (originate and transmit zero)", async () => {
    await using server = fakeServer((req) => [{
      data: reply(req, { originate: new Uint8Array(8), transmit: null }),
    }]);
    const sample = await queryNtp("127.0.0.1", { port: server.port, clock: clientClock() });
    // T2 − (T1 + T4) / 2 = 2,500,100 − 150
    assertEquals([sample.offsetMicros, sample.delayMicros, sample.legacy], [2_499_950, 300, true]);
  });
});

Deno.test("queryNtp drops bad replies and waits for the good one", async (t) => {
  const bad: [string, (req: Uint8Array) => { data: Uint8Array; foreign?: boolean }][] = [
    ["truncated", (req) => ({ data: reply(req, { length: 47 }) })],
    ["wrong mode", (req) => ({ data: reply(req, { mode: 3, receive: T2 + 9e6 }) })],
    ["wrong version", (req) => ({ data: reply(req, { version: 5, receive: T2 + 9e6 }) })],
    ["originate not echoed", (req) => ({
      data: reply(req, { originate: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), receive: T2 + 9e6 }),
    })],
    ["from another port", (req) => ({ data: reply(req, { receive: T2 + 9e6 }), foreign: true })],
    ["zero receive timestamp", (req) => ({ data: reply(req, { receive: null }) })],
  ];
  for (const [name, make] of bad) {
    await t.step(`${name}: dropped, and the estimate is the good reply's`, async () => {
      await using server = fakeServer((req) => [make(req), { data: reply(req) }]);
      const sample = await queryNtp("127.0.0.1", { port: server.port, clock: clientClock() });
      assertEquals(sample.offsetMicros, 2_499_975);
    });
  }
  await t.step("only bad replies: a timeout that lists what was dropped", async () => {
    await using server = fakeServer((req) => bad.map(([, make]) => make(req)));
    const error = await assertRejects(
      () => queryNtp("127.0.0.1", { port: server.port, timeoutMs: 300 }),
      NtpQueryError,
      "no valid reply came within 300 ms (dropped: 1 from another address, 1 truncated, " +
        "1 not in server mode, 1 of an unknown version, 2 not answering this request)",
    );
    assertEquals(error.reason, "timeout");
  });
});

Deno.test("queryNtp rejects what a server says about itself", async (t) => {
  await t.step("a kiss-o'-death (stratum 0) rejects at once with its code", async () => {
    await using server = fakeServer((req) => [{
      data: reply(req, { stratum: 0, referenceId: "RATE" }),
    }]);
    const error = await assertRejects(
      () => queryNtp("127.0.0.1", { port: server.port }),
      NtpQueryError,
      'kiss-o\'-death ("RATE")',
    );
    assertEquals(error.reason, "kiss-of-death");
  });
  await t.step("leap indicator 3 (unsynchronised) rejects at once", async () => {
    await using server = fakeServer((req) => [{ data: reply(req, { leap: 3 }) }]);
    const error = await assertRejects(
      () => queryNtp("127.0.0.1", { port: server.port }),
      NtpQueryError,
      "unsynchronised",
    );
    assertEquals(error.reason, "unsynchronized");
  });
});

Deno.test("queryNtp stops on time and on request", async (t) => {
  await t.step("no reply: the injected timer ends the wait", async () => {
    await using server = fakeServer(() => []);
    const scheduler = new ManualScheduler();
    const query = queryNtp("127.0.0.1", { port: server.port, timeoutMs: 2_000, scheduler });
    while (server.requests.length === 0) await new Promise((r) => setTimeout(r, 1));
    scheduler.advance(2_000);
    const error = await assertRejects(() => query, NtpQueryError, "within 2000 ms");
    assertEquals(error.reason, "timeout");
    assertEquals(scheduler.pending, 0);
  });
  await t.step("an abort rejects with the signal's reason", async () => {
    await using server = fakeServer(() => []);
    const controller = new AbortController();
    const query = queryNtp("127.0.0.1", { port: server.port, signal: controller.signal });
    while (server.requests.length === 0) await new Promise((r) => setTimeout(r, 1));
    controller.abort(new Error("stop"));
    await assertRejects(() => query, Error, "stop");
  });
  await t.step("an aborted signal rejects before sending", async () => {
    await using server = fakeServer(() => []);
    await assertRejects(
      () => queryNtp("127.0.0.1", { port: server.port, signal: AbortSignal.abort(new Error("x")) }),
      Error,
      "x",
    );
    assertEquals(server.requests.length, 0);
  });
  await t.step("bad arguments are rejected", async () => {
    await assertRejects(() => queryNtp("time.example.com"), TypeError, "IP address");
    await assertRejects(() => queryNtp("127.0.0.1", { port: 0 }), RangeError, "'port'");
    await assertRejects(() => queryNtp("127.0.0.1", { timeoutMs: 0 }), RangeError, "'timeoutMs'");
    await assertRejects(
      () => queryNtp("127.0.0.1", { version: 2 as 3 }),
      RangeError,
      "'version'",
    );
  });
});

Deno.test("queryNtp talks to IPv6 loopback", async () => {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "::1", port: 0 });
  const serving = conn.receive().then(([data, from]) => conn.send(reply(data), from));
  try {
    const sample = await queryNtp("::1", {
      port: (conn.addr as Deno.NetAddr).port,
      clock: clientClock(),
    });
    assert(sample.offsetMicros === 2_499_975);
  } finally {
    await serving;
    conn.close();
  }
});
