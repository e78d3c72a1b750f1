import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { CallerId } from "../../rpc/caller_id.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import {
  type DisconnectReason,
  type DiscoveryHostClient,
  ServiceConnector,
  type ServiceInfo,
} from "../../discovery/mod.ts";

class FakeChannel {
  closed = false;
  constructor(readonly target: string) {}
  close(): void {
    this.closed = true;
  }
}

/** A factory whose connects the test settles by hand. */
function factory() {
  const attempts: {
    target: string;
    signal: AbortSignal;
    resolve: (channel: FakeChannel) => void;
    reject: (error: Error) => void;
  }[] = [];
  return {
    attempts,
    connect(addresses: readonly string[], port: number, signal: AbortSignal) {
      return new Promise<FakeChannel>((resolve, reject) => {
        attempts.push({ target: `${addresses[0]}:${port}`, signal, resolve, reject });
      });
    },
  };
}

function source() {
  const state = { client: undefined as DiscoveryHostClient | undefined, stops: 0 };
  return {
    state,
    startDiscovery(client: DiscoveryHostClient) {
      state.client = client;
      return Promise.resolve();
    },
    stopDiscovery() {
      state.stops++;
      return Promise.resolve();
    },
  };
}

function info(port: number, address = "10.0.0.1"): ServiceInfo {
  return {
    name: "s",
    port,
    addresses: [address],
    mdnsName: "s._x._tcp.local",
    txt: {},
    id: undefined,
  };
}

async function settle(): Promise<void> {
  for (let k = 0; k < 10; k++) await Promise.resolve();
}

function setup() {
  const scheduler = new ManualScheduler();
  const f = factory();
  const s = source();
  const log: string[] = [];
  const channels: FakeChannel[] = [];
  const errors: unknown[] = [];
  const connector = new ServiceConnector<FakeChannel>(
    {
      onChannelConnected(_info, _id, channel) {
        log.push(`connected ${channel.target}`);
        channels.push(channel);
      },
      onChannelDisconnected(i, _id, reason: DisconnectReason) {
        log.push(`disconnected ${i.port} ${reason}`);
      },
    },
    f,
    s,
    { scheduler, random: () => 1, onError: (e) => errors.push(e) },
  );
  return { scheduler, f, s, log, channels, errors, connector };
}

Deno.test("ServiceConnector opens one channel per caller id", async (t) => {
  await t.step("an added instance is connected and handed to the client", async () => {
    const h = setup();
    await h.connector.start();
    const id = CallerId.random();
    h.connector.onServiceAdded(info(1), id);
    assertEquals(h.f.attempts.map((a) => a.target), ["10.0.0.1:1"]);
    h.f.attempts[0].resolve(new FakeChannel("10.0.0.1:1"));
    await settle();
    assertEquals(h.log, ["connected 10.0.0.1:1"]);
    assertEquals(h.connector.tracked, [id.toString()]);
  });
  await t.step("20 concurrent events for one instance open exactly one channel", async () => {
    const h = setup();
    await h.connector.start();
    const id = CallerId.random();
    for (let k = 0; k < 20; k++) h.s.state.client!.onServiceAdded(info(1), id);
    h.f.attempts[0].resolve(new FakeChannel("a"));
    await settle();
    for (let k = 0; k < 20; k++) h.s.state.client!.onServiceAdded(info(1), id);
    await settle();
    assertEquals([h.f.attempts.length, h.log.length], [1, 1]);
  });
  await t.step(
    "a failed connect is retried with doubling delays while the instance stays",
    async () => {
      const h = setup();
      await h.connector.start();
      h.connector.onServiceAdded(info(1), CallerId.random());
      for (const expected of [500, 1_000, 2_000]) {
        h.f.attempts.at(-1)!.reject(new Error("refused"));
        await settle();
        assertEquals(h.scheduler.nextIn, expected);
        h.scheduler.advance(expected);
      }
      assertEquals(h.f.attempts.length, 4);
      h.f.attempts[3].resolve(new FakeChannel("late"));
      await settle();
      assertEquals(h.log, ["connected late"]);
      assertEquals(h.errors.length, 3);
    },
  );
  await t.step("the delay stops doubling at maxRetryDelayMs", async () => {
    const h = setup();
    await h.connector.start();
    h.connector.onServiceAdded(info(1), CallerId.random());
    for (let k = 0; k < 12; k++) {
      h.f.attempts.at(-1)!.reject(new Error("refused"));
      await settle();
      h.scheduler.advance(h.scheduler.nextIn!);
    }
    h.f.attempts.at(-1)!.reject(new Error("refused"));
    await settle();
    assertEquals(h.scheduler.nextIn, 30_000);
  });
});

