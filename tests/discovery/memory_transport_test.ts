import { assert, assertEquals, assertThrows } from "../_assert.ts";
import {
  MemoryNetwork,
  type MemoryPacket,
  type MemoryTransport,
} from "../../discovery/mdns/_memory_transport.ts";
import type { Datagram } from "../../discovery/mdns/_types.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads what a transport has received so far (its iterator is drained until it would wait). */
class Inbox {
  readonly datagrams: Datagram[] = [];
  readonly done: Promise<void>;

  constructor(transport: MemoryTransport) {
    this.done = (async () => {
      for await (const datagram of transport.receive()) this.datagrams.push(datagram);
    })();
  }

  texts(): string[] {
    return this.datagrams.map((d) => decoder.decode(d.data));
  }
}

/** Lets every queued microtask and the deliveries they schedule run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setTimeout(resolve, 0));
}

/** A deterministic random source (mulberry32). */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("MemoryNetwork delivers like a multicast link", async (t) => {
  await t.step("a group datagram reaches every transport, the sender included", async () => {
    const network = new MemoryNetwork();
    const a = network.transport("10.0.0.1");
    const b = network.transport("10.0.0.2");
    const inA = new Inbox(a);
    const inB = new Inbox(b);
    await a.send(encoder.encode("hello"));
    await settle();
    assertEquals([inA.texts(), inB.texts()], [["hello"], ["hello"]]);
    assertEquals(inB.datagrams[0].from, { address: "10.0.0.1", port: 5353 });
    await a.close();
    await b.close();
    await Promise.all([inA.done, inB.done]);
    assertEquals(network.counters, { sent: 1, delivered: 2, dropped: 0 });
  });

  await t.step("without loopback the sender does not get its own multicast", async () => {
    const network = new MemoryNetwork();
    const a = network.transport("10.0.0.1", { loopback: false });
    const b = network.transport("10.0.0.2");
    const inA = new Inbox(a);
    const inB = new Inbox(b);
    await a.send(encoder.encode("x"));
    await settle();
    assertEquals([inA.texts(), inB.texts()], [[], ["x"]]);
    await Promise.all([a.close(), b.close(), inA.done, inB.done]);
  });

  await t.step(
    "a unicast datagram reaches only the transport at that address and port",
    async () => {
      const network = new MemoryNetwork();
      const a = network.transport("10.0.0.1");
      const b = network.transport("10.0.0.2");
      const legacy = network.transport("10.0.0.2", { port: 40000 });
      const inboxes = [a, b, legacy].map((transport) => new Inbox(transport));
      await a.send(encoder.encode("to the legacy querier"), { address: "10.0.0.2", port: 40000 });
      await a.send(encoder.encode("to nobody"), { address: "10.0.0.9", port: 5353 });
      await settle();
      assertEquals(inboxes.map((inbox) => inbox.texts()), [[], [], ["to the legacy querier"]]);
      assertEquals(network.counters, { sent: 2, delivered: 1, dropped: 1 });
      await Promise.all([a, b, legacy].map((transport) => transport.close()));
      await Promise.all(inboxes.map((inbox) => inbox.done));
    },
  );

  await t.step("delivery is asynchronous and keeps the sending order", async () => {
    const network = new MemoryNetwork();
    const a = network.transport("10.0.0.1");
    const inbox = new Inbox(a);
    await settle();
    const sends = ["1", "2", "3"].map((s) => a.send(encoder.encode(s)));
    assertEquals(inbox.datagrams.length, 0);
    await Promise.all(sends);
    await settle();
    assertEquals(inbox.texts(), ["1", "2", "3"]);
    await a.close();
    await inbox.done;
  });

  await t.step("each receiver gets its own copy of the bytes", async () => {
    const network = new MemoryNetwork();
    const a = network.transport("10.0.0.1");
    const b = network.transport("10.0.0.2");
    const inA = new Inbox(a);
    const inB = new Inbox(b);
    const data = encoder.encode("original");
    await a.send(data);
    data.fill(0);
    await settle();
    inA.datagrams[0].data.fill(0);
    assertEquals(inB.texts(), ["original"]);
    await Promise.all([a.close(), b.close(), inA.done, inB.done]);
  });

  await t.step("onSend sees every datagram with its source and destination", async () => {
    const seen: MemoryPacket[] = [];
    const network = new MemoryNetwork({ onSend: (packet) => seen.push(packet) });
    const a = network.transport("10.0.0.1");
    await a.send(encoder.encode("m"));
    await a.send(encoder.encode("u"), { address: "10.0.0.2", port: 5353 });
    assertEquals(seen.map((p) => [decoder.decode(p.data), p.from, p.to]), [
      ["m", { address: "10.0.0.1", port: 5353 }, undefined],
      ["u", { address: "10.0.0.1", port: 5353 }, { address: "10.0.0.2", port: 5353 }],
    ]);
    await a.close();
  });

  await t.step("addresses() is the address, or the list given", async () => {
    const network = new MemoryNetwork();
    const a = network.transport("10.0.0.1");
    const b = network.transport("10.0.0.2", { addresses: ["10.0.0.2", "fe80::2"] });
    assertEquals([a.addresses(), b.addresses()], [["10.0.0.1"], ["10.0.0.2", "fe80::2"]]);
    await Promise.all([a.close(), b.close()]);
  });
});

