import { assert, assertEquals, assertThrows } from "../_assert.ts";
import { readTimestamp, writeTimestamp } from "../../rpc/_ntp.ts";
import { TimeSyncBindError, TimeSyncServer } from "../../rpc/time_sync_server.ts";

/** A clock that reads the values it is given, in order, then repeats the last. */
function scripted(...values: number[]) {
  let k = 0;
  return { now: () => values[Math.min(k++, values.length - 1)] };
}

function request(first: number, transmitMicros = 1_704_110_400_000_000): Uint8Array {
  const bytes = new Uint8Array(48);
  bytes[0] = first;
  bytes[2] = 6; // poll
  writeTimestamp(new DataView(bytes.buffer), 40, transmitMicros);
  return bytes;
}

/** Sends `packet` to the server and returns its reply. */
async function exchange(server: TimeSyncServer, packet: Uint8Array): Promise<Uint8Array> {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    await conn.send(packet, { transport: "udp", hostname: "127.0.0.1", port: server.port });
    const [reply] = await conn.receive();
    return reply;
  } finally {
    conn.close();
  }
}

/**
 * Sends `bad`, then a good request, from one socket, and tells whether the
 * first reply answers the good one: the server handles datagrams in order,
 * so an answer to `bad` would arrive first. No waiting for a timeout.
 */
async function ignored(server: TimeSyncServer, bad: Uint8Array): Promise<boolean> {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const to = { transport: "udp", hostname: "127.0.0.1", port: server.port } as const;
    const good = request(0x23, 1_800_000_000_000_000);
    await conn.send(bad, to);
    await conn.send(good, to);
    const [reply] = await conn.receive();
    return reply.subarray(24, 32).every((b, k) => b === good[40 + k]);
  } finally {
    conn.close();
  }
}

/** A clock 2.5 s after 2024-01-01T12:00:00Z, stepping 1 ms per read. */
const T = 1_704_110_402_500_000;

Deno.test("TimeSyncServer answers client requests as RFC 5905 says", async (t) => {
  await using server = new TimeSyncServer({
    hostname: "127.0.0.1",
    port: 0,
    clock: scripted(T - 1_000, T, T + 1_000, T + 2_000, T + 3_000, T + 4_000, T + 5_000),
  });
  const sent = request(0x23); // LI 0, VN 4, mode 3
  const reply = await exchange(server, sent);
  const view = new DataView(reply.buffer, reply.byteOffset);

  await t.step("a 48-byte mode 4 reply with the request's version", () => {
    assertEquals(reply.length, 48);
    assertEquals(reply[0], 0x24);
  });
  await t.step("stratum 1, the client's poll, reference id LOCL", () => {
    assertEquals([reply[1], reply[2]], [1, 6]);
    assertEquals(new TextDecoder().decode(reply.subarray(12, 16)), "LOCL");
  });
  await t.step("originate is the request's transmit timestamp, verbatim", () => {
    assertEquals(Array.from(reply.subarray(24, 32)), Array.from(sent.subarray(40, 48)));
  });
  await t.step("receive is stamped on arrival and transmit just before sending", () => {
    // The constructor read the clock once (reference time); then T2, then T3.
    assertEquals(readTimestamp(view, 16), T - 1_000);
    assertEquals(readTimestamp(view, 32), T);
    assertEquals(readTimestamp(view, 40), T + 1_000);
  });
  await t.step("version 3 requests get version 3 replies", async () => {
    const v3 = await exchange(server, request(0x1b));
    assertEquals(v3[0], 0x1c);
  });
  await t.step("it counts what it received and answered", () => {
    assertEquals(server.counters, {
      received: 2,
      answered: 2,
      truncated: 0,
      notClient: 0,
      badVersion: 0,
      sendErrors: 0,
      receiveErrors: 0,
    });
  });
});

Deno.test("TimeSyncServer drops bad datagrams, counts them and keeps serving", async (t) => {
  await using server = new TimeSyncServer({ hostname: "127.0.0.1", port: 0 });
  await t.step("a truncated request gets no reply", async () => {
    assert(await ignored(server, request(0x23).subarray(0, 47)));
    assertEquals(server.counters.truncated, 1);
  });
  await t.step("a server-mode packet gets no reply", async () => {
    assert(await ignored(server, request(0x24)));
    assertEquals(server.counters.notClient, 1);
  });
  await t.step("a broadcast or control packet gets no reply", async () => {
    assert(await ignored(server, request(0x25)));
    assert(await ignored(server, request(0x26)));
    assertEquals(server.counters.notClient, 3);
  });
  await t.step("versions other than 3 and 4 get no reply", async () => {
    for (const version of [0, 1, 2, 5, 7]) {
      assert(await ignored(server, request((version << 3) | 3)));
    }
    assertEquals(server.counters.badVersion, 5);
  });
  await t.step("an empty datagram gets no reply", async () => {
    assert(await ignored(server, new Uint8Array(0)));
    assertEquals(server.counters.truncated, 2);
  });
  await t.step("a request with extension bytes after the header is answered", async () => {
    const long = new Uint8Array(68);
    long.set(request(0x23));
    const reply = await exchange(server, long);
    assertEquals(reply.length, 48);
  });
  await t.step("a good request after all that is answered", async () => {
    const reply = await exchange(server, request(0x23));
    assertEquals(reply[0], 0x24);
    // 10 bad datagrams, each followed by a good probe, then 2 good requests.
    assertEquals(server.counters.received, 22);
    assertEquals(server.counters.answered, 12);
  });
});

Deno.test("TimeSyncServer reports a port it cannot bind", async (t) => {
  await t.step("a port in use gives TimeSyncBindError that says so", async () => {
    await using first = new TimeSyncServer({ hostname: "127.0.0.1", port: 0 });
    const error = assertThrows(
      () => new TimeSyncServer({ hostname: "127.0.0.1", port: first.port }),
      TimeSyncBindError,
      "the address is in use: pass 'port: 0'",
    );
    assertEquals([error.hostname, error.port], ["127.0.0.1", first.port]);
    assert(error.cause instanceof Deno.errors.AddrInUse);
  });
  await t.step("bad options are rejected before binding", () => {
    assertThrows(() => new TimeSyncServer({ port: 70_000 }), RangeError, "'port'");
    assertThrows(() => new TimeSyncServer({ port: 0, stratum: 0 }), RangeError, "'stratum'");
    assertThrows(() => new TimeSyncServer({ port: 0, stratum: 16 }), RangeError, "'stratum'");
    assertThrows(
      () => new TimeSyncServer({ port: 0, referenceId: "TOOLONG" }),
      TypeError,
      "'referenceId'",
    );
    assertThrows(
      () => new TimeSyncServer({ port: 0, clock: {} as { now(): number } }),
      TypeError,
      "'clock'",
    );
  });
});

Deno.test("TimeSyncServer exposes the clock it serves as an identity SynchronizedClock", async () => {
  await using server = new TimeSyncServer({
    hostname: "127.0.0.1",
    port: 0,
    clock: scripted(T, T + 7),
  });
  assertEquals([server.clock.now(), server.clock.sync(42), server.clock.desync(-42)], [
    T + 7,
    42,
    -42,
  ]);
});

Deno.test("TimeSyncServer closes cleanly", async (t) => {
  await t.step("close releases the port and can be called twice", async () => {
    const server = new TimeSyncServer({ hostname: "127.0.0.1", port: 0 });
    const port = server.port;
    await server.close();
    await server.close();
    assert(server.closed);
    await using again = new TimeSyncServer({ hostname: "127.0.0.1", port });
    assertEquals(again.port, port);
  });
});
