import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import {
  CallerId,
  DiscoveryHost,
  type DiscoveryListener,
  InstanceListener,
  type InstanceListenerClient,
  InstancePublisher,
  type ServiceInfo,
} from "../../discovery/mod.ts";
import { MemoryLink } from "./_memory_hosts.ts";

const TYPE = "_api._tcp";

function recorder() {
  const log: string[] = [];
  const infos: ServiceInfo[] = [];
  const client: InstanceListenerClient = {
    onServiceAdded(info) {
      log.push(`added ${info.mdnsName} ${info.port}`);
      infos.push(info);
    },
    onServiceUpdated(info, changed) {
      log.push(`updated ${info.mdnsName} ${changed.join(",")}`);
      infos.push(info);
    },
    onServiceRemoved(name) {
      log.push(`removed ${name}`);
    },
  };
  return { log, infos, client };
}

Deno.test("InstancePublisher validates its arguments", async (t) => {
  await t.step("the port must be an integer in 1..65535", () => {
    assertThrows(() => new InstancePublisher("12345" as unknown as number, TYPE), TypeError);
    assertThrows(() => new InstancePublisher(123.45, TYPE), TypeError, "'port'");
    assertThrows(() => new InstancePublisher(0, TYPE), RangeError, "1..65535");
    assertThrows(() => new InstancePublisher(65_536, TYPE), RangeError, "1..65535");
  });
  await t.step("the service type must be a DNS-SD type", () => {
    assertThrows(() => new InstancePublisher(1, 123 as unknown as string), TypeError);
    assertThrows(() => new InstancePublisher(1, "echo"), RangeError, "_name._tcp.local");
    assertThrows(() => new InstancePublisher(1, "_a b._tcp"), RangeError);
  });
  await t.step("names must be strings, and the label 1..63 bytes", () => {
    assertThrows(
      () => new InstancePublisher(1, TYPE, { readableName: 5 as unknown as string }),
      TypeError,
      "'readableName'",
    );
    assertThrows(
      () => new InstancePublisher(1, TYPE, { instanceName: "x".repeat(64) }),
      RangeError,
    );
  });
  await t.step("the type is normalised; the id is random unless given", () => {
    const id = CallerId.random();
    const publisher = new InstancePublisher(1, "_Echo._tcp.local.", { id });
    assertEquals(publisher.serviceType, "_echo._tcp.local");
    assert(publisher.id.equals(id));
    assert(!new InstancePublisher(1, TYPE).id.equals(id));
  });
});

Deno.test("InstancePublisher and InstanceListener on an in-memory link", async (t) => {
  const link = new MemoryLink();
  const a = link.host("10.0.0.1");
  const b = link.host("10.0.0.2");
  const seen = recorder();
  const listener = new InstanceListener(seen.client, TYPE, { mdns: b });
  await listener.start();
  const publisher = new InstancePublisher(8080, TYPE, {
    mdns: a,
    readableName: "My Readable Name",
    instanceName: "sensor",
  });

  await t.step(
    "publish resolves after probing, and publishing twice is one publication",
    async () => {
      const first = publisher.publish();
      assert(publisher.publish() === first);
      await link.until(first);
      assertEquals(publisher.instanceName, "sensor._api._tcp.local");
    },
  );
  await t.step("the listener reports name, port, address, TXT and id", async () => {
    await link.run(500);
    assertEquals(seen.log, ["added sensor._api._tcp.local 8080"]);
    const [info] = seen.infos;
    assertEquals(info.name, "My Readable Name");
    assertEquals(info.addresses, ["10.0.0.1"]);
    assertEquals(info.id, publisher.id.toString());
    assertEquals(info.txt.name, "My Readable Name");
    assert(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(info.txt.published_on ?? ""));
  });
  await t.step("a second publisher with the same label is renamed 'sensor (2)'", async () => {
    const twin = new InstancePublisher(9090, TYPE, { mdns: b, instanceName: "sensor" });
    await link.until(twin.publish());
    assertEquals(twin.instanceName, "sensor (2)._api._tcp.local");
    await link.run(500);
    assert(seen.log.includes("added sensor (2)._api._tcp.local 9090"));
    await link.until(twin.close());
  });
  await t.step("closing the publisher says goodbye: removed", async () => {
    await link.until(publisher.close());
    await link.run(1_500);
    assert(seen.log.includes("removed sensor._api._tcp.local"), seen.log.join("\n"));
    await assertRejects(() => publisher.publish(), Error, "closed");
  });
  await t.step("a closed listener reports nothing more", async () => {
    await listener.close();
    const later = new InstancePublisher(1, TYPE, { mdns: a, instanceName: "later" });
    await link.until(later.publish());
    await link.run(500);
    assert(!seen.log.some((line) => line.includes("later")));
    await link.until(later.close());
  });
  await link.close();
});

