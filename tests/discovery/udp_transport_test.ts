import { Lines } from "../_lines.ts";
import { assert, assertEquals, assertThrows } from "../_assert.ts";
import {
  netnsTest,
  type RootCaptureResult,
  type SimHost,
  startRootCapture,
  withHosts,
} from "../netns/mod.ts";
import { decodeMessage, encodeMessage } from "../../discovery/mdns/_codec.ts";
import { UdpMdnsTransport, UdpTransportError } from "../../discovery/mdns/_udp_transport.ts";
import {
  type Datagram,
  emptyMessage,
  MDNS_GROUP_V4,
  MDNS_PORT,
  type MdnsTransport,
} from "../../discovery/mdns/_types.ts";
import { UNICAST_ANSWER_ID } from "./_udp_transport_probe.ts";

const PROBE = new URL("./_udp_transport_probe.ts", import.meta.url).pathname;
const MCAST_PROBE = new URL("../netns/_mcast_probe.ts", import.meta.url).pathname;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Collects what a transport receives, in the background, until it is closed. */
function collect(transport: MdnsTransport): { datagrams: Datagram[]; done: Promise<void> } {
  const datagrams: Datagram[] = [];
  const done = (async () => {
    for await (const datagram of transport.receive()) datagrams.push(datagram);
  })();
  return { datagrams, done };
}

/** Resolves once `condition` holds, or rejects after `ms` milliseconds. */
async function waitUntil(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function texts(datagrams: Datagram[]): string[] {
  return datagrams.map((datagram) => decoder.decode(datagram.data));
}

netnsTest("UdpMdnsTransport in a private namespace with only lo", async (t) => {
  await t.step("with no other interface it joins on 127.0.0.1 and advertises it", async () => {
    const transport = await UdpMdnsTransport.open();
    try {
      assertEquals(
        [transport.interfaces, transport.addresses(), transport.port],
        [["127.0.0.1"], ["127.0.0.1"], MDNS_PORT],
      );
    } finally {
      await transport.close();
    }
  });

  await t.step(
    "two transports on port 5353 both receive a group datagram, the sender included",
    async () => {
      const a = await UdpMdnsTransport.open();
      const b = await UdpMdnsTransport.open();
      const fromA = collect(a);
      const fromB = collect(b);
      try {
        await a.send(encoder.encode("to the group"));
        await waitUntil(
          () => fromA.datagrams.length >= 1 && fromB.datagrams.length >= 1,
          3_000,
          "the group datagram on both transports",
        );
        assertEquals([texts(fromA.datagrams), texts(fromB.datagrams)], [
          ["to the group"],
          ["to the group"],
        ]);
        assertEquals(fromB.datagrams[0].from, { address: "127.0.0.1", port: MDNS_PORT });
      } finally {
        await a.close();
        await b.close();
        await fromA.done;
        await fromB.done;
      }
    },
  );

  await t.step(
    "another process bound to 5353 (as avahi would be) and the transport both receive",
    async () => {
      const transport = await UdpMdnsTransport.open();
      const received = collect(transport);
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--no-check",
          "--unstable-net",
          MCAST_PROBE,
          "receive",
          "--group",
          MDNS_GROUP_V4,
          "--port",
          String(MDNS_PORT),
          "--interface",
          "127.0.0.1",
          "--timeout",
          "5000",
        ],
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const lines = new Lines(child.stdout);
      try {
        assertEquals(await lines.json(10_000), { event: "ready" });
        await transport.send(encoder.encode("shared port"));
        const other = await lines.json(6_000);
        assertEquals([other?.event, other?.payload, other?.port], [
          "datagram",
          "shared port",
          MDNS_PORT,
        ]);
        await waitUntil(() => received.datagrams.length >= 1, 3_000, "the transport's own copy");
        assertEquals(texts(received.datagrams), ["shared port"]);
      } finally {
        await lines.close();
        await child.status;
        await transport.close();
        await received.done;
      }
    },
  );

  await t.step("a unicast datagram goes to the given endpoint, from port 5353", async () => {
    const transport = await UdpMdnsTransport.open();
    const peer = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    try {
      const port = (peer.addr as Deno.NetAddr).port;
      await transport.send(encoder.encode("just you"), { address: "127.0.0.1", port });
      const [data, from] = await peer.receive();
      assertEquals(decoder.decode(data), "just you");
      assertEquals((from as Deno.NetAddr).port, MDNS_PORT);
    } finally {
      peer.close();
      await transport.close();
    }
  });

  await t.step("close ends receive, is idempotent, and send afterwards throws", async () => {
    const transport = await UdpMdnsTransport.open();
    const received = collect(transport);
    await transport.close();
    await transport.close();
    await received.done;
    assertEquals([transport.closed, received.datagrams.length], [true, 0]);
    let thrown: unknown;
    try {
      await transport.send(encoder.encode("too late"));
    } catch (error) {
      thrown = error;
    }
    assert(thrown instanceof Deno.errors.BadResource, String(thrown));
  });

  await t.step("receive ends when the transport closes while a reader waits", async () => {
    const transport = await UdpMdnsTransport.open();
    const iterator = transport.receive()[Symbol.asyncIterator]();
    const next = iterator.next();
    await transport.close();
    assertEquals(await next, { done: true, value: undefined });
  });

  await t.step("a received datagram is a copy that later datagrams do not overwrite", async () => {
    const transport = await UdpMdnsTransport.open();
    const received = collect(transport);
    try {
      await transport.send(encoder.encode("first, longer"));
      await transport.send(encoder.encode("second"));
      await waitUntil(() => received.datagrams.length >= 2, 3_000, "two datagrams");
      assertEquals(texts(received.datagrams), ["first, longer", "second"]);
    } finally {
      await transport.close();
      await received.done;
    }
  });

  await t.step("an mDNS message survives the round trip through the socket", async () => {
    const transport = await UdpMdnsTransport.open();
    const received = collect(transport);
    try {
      const query = emptyMessage(false);
      query.questions.push({ name: "_tsercom._tcp.local", type: "PTR", unicastResponse: true });
      await transport.send(encodeMessage(query));
      await waitUntil(() => received.datagrams.length >= 1, 3_000, "the query");
      assertEquals(decodeMessage(received.datagrams[0].data), query);
    } finally {
      await transport.close();
      await received.done;
    }
  });

  await t.step("an interface address that is not on the host cannot be joined", async () => {
    let thrown: unknown;
    try {
      await UdpMdnsTransport.open({ interfaces: ["198.18.0.99"] });
    } catch (error) {
      thrown = error;
    }
    assert(thrown instanceof UdpTransportError, String(thrown));
    assert(thrown.message.includes("no interface joined 224.0.0.251"), thrown.message);
  });

  await t.step("the transport opens when only some of the given interfaces can join", async () => {
    const transport = await UdpMdnsTransport.open({ interfaces: ["198.18.0.99", "127.0.0.1"] });
    try {
      assertEquals([...transport.interfaces], ["127.0.0.1"]);
    } finally {
      await transport.close();
    }
  });
}, { file: import.meta.url, timeout: 60_000 });

