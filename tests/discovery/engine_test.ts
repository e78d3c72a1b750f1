import { assert, assertEquals } from "../_assert.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import { MdnsEngine } from "../../discovery/mdns/_engine.ts";
import { MemoryNetwork } from "../../discovery/mdns/_memory_transport.ts";
import type { BrowseEvent } from "../../discovery/mdns/_querier.ts";
import type { Datagram, Endpoint, MdnsTransport } from "../../discovery/mdns/_types.ts";

/** Lets queued deliveries (microtasks) run. */
async function settle(): Promise<void> {
  for (let k = 0; k < 20; k++) await Promise.resolve();
}

/** Advances the scheduler `ms` in 10 ms steps, letting deliveries run in between. */
async function run(scheduler: ManualScheduler, ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 10) {
    scheduler.advance(10);
    await settle();
  }
}

function seeded(seed: number): () => number {
  return () => {
    seed = (seed * 48271) % 2147483647;
    return seed / 2147483647;
  };
}

/** A transport whose addresses and link state a test can change. */
function withAddresses(inner: MdnsTransport, addresses: string[]) {
  const current = [...addresses];
  let link = "carrier 1";
  const transport: MdnsTransport = {
    send: (data: Uint8Array, to?: Endpoint) => inner.send(data, to),
    receive: (): AsyncIterable<Datagram> => inner.receive(),
    addresses: () => [...current],
    linkState: () => link,
    close: () => inner.close(),
  };
  return {
    transport,
    set: (next: string[]) => current.splice(0, current.length, ...next),
    setLink: (next: string) => link = next,
  };
}

Deno.test("MdnsEngine: a publisher and a browser on one in-memory link", async (t) => {
  const scheduler = new ManualScheduler();
  const network = new MemoryNetwork();
  const publisher = new MdnsEngine({
    transport: network.transport("10.0.0.1"),
    scheduler,
    random: seeded(1),
    hostLabel: "pub",
  });
  const browser = new MdnsEngine({
    transport: network.transport("10.0.0.2"),
    scheduler,
    random: seeded(2),
    hostLabel: "browse",
  });
  const events: BrowseEvent[] = [];
  browser.querier.browse("_x._tcp.local", (event) => events.push(event));

  await t.step("a registered service is added with its port, host address and TXT", async () => {
    let name: string | undefined;
    const registered = publisher.responder.register({
      instance: "Sensor 7",
      serviceType: "_x._tcp.local",
      port: 8080,
      txt: [new TextEncoder().encode("id=1")],
    }).then((r) => name = r.instanceName);
    await run(scheduler, 2_000);
    await registered;
    assertEquals(name, "Sensor 7._x._tcp.local");
    assertEquals(events.map((e) => e.kind), ["added"]);
    assertEquals(events[0].instance.port, 8080);
    assertEquals(events[0].instance.addresses, ["10.0.0.1"]);
    assertEquals(new TextDecoder().decode(events[0].instance.txt[0]), "id=1");
  });

  await t.step("the engines count what they sent and received, and no errors", () => {
    const p = publisher.counters;
    const b = browser.counters;
    assert(p.sent > 0 && b.received > 0);
    assertEquals([p.decodeErrors, p.handlerErrors, b.decodeErrors, b.handlerErrors], [0, 0, 0, 0]);
  });

  await t.step("a datagram that does not decode is dropped and counted", async () => {
    const rogue = network.transport("10.0.0.9");
    await rogue.send(new Uint8Array([1, 2, 3]));
    await settle();
    assertEquals(browser.counters.decodeErrors, 1);
    await rogue.close();
  });

  await t.step("closing the publisher says goodbye: removed 1 s later", async () => {
    const closing = publisher.close();
    await run(scheduler, 1_500);
    await closing;
    assertEquals(events.map((e) => e.kind), ["added", "removed"]);
  });

  await t.step("closing the browser leaves no timer behind", async () => {
    await browser.close();
    assertEquals(scheduler.pending, 0);
  });
});

Deno.test("MdnsEngine announces a change of the host's addresses", async () => {
  const scheduler = new ManualScheduler();
  const network = new MemoryNetwork();
  const link = withAddresses(network.transport("10.0.0.1"), ["10.0.0.1"]);
  const publisher = new MdnsEngine({
    transport: link.transport,
    scheduler,
    random: seeded(3),
    hostLabel: "pub",
    addressPollMs: 1_000,
  });
  const browser = new MdnsEngine({
    transport: network.transport("10.0.0.2"),
    scheduler,
    random: seeded(4),
    hostLabel: "browse",
    addressPollMs: 0,
  });
  const events: BrowseEvent[] = [];
  browser.querier.browse("_x._tcp.local", (event) => events.push(event));
  const registered = publisher.responder.register({
    instance: "S",
    serviceType: "_x._tcp.local",
    port: 1,
    txt: [],
  });
  await run(scheduler, 2_000);
  await registered;
  assertEquals(events.at(-1)?.instance.addresses, ["10.0.0.1"]);
  link.set(["10.0.0.7"]);
  await run(scheduler, 3_000);
  const last = events.at(-1)!;
  assertEquals([last.kind, last.instance.addresses], ["updated", ["10.0.0.7"]]);
  const closing = Promise.all([publisher.close(), browser.close()]);
  await run(scheduler, 1_000);
  await closing;
  assertEquals(scheduler.pending, 0);
});

Deno.test("MdnsEngine announces everything again when the link comes back", async () => {
  const scheduler = new ManualScheduler();
  const network = new MemoryNetwork();
  const link = withAddresses(network.transport("10.0.0.1"), ["10.0.0.1"]);
  const engine = new MdnsEngine({
    transport: link.transport,
    scheduler,
    random: seeded(5),
    hostLabel: "pub",
    addressPollMs: 1_000,
  });
  const registered = engine.responder.register({
    instance: "S",
    serviceType: "_x._tcp.local",
    port: 1,
    txt: [],
  });
  await run(scheduler, 5_000);
  await registered;
  const before = engine.responder.counters.announcements;
  await run(scheduler, 3_000);
  assertEquals(engine.responder.counters.announcements, before, "no change, no announcement");
  link.setLink("carrier 3"); // a cable pulled and plugged back, same addresses
  await run(scheduler, 1_500);
  assert(engine.responder.counters.announcements > before);
  const closing = engine.close();
  await run(scheduler, 1_000);
  await closing;
});