Deno.test("InstanceListener converts what it finds", async (t) => {
  await t.step("no TXT name, or one that is not UTF-8: the instance name", async () => {
    const link = new MemoryLink();
    const a = link.host("10.0.0.1");
    const seen = recorder();
    const listener = new InstanceListener(seen.client, TYPE, { mdns: link.host("10.0.0.2") });
    await listener.start();
    const plain = new InstancePublisher(1, TYPE, { mdns: a, instanceName: "plain" });
    await link.until(plain.publish());
    await link.run(500);
    assertEquals(seen.infos.map((i) => i.name), ["plain._api._tcp.local"]);
    await listener.close();
    await link.close();
  });
  await t.step("a host with only an IPv6 link-local address is not reported", async () => {
    const link = new MemoryLink();
    const a = link.host("10.0.0.1", ["fe80::1"]);
    const seen = recorder();
    const listener = new InstanceListener(seen.client, TYPE, { mdns: link.host("10.0.0.2") });
    await listener.start();
    const publisher = new InstancePublisher(1, TYPE, { mdns: a, instanceName: "ll" });
    await link.until(publisher.publish());
    await link.run(1_000);
    assertEquals(seen.log, []);
    await listener.close();
    await link.close();
  });
  await t.step("callbacks run one at a time and a throwing one goes to onError", async () => {
    const link = new MemoryLink();
    const a = link.host("10.0.0.1");
    const errors: unknown[] = [];
    const order: string[] = [];
    let running = 0;
    const listener = new InstanceListener(
      {
        async onServiceAdded(info) {
          running++;
          assertEquals(running, 1);
          await Promise.resolve();
          order.push(info.mdnsName);
          running--;
          throw new Error(`client failed on ${info.mdnsName}`);
        },
        onServiceRemoved() {},
      },
      TYPE,
      { mdns: link.host("10.0.0.2"), onError: (e) => errors.push(e) },
    );
    await listener.start();
    for (const name of ["one", "two"]) {
      await link.until(new InstancePublisher(1, TYPE, { mdns: a, instanceName: name }).publish());
    }
    await link.run(500);
    assertEquals(order.length, 2);
    assertEquals(
      errors.map((e) => (e as Error).message),
      order.map((n) => `client failed on ${n}`),
    );
    await listener.close();
    await link.close();
  });
  await t.step("the client must have both callbacks", () => {
    assertThrows(
      () =>
        new InstanceListener({ onServiceAdded() {} } as unknown as InstanceListenerClient, TYPE),
      TypeError,
      "onServiceRemoved",
    );
  });
});

/** A listener stand-in that the test drives directly. */
function fakeListener(options: { failStart?: boolean } = {}) {
  const state = {
    client: undefined as InstanceListenerClient | undefined,
    starts: 0,
    closes: 0,
    factoryCalls: 0,
  };
  const factory = (client: InstanceListenerClient): DiscoveryListener => {
    state.factoryCalls++;
    state.client = client;
    return {
      start() {
        state.starts++;
        return options.failStart ? Promise.reject(new Error("no socket")) : Promise.resolve();
      },
      close() {
        state.closes++;
        return Promise.resolve();
      },
    };
  };
  return { state, factory };
}

function service(name: string, id?: string): ServiceInfo {
  return {
    name,
    port: 1,
    addresses: ["10.0.0.1"],
    mdnsName: `${name}._api._tcp.local`,
    txt: id === undefined ? {} : { id },
    id,
  };
}