Deno.test("UdpMdnsTransport rejects bad options before touching the network", async (t) => {
  await t.step("interfaces must be IPv4 addresses", async () => {
    for (const interfaces of [["eth0"], [], ["::1"], ["256.1.1.1"]]) {
      let thrown: unknown;
      try {
        await UdpMdnsTransport.open({ interfaces });
      } catch (error) {
        thrown = error;
      }
      assert(thrown instanceof TypeError, `${JSON.stringify(interfaces)}: ${String(thrown)}`);
      assert(thrown.message.includes("'interfaces' must be a non-empty array of IPv4"));
    }
  });

  await t.step("the port must be an integer in 1..65535", async () => {
    for (const port of [0, 65536, 1.5]) {
      let thrown: unknown;
      try {
        await UdpMdnsTransport.open({ port });
      } catch (error) {
        thrown = error;
      }
      assert(thrown instanceof RangeError, `${port}: ${String(thrown)}`);
      assert(thrown.message.includes(`current value is ${port}`), thrown.message);
    }
  });

  await t.step("the error class has its name", () => {
    const error = assertThrows(() => {
      throw new UdpTransportError("x");
    }, UdpTransportError);
    assertEquals(error.name, "UdpTransportError");
  });
});

function probe(mode: "serve" | "query", name: string): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    "--no-check",
    "--unstable-net",
    PROBE,
    mode,
    "--name",
    name,
    "--timeout",
    "8000",
  ];
}

/** Reads a probe's JSON lines until its "done" line (or the deadline). */
async function readAll(lines: Lines, timeout: number): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + timeout;
  const events: Record<string, unknown>[] = [];
  for (;;) {
    const event = await lines.json(Math.max(1, deadline - Date.now()));
    if (event === undefined) return events;
    events.push(event);
    if (event.event === "done") return events;
  }
}