Deno.test("MemoryTransport closes cleanly", async (t) => {
  await t.step("close ends receive and is idempotent; it then receives nothing", async () => {
    const network = new MemoryNetwork();
    const a = network.transport("10.0.0.1");
    const b = network.transport("10.0.0.2");
    const inB = new Inbox(b);
    await b.close();
    await b.close();
    await inB.done;
    await a.send(encoder.encode("after close"));
    await settle();
    assertEquals([b.closed, inB.datagrams.length], [true, 0]);
    await a.close();
  });

  await t.step("send after close rejects with BadResource", async () => {
    const a = new MemoryNetwork().transport("10.0.0.1");
    await a.close();
    let thrown: unknown;
    try {
      await a.send(encoder.encode("x"));
    } catch (error) {
      thrown = error;
    }
    assert(thrown instanceof Deno.errors.BadResource, String(thrown));
  });

  await t.step("a closed transport's address can be taken again", async () => {
    const network = new MemoryNetwork();
    const a = network.transport("10.0.0.1");
    assertThrows(() => network.transport("10.0.0.1"), RangeError, "already in use");
    await a.close();
    await network.transport("10.0.0.1").close();
  });
});

Deno.test("MemoryNetwork drops and duplicates on request", async (t) => {
  await t.step("a filter decides per delivery", async () => {
    const network = new MemoryNetwork({
      filter: (packet, receiver) => {
        const body = decoder.decode(packet.data);
        if (body === "drop") return "drop";
        if (body === "twice" && receiver.address === "10.0.0.2") return "duplicate";
        return "deliver";
      },
    });
    const a = network.transport("10.0.0.1");
    const b = network.transport("10.0.0.2");
    const inA = new Inbox(a);
    const inB = new Inbox(b);
    for (const body of ["once", "drop", "twice"]) await a.send(encoder.encode(body));
    await settle();
    assertEquals([inA.texts(), inB.texts()], [["once", "twice"], ["once", "twice", "twice"]]);
    assertEquals(network.counters, { sent: 3, delivered: 5, dropped: 2 });
    await Promise.all([a.close(), b.close(), inA.done, inB.done]);
  });

  await t.step(
    "seeded rates drop and duplicate about that often, the same on every run",
    async () => {
      const run = async () => {
        const network = new MemoryNetwork({
          dropRate: 0.25,
          duplicateRate: 0.25,
          random: seeded(7),
        });
        const a = network.transport("10.0.0.1", { loopback: false });
        const b = network.transport("10.0.0.2");
        const inB = new Inbox(b);
        for (let i = 0; i < 400; i++) await a.send(encoder.encode(String(i)));
        await settle();
        await Promise.all([a.close(), b.close(), inB.done]);
        return { texts: inB.texts(), counters: network.counters };
      };
      const first = await run();
      const second = await run();
      assertEquals(first, second);
      const { dropped, delivered } = first.counters;
      assert(dropped > 60 && dropped < 140, `dropped ${dropped}`);
      const duplicates = delivered - (400 - dropped);
      assert(duplicates > 40 && duplicates < 110, `duplicated ${duplicates}`);
    },
  );

  await t.step("a full queue drops what does not fit, like a socket buffer", async () => {
    const network = new MemoryNetwork();
    const a = network.transport("10.0.0.1", { loopback: false });
    const b = network.transport("10.0.0.2", { maxQueued: 2 });
    for (const body of ["1", "2", "3"]) await a.send(encoder.encode(body));
    await settle();
    const inB = new Inbox(b);
    await settle();
    assertEquals(inB.texts(), ["1", "2"]);
    assertEquals(network.counters, { sent: 3, delivered: 2, dropped: 1 });
    await Promise.all([a.close(), b.close(), inB.done]);
  });

  await t.step("bad options are rejected up front", () => {
    assertThrows(() => new MemoryNetwork({ dropRate: 1.5 }), RangeError, "'dropRate'");
    assertThrows(() => new MemoryNetwork({ duplicateRate: -1 }), RangeError, "'duplicateRate'");
    const network = new MemoryNetwork();
    assertThrows(() => network.transport(""), TypeError, "'address'");
    assertThrows(() => network.transport("10.0.0.1", { port: 0 }), RangeError, "'port'");
    assertThrows(() => network.transport("10.0.0.1", { maxQueued: 0 }), RangeError, "'maxQueued'");
  });
});