Deno.test("ServiceConnector follows the instance", async (t) => {
  await t.step(
    "removed while connecting: the late channel is closed, nothing reported",
    async () => {
      const h = setup();
      await h.connector.start();
      const id = CallerId.random();
      h.connector.onServiceAdded(info(1), id);
      h.connector.onServiceRemoved("s", id);
      assert(h.f.attempts[0].signal.aborted);
      const late = new FakeChannel("late");
      h.f.attempts[0].resolve(late);
      await settle();
      assertEquals([h.log, late.closed, h.connector.tracked], [[], true, []]);
    },
  );
  await t.step("removed while waiting to retry: no more attempts", async () => {
    const h = setup();
    await h.connector.start();
    const id = CallerId.random();
    h.connector.onServiceAdded(info(1), id);
    h.f.attempts[0].reject(new Error("refused"));
    await settle();
    h.connector.onServiceRemoved("s", id);
    assertEquals(h.scheduler.pending, 0);
  });
  await t.step("removed when connected: the client is told", async () => {
    const h = setup();
    await h.connector.start();
    const id = CallerId.random();
    h.connector.onServiceAdded(info(1), id);
    h.f.attempts[0].resolve(new FakeChannel("c"));
    await settle();
    h.connector.onServiceRemoved("s", id);
    assertEquals(h.log, ["connected c", "disconnected 1 removed"]);
    assert(!h.channels[0].closed, "the channel is the client's to close");
  });
  await t.step("moved to a new port: the old channel is closed and a new one opened", async () => {
    const h = setup();
    await h.connector.start();
    const id = CallerId.random();
    h.connector.onServiceAdded(info(1), id);
    h.f.attempts[0].resolve(new FakeChannel("old"));
    await settle();
    h.connector.onServiceAdded(info(2), id);
    assertEquals(h.f.attempts.map((a) => a.target), ["10.0.0.1:1", "10.0.0.1:2"]);
    h.f.attempts[1].resolve(new FakeChannel("new"));
    await settle();
    assertEquals(h.log, ["connected old", "disconnected 2 moved", "connected new"]);
    assert(h.channels[0].closed);
  });
  await t.step("markClientFailed reconnects at once; an unknown id is ignored", async () => {
    const h = setup();
    await h.connector.start();
    const id = CallerId.random();
    h.connector.onServiceAdded(info(1), id);
    h.f.attempts[0].resolve(new FakeChannel("first"));
    await settle();
    h.connector.markClientFailed(id);
    h.connector.markClientFailed(CallerId.random());
    assertEquals(h.f.attempts.length, 2);
    h.f.attempts[1].resolve(new FakeChannel("second"));
    await settle();
    assertEquals(h.log, ["connected first", "disconnected 1 failed", "connected second"]);
  });
  await t.step("stop drops everything and stops discovery", async () => {
    const h = setup();
    await h.connector.start();
    h.connector.onServiceAdded(info(1), CallerId.random());
    h.f.attempts[0].resolve(new FakeChannel("c"));
    await settle();
    h.connector.onServiceAdded(info(3, "10.0.0.3"), CallerId.random());
    await h.connector.stop();
    assertEquals(h.log, ["connected c", "disconnected 1 stopped"]);
    assertEquals([h.s.state.stops, h.connector.tracked.length, h.scheduler.pending], [1, 0, 0]);
    assert(h.f.attempts[1].signal.aborted);
  });
  await t.step("bad arguments and a second start are rejected", async () => {
    const h = setup();
    assertThrows(
      () => new ServiceConnector(null as never, h.f, h.s),
      TypeError,
      "onChannelConnected",
    );
    assertThrows(
      () => new ServiceConnector({ onChannelConnected() {} }, h.f, h.s, { initialRetryDelayMs: 0 }),
      RangeError,
    );
    await h.connector.start();
    await assertRejects(() => h.connector.start(), Error, "already running");
  });
});