Deno.test("DiscoveryHost gives each instance a caller id", async (t) => {
  const events: string[] = [];
  const ids: CallerId[] = [];
  const client = {
    onServiceAdded(info: ServiceInfo, id: CallerId) {
      events.push(`added ${info.name}`);
      ids.push(id);
    },
    onServiceRemoved(name: string, id: CallerId) {
      events.push(`removed ${name} ${id}`);
    },
  };

  await t.step("the factory is called once and the listener started", async () => {
    const { state, factory } = fakeListener();
    const host = new DiscoveryHost({ listenerFactory: factory });
    await host.startDiscovery(client);
    assertEquals([state.factoryCalls, state.starts, host.started], [1, 1, true]);
    await host.stopDiscovery();
    assertEquals([state.closes, host.started], [1, false]);
  });
  await t.step("a new instance gets an id; an update keeps it", async () => {
    const { state, factory } = fakeListener();
    const host = new DiscoveryHost({ listenerFactory: factory });
    await host.startDiscovery(client);
    ids.length = 0;
    await state.client!.onServiceAdded(service("a"));
    await state.client!.onServiceUpdated!(service("a"), ["port"]);
    await state.client!.onServiceAdded(service("A")); // names compare without case
    assertEquals(ids.length, 3);
    assert(ids[0].equals(ids[1]) && ids[0].equals(ids[2]));
    await host.stopDiscovery();
  });
  await t.step("a published TXT id is used as the caller id", async () => {
    const { state, factory } = fakeListener();
    const host = new DiscoveryHost({ listenerFactory: factory });
    await host.startDiscovery(client);
    const published = CallerId.random();
    ids.length = 0;
    await state.client!.onServiceAdded(service("b", published.toString()));
    assert(ids[0].equals(published));
    await host.stopDiscovery();
  });
  await t.step("removal forwards the name and id, and forgets the id", async () => {
    const { state, factory } = fakeListener();
    const host = new DiscoveryHost({ listenerFactory: factory });
    await host.startDiscovery(client);
    ids.length = 0;
    events.length = 0;
    await state.client!.onServiceAdded(service("c"));
    const info = service("c");
    await state.client!.onServiceRemoved(info.mdnsName, info);
    assertEquals(events, ["added c", `removed c._api._tcp.local ${ids[0]}`]);
    await state.client!.onServiceAdded(service("c"));
    assert(!ids[1].equals(ids[0]), "a returning instance without a TXT id gets a new id");
    await host.stopDiscovery();
  });
  await t.step("a listener that fails to start rejects, and the host can start again", async () => {
    const failing = fakeListener({ failStart: true });
    const host = new DiscoveryHost({ listenerFactory: failing.factory });
    await assertRejects(() => host.startDiscovery(client), Error, "no socket");
    assertEquals([host.started, failing.state.closes], [false, 1]);
    await assertRejects(() => host.startDiscovery(client), Error, "no socket");
  });
  await t.step(
    "a second start is refused; bad clients and configurations are rejected",
    async () => {
      const { factory } = fakeListener();
      const host = new DiscoveryHost({ listenerFactory: factory });
      await host.startDiscovery(client);
      await assertRejects(() => host.startDiscovery(client), Error, "already running");
      await host.stopDiscovery();
      await assertRejects(
        () => host.startDiscovery(null as unknown as typeof client),
        TypeError,
        "'client'",
      );
      assertThrows(() => new DiscoveryHost({}), TypeError, "exactly one");
      assertThrows(
        () => new DiscoveryHost({ serviceType: TYPE, listenerFactory: factory }),
        TypeError,
        "exactly one",
      );
    },
  );
  await t.step("with a service type, it discovers over mDNS", async () => {
    const link = new MemoryLink();
    const publisher = new InstancePublisher(7, TYPE, {
      mdns: link.host("10.0.0.1"),
      instanceName: "real",
    });
    const host = new DiscoveryHost({ serviceType: TYPE, mdns: link.host("10.0.0.2") });
    ids.length = 0;
    await host.startDiscovery(client);
    await link.until(publisher.publish());
    await link.run(500);
    assertEquals(ids.length, 1);
    assert(ids[0].equals(publisher.id));
    await host.stopDiscovery();
    await link.until(publisher.close());
    await link.close();
  });
});