interface Exchange {
  served: Record<string, unknown>[];
  queried: Record<string, unknown>[];
  capturedOnB: string;
}

/** Runs the probe's server on `b`, a tcpdump on `b`, then the probe's query on `a`. */
async function exchange(a: SimHost, b: SimHost, name: string): Promise<Exchange> {
  const server = b.spawn(probe("serve", name), { stderr: "null" });
  const served = new Lines(server.stdout);
  const dump = b.spawn([
    "tcpdump",
    "-i",
    "eth0",
    "-n",
    "-v",
    "-l",
    "-c",
    "1",
    `udp port ${MDNS_PORT} and src host ${a.address}`,
  ]);
  const dumped = new Lines(dump.stdout);
  const dumpErr = new Lines(dump.stderr);
  let client: Deno.ChildProcess | undefined;
  let queried: Lines | undefined;
  try {
    const ready = await served.json(10_000);
    assertEquals(ready?.event, "ready", JSON.stringify(ready));
    assert(await dumpErr.until("listening on", 5_000), "tcpdump did not start");
    client = a.spawn(probe("query", name), { stderr: "null" });
    queried = new Lines(client.stdout);
    const queriedEvents = await readAll(queried, 12_000);
    const servedEvents = [ready!, ...await readAll(served, 5_000)];
    const header = (await dumped.next(3_000)) ?? "";
    return { served: servedEvents, queried: queriedEvents, capturedOnB: header };
  } finally {
    await Promise.all([served, dumped, dumpErr, queried].map((lines) => lines?.close()));
    await Promise.all([server.status, client?.status]);
    try {
      Deno.kill(dump.pid, "SIGKILL");
    } catch {
      // tcpdump already exited after one packet.
    }
    await dump.status;
  }
}

Deno.test("two simulated hosts exchange mDNS messages through UdpMdnsTransport", async (t) => {
  const name = `probe-${crypto.randomUUID().slice(0, 8)}.local`;
  const capture = await startRootCapture(`udp port ${MDNS_PORT}`);
  let result: RootCaptureResult;
  let run: Exchange | undefined;
  try {
    run = await withHosts(2, ([a, b]) => exchange(a, b, name));
  } finally {
    result = await capture.stop();
  }
  const { served, queried, capturedOnB } = run;
  const datagrams = (events: Record<string, unknown>[]) =>
    events.filter((event) => event.event === "datagram") as {
      from: { address: string; port: number };
      message: { id: number; response: boolean; questions: unknown[]; answers: unknown[] };
    }[];

  await t.step("a simulated host joins on eth0 and advertises its address, not loopback", () => {
    assertEquals(served[0], {
      event: "ready",
      interfaces: ["198.18.0.2"],
      addresses: ["198.18.0.2"],
    });
    assertEquals(queried[0], {
      event: "ready",
      interfaces: ["198.18.0.1"],
      addresses: ["198.18.0.1"],
    });
  });

  await t.step("host B receives host A's QU query from 198.18.0.1:5353", () => {
    const query = datagrams(served).find((d) => !d.message.response);
    assertEquals(query?.from, { address: "198.18.0.1", port: MDNS_PORT });
    assertEquals(query?.message.questions, [{ name, type: "A", unicastResponse: true }]);
  });

  await t.step("host A receives its own query back (multicast loopback)", () => {
    const own = datagrams(queried).find((d) => !d.message.response);
    assertEquals(own?.from, { address: "198.18.0.1", port: MDNS_PORT });
  });

  await t.step("host A receives the answer by multicast and by unicast from B:5353", () => {
    const answers = datagrams(queried).filter((d) => d.message.response);
    const expected = [{ name, type: "A", ttl: 120, flush: true, data: "198.18.0.2" }];
    assertEquals(
      answers.map((d) => [d.from, d.message.id, d.message.answers]).sort((x, y) =>
        Number(x[1]) - Number(y[1])
      ),
      [
        [{ address: "198.18.0.2", port: MDNS_PORT }, 0, expected],
        [{ address: "198.18.0.2", port: MDNS_PORT }, UNICAST_ANSWER_ID, expected],
      ],
    );
    assertEquals(queried.at(-1), { event: "done" });
  });

  await t.step("the query went out on the link with IP TTL 255 (RFC 6762 §11)", () => {
    assert(/\bttl 255\b/.test(capturedOnB), capturedOnB);
  });

  await t.step("nothing of it reached the machine's real interfaces", () => {
    assertEquals([result.captured, result.receivedByFilter], [0, 0], result.stdout);
  });
});
