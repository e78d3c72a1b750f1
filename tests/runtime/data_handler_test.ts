import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { QueueOverflowError } from "../../rpc/_async.ts";
import { CallerId } from "../../rpc/caller_id.ts";
import { queryNtp } from "../../rpc/query_ntp.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import type { SynchronizedClock } from "../../rpc/synchronized_clock.ts";
import { SystemClock } from "../../rpc/system_clock.ts";
import { TimeSyncServer } from "../../rpc/time_sync_server.ts";
import { type ClockLease, DataHandler, type SinkItem } from "../../runtime/_data_handler.ts";
import { createRuntimeConfig, type RuntimeConfigOptions } from "../../runtime/runtime_config.ts";
import {
  CallerRegistrationError,
  type EndpointDataProcessor,
  type RuntimeEvent,
} from "../../runtime/runtime_data_handler.ts";
import { flush, observe } from "../_promises.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** The fake local clock's start: 2023-11-14T22:13:20Z in µs. */
const T0 = 1_700_000_000_000_000;

const A = CallerId.parse("0b5a8f1e-3c2d-4e7f-9a10-6b2c3d4e5f60");
const B = CallerId.parse("11111111-2222-4333-8444-555555555555");
const C = CallerId.parse("66666666-7777-4888-9999-aaaaaaaaaaaa");

/** A lease factory whose clocks are `offset` µs ahead, recording leases and releases. */
function offsetLeases(offset: number) {
  const leased: string[] = [];
  const released: string[] = [];
  function leaseClock(endpoint: string): ClockLease {
    leased.push(endpoint);
    const clock: SynchronizedClock = {
      now: () => T0 + offset,
      sync: (micros) => micros + offset,
      desync: (micros) => micros - offset,
    };
    return {
      clock,
      ready: () => Promise.resolve(offset),
      release: () => {
        released.push(endpoint);
      },
    };
  }
  return { leaseClock, leased, released };
}

interface Setup {
  config?: Omit<RuntimeConfigOptions, "role"> & { role?: RuntimeConfigOptions["role"] };
  leaseClock?: (endpoint: string) => ClockLease;
}

/**
 * A client handler on a ManualScheduler, whose `nowMs` is the scheduler's
 * time and whose local clock is T0 plus that time.
 */
function setup(options: Setup = {}) {
  const config = createRuntimeConfig({ role: "client", ...options.config });
  const scheduler = new ManualScheduler();
  const local = { now: () => T0 + scheduler.now * 1_000 };
  const sunk: SinkItem[] = [];
  const errors: unknown[] = [];
  const handler = new DataHandler({
    config,
    sink: (item) => {
      sunk.push(item);
    },
    onError: (error) => {
      errors.push(error);
    },
    scheduler,
    nowMs: () => scheduler.now,
    local,
    leaseClock: options.leaseClock,
  });
  return { handler, scheduler, local, sunk, errors };
}

/** An event as plain data, the caller id as its string. */
interface PlainEvent {
  value: unknown;
  callerId: string | undefined;
  timestamp: number;
}

function plain(events: readonly RuntimeEvent<unknown>[]): PlainEvent[] {
  return events.map((event) => ({
    value: event.value,
    callerId: event.callerId?.toString(),
    timestamp: event.timestamp,
  }));
}

/** Takes the next batch of a processor's events. */
async function nextBatch(
  iterator: AsyncIterator<RuntimeEvent<unknown>[]>,
): Promise<PlainEvent[] | undefined> {
  const result = await iterator.next();
  return result.done ? undefined : plain(result.value);
}

function reader(processor: EndpointDataProcessor<unknown, unknown>) {
  return processor.events()[Symbol.asyncIterator]();
}

// ---------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------

Deno.test("DataHandler registerCaller addresses", async (t) => {
  await t.step("registers a caller at an endpoint and port", () => {
    const { handler } = setup();
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    assert(processor.callerId.equals(A));
    assertEquals(processor.address, { endpoint: "10.0.0.5", port: 5000 });
    assertEquals(processor.closed, false);
    assertEquals(handler.checkForCallerId("10.0.0.5", 5000)?.toString(), A.toString());
    assertEquals(handler.callers.map(String), [A.toString()]);
  });

  await t.step('registers a caller at a grpcio peer "ipv4:10.0.0.5:5000"', () => {
    const { handler } = setup();
    const processor = handler.registerCaller(A, { peer: "ipv4:10.0.0.5:5000" });
    assertEquals(processor.address, { endpoint: "10.0.0.5", port: 5000 });
    assertEquals(handler.checkForCallerId("10.0.0.5", 5000)?.toString(), A.toString());
  });

  await t.step('registers a caller at a grpc-js peer "10.0.0.5:5000"', () => {
    const { handler } = setup();
    const processor = handler.registerCaller(A, { peer: "10.0.0.5:5000" });
    assertEquals(processor.address, { endpoint: "10.0.0.5", port: 5000 });
  });

  await t.step('registers a caller at an IPv6 peer "ipv6:[::1]:5000"', () => {
    const { handler } = setup();
    const processor = handler.registerCaller(A, { peer: "ipv6:[::1]:5000" });
    assertEquals(processor.address, { endpoint: "::1", port: 5000 });
  });

  await t.step("throws TypeError for an address with both endpoint and peer", () => {
    const { handler } = setup();
    const address = { endpoint: "10.0.0.5", port: 5000, peer: "10.0.0.5:5000" };
    assertThrows(() => handler.registerCaller(A, address), TypeError, "not both or neither");
    assertEquals(handler.callers, []);
  });

  await t.step("throws TypeError for an address with neither endpoint nor peer", () => {
    const { handler } = setup();
    // @ts-expect-error: an empty address is not a CallerAddress
    assertThrows(() => handler.registerCaller(A, {}), TypeError, "not both or neither");
  });

  await t.step("throws TypeError for an address that is not an object", () => {
    const { handler } = setup();
    // @ts-expect-error: null is not a CallerAddress
    assertThrows(() => handler.registerCaller(A, null), TypeError, "'address'");
  });

  await t.step("throws TypeError for an empty endpoint", () => {
    const { handler } = setup();
    assertThrows(
      () => handler.registerCaller(A, { endpoint: "", port: 5000 }),
      TypeError,
      "'endpoint' must be a non-empty string",
    );
  });

  await t.step("throws TypeError for port 70000", () => {
    const { handler } = setup();
    assertThrows(
      () => handler.registerCaller(A, { endpoint: "10.0.0.5", port: 70_000 }),
      TypeError,
      "'port' must be an integer in 0..65535: current value is 70000",
    );
  });

  await t.step("throws TypeError for a peer that is not a gRPC peer", () => {
    const { handler } = setup();
    for (const peer of ["not a peer", "ipv4:300.0.0.1:5000", "unix:/tmp/socket"]) {
      assertThrows(
        () => handler.registerCaller(A, { peer }),
        TypeError,
        "'peer' must be a gRPC peer with an address and a port",
      );
    }
    assertEquals(handler.callers, []);
  });

  await t.step("throws TypeError for a caller id that is not a CallerId", () => {
    const { handler } = setup();
    assertThrows(
      // @ts-expect-error: a string is not a CallerId
      () => handler.registerCaller(A.toString(), { endpoint: "10.0.0.5", port: 5000 }),
      TypeError,
      "'callerId' must be a CallerId",
    );
    assertEquals(handler.checkForCallerId("10.0.0.5", 5000), undefined);
  });
});

Deno.test("DataHandler registerCaller identity", async (t) => {
  await t.step(
    "a second id at a held address throws CallerRegistrationError naming the holder",
    () => {
      const { handler } = setup();
      handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
      const error = assertThrows(
        () => handler.registerCaller(B, { endpoint: "10.0.0.5", port: 5000 }),
        CallerRegistrationError,
      );
      assert(error.holder.equals(A));
      assertEquals(error.address, { endpoint: "10.0.0.5", port: 5000 });
      assertEquals(handler.callers.map(String), [A.toString()]);
    },
  );

  await t.step("a peer string and an endpoint/port naming the same address conflict", () => {
    const { handler } = setup();
    handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    const error = assertThrows(
      () => handler.registerCaller(B, { peer: "ipv4:10.0.0.5:5000" }),
      CallerRegistrationError,
    );
    assert(error.holder.equals(A));
  });

  await t.step("the same id registered again returns the same processor", () => {
    const { handler } = setup();
    const first = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    const again = handler.registerCaller(CallerId.parse(A.toString()), {
      endpoint: "10.0.0.5",
      port: 5000,
    });
    assert(first === again);
    assertEquals(handler.callers.length, 1);
  });

  await t.step("the same id at a new address moves its processor there", () => {
    const { handler } = setup();
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    const moved = handler.registerCaller(A, { endpoint: "10.0.0.6", port: 6000 });
    assert(moved === processor);
    assertEquals(processor.address, { endpoint: "10.0.0.6", port: 6000 });
    assertEquals(handler.checkForCallerId("10.0.0.5", 5000), undefined);
    assertEquals(handler.checkForCallerId("10.0.0.6", 6000)?.toString(), A.toString());
  });

  await t.step("the address a caller moved away from is free for another caller", () => {
    const { handler } = setup();
    handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    handler.registerCaller(A, { endpoint: "10.0.0.6", port: 6000 });
    const other = handler.registerCaller(B, { endpoint: "10.0.0.5", port: 5000 });
    assert(other.callerId.equals(B));
    assertEquals(handler.checkForCallerId("10.0.0.5", 5000)?.toString(), B.toString());
  });

  await t.step("moving to a new endpoint releases the old clock and leases one there", () => {
    const leases = offsetLeases(0);
    const { handler } = setup({ leaseClock: leases.leaseClock });
    handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5001 });
    assertEquals(leases.leased, ["10.0.0.5"]);
    assertEquals(leases.released, []);
    handler.registerCaller(A, { endpoint: "10.0.0.6", port: 5001 });
    assertEquals(leases.leased, ["10.0.0.5", "10.0.0.6"]);
    assertEquals(leases.released, ["10.0.0.5"]);
  });

  await t.step(
    "a move whose clock cannot be leased throws and leaves the caller where it was",
    () => {
      const leases = offsetLeases(0);
      const { handler } = setup({
        leaseClock: (endpoint) => {
          if (endpoint === "10.0.0.9") throw new TypeError("no time server there");
          return leases.leaseClock(endpoint);
        },
      });
      const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
      assertThrows(
        () => handler.registerCaller(A, { endpoint: "10.0.0.9", port: 5000 }),
        TypeError,
        "no time server there",
      );
      assertEquals(processor.address, { endpoint: "10.0.0.5", port: 5000 });
      assertEquals(handler.checkForCallerId("10.0.0.5", 5000)?.toString(), A.toString());
      assertEquals(handler.checkForCallerId("10.0.0.9", 5000), undefined);
      assertEquals(leases.released, []);
    },
  );

  await t.step("checkForCallerId gives undefined for an address nobody holds", () => {
    const { handler } = setup();
    handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    assertEquals(handler.checkForCallerId("10.0.0.5", 5001), undefined);
    assertEquals(handler.checkForCallerId("10.0.0.6", 5000), undefined);
  });
});

/** A lease factory (clocks at offset 0) recording "endpoint@timeSyncPort" per lease and release. */
function portLeases() {
  const leased: string[] = [];
  const released: string[] = [];
  const inner = offsetLeases(0).leaseClock;
  function leaseClock(endpoint: string, timeSyncPort?: number): ClockLease {
    const name = `${endpoint}@${timeSyncPort ?? "configured"}`;
    leased.push(name);
    return {
      ...inner(endpoint),
      release: () => {
        released.push(name);
      },
    };
  }
  return { leaseClock, leased, released };
}

Deno.test("DataHandler registerCaller timeSyncPort", async (t) => {
  await t.step("a caller's timeSyncPort is in its address and passed to the lease", () => {
    const leases = portLeases();
    const { handler } = setup({ leaseClock: leases.leaseClock });
    const processor = handler.registerCaller(A, {
      endpoint: "127.0.0.1",
      port: 5000,
      timeSyncPort: 12_345,
    });
    assertEquals(processor.address, { endpoint: "127.0.0.1", port: 5000, timeSyncPort: 12_345 });
    assertEquals(leases.leased, ["127.0.0.1@12345"]);
    assertEquals(handler.checkForCallerId("127.0.0.1", 5000)?.toString(), A.toString());
  });

  await t.step("a caller without timeSyncPort has none in its address", () => {
    const leases = portLeases();
    const { handler } = setup({ leaseClock: leases.leaseClock });
    const processor = handler.registerCaller(A, { endpoint: "127.0.0.1", port: 5000 });
    assertEquals(processor.address, { endpoint: "127.0.0.1", port: 5000 });
    assert(!("timeSyncPort" in processor.address));
    assertEquals(leases.leased, ["127.0.0.1@configured"]);
  });

  await t.step("the timeSyncPort does not make a held address free for another caller", () => {
    const { handler } = setup();
    handler.registerCaller(A, { endpoint: "127.0.0.1", port: 5000, timeSyncPort: 1_230 });
    const error = assertThrows(
      () => handler.registerCaller(B, { endpoint: "127.0.0.1", port: 5000, timeSyncPort: 1_231 }),
      CallerRegistrationError,
    );
    assert(error.holder.equals(A));
    assertEquals(error.address, { endpoint: "127.0.0.1", port: 5000 });
  });

  for (const value of [0, 70_000, 1.5, "80", -1, Number.NaN]) {
    const shown = typeof value === "string" ? JSON.stringify(value) : String(value);
    await t.step(`throws TypeError for timeSyncPort ${shown} and registers nothing`, () => {
      const leases = portLeases();
      const { handler } = setup({ leaseClock: leases.leaseClock });
      const error = assertThrows(
        () =>
          handler.registerCaller(A, {
            endpoint: "127.0.0.1",
            port: 5000,
            timeSyncPort: value as number,
          }),
        TypeError,
      );
      assertEquals(
        error.message,
        `Cannot register the caller as 'timeSyncPort' must be an integer in 1..65535: current value is ${shown}`,
      );
      assertEquals(handler.callers, []);
      assertEquals(handler.checkForCallerId("127.0.0.1", 5000), undefined);
      assertEquals(leases.leased, []);
    });
  }

  await t.step(
    "throws TypeError for a timeSyncPort given with a peer, and registers nothing",
    () => {
      const leases = portLeases();
      const { handler } = setup({ leaseClock: leases.leaseClock });
      const address = { peer: "ipv4:127.0.0.1:5000", timeSyncPort: 12_345 };
      assertThrows(
        () => handler.registerCaller(A, address),
        TypeError,
        "'timeSyncPort' must come with endpoint and port, not with peer: current value is 12345",
      );
      assertEquals(handler.callers, []);
      assertEquals(leases.leased, []);
    },
  );

  await t.step(
    "a bad timeSyncPort when registering again leaves the caller where it was",
    () => {
      const leases = portLeases();
      const { handler } = setup({ leaseClock: leases.leaseClock });
      const processor = handler.registerCaller(A, {
        endpoint: "127.0.0.1",
        port: 5000,
        timeSyncPort: 1_230,
      });
      assertThrows(
        () => handler.registerCaller(A, { endpoint: "127.0.0.1", port: 5001, timeSyncPort: 0 }),
        TypeError,
        "'timeSyncPort' must be an integer in 1..65535: current value is 0",
      );
      assertEquals(processor.address, { endpoint: "127.0.0.1", port: 5000, timeSyncPort: 1_230 });
      assertEquals(handler.checkForCallerId("127.0.0.1", 5000)?.toString(), A.toString());
      assertEquals(leases.leased, ["127.0.0.1@1230"]);
      assertEquals(leases.released, []);
    },
  );

  await t.step(
    "registering again with another timeSyncPort leases a clock there and releases the old",
    () => {
      const leases = portLeases();
      const { handler } = setup({ leaseClock: leases.leaseClock });
      const processor = handler.registerCaller(A, {
        endpoint: "127.0.0.1",
        port: 5000,
        timeSyncPort: 1_230,
      });
      const again = handler.registerCaller(A, {
        endpoint: "127.0.0.1",
        port: 5000,
        timeSyncPort: 1_231,
      });
      assert(again === processor);
      assertEquals(processor.address, { endpoint: "127.0.0.1", port: 5000, timeSyncPort: 1_231 });
      assertEquals(leases.leased, ["127.0.0.1@1230", "127.0.0.1@1231"]);
      assertEquals(leases.released, ["127.0.0.1@1230"]);
      handler.registerCaller(A, { endpoint: "127.0.0.1", port: 5000 });
      assertEquals(processor.address, { endpoint: "127.0.0.1", port: 5000 });
      assertEquals(leases.leased, ["127.0.0.1@1230", "127.0.0.1@1231", "127.0.0.1@configured"]);
      assertEquals(leases.released, ["127.0.0.1@1230", "127.0.0.1@1231"]);
    },
  );

  await t.step("registering again with the same timeSyncPort keeps the lease", () => {
    const leases = portLeases();
    const { handler } = setup({ leaseClock: leases.leaseClock });
    handler.registerCaller(A, { endpoint: "127.0.0.1", port: 5000, timeSyncPort: 1_230 });
    const processor = handler.registerCaller(A, {
      endpoint: "127.0.0.1",
      port: 5001,
      timeSyncPort: 1_230,
    });
    assertEquals(processor.address, { endpoint: "127.0.0.1", port: 5001, timeSyncPort: 1_230 });
    assertEquals(leases.leased, ["127.0.0.1@1230"]);
    assertEquals(leases.released, []);
  });

  await t.step("a server runtime's caller with a timeSyncPort gets an identity clock", async () => {
    const { handler } = setup({ config: { role: "server" } });
    const processor = handler.registerCaller(A, {
      endpoint: "127.0.0.1",
      port: 5000,
      timeSyncPort: 1_230,
    });
    assertEquals(processor.address, { endpoint: "127.0.0.1", port: 5000, timeSyncPort: 1_230 });
    assertEquals(processor.clock.sync(T0 + 3), T0 + 3);
    assertEquals(processor.desynchronize(T0 + 3), T0 + 3);
    assertEquals(await processor.clockReady(), 0);
  });
});

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

Deno.test("DataHandler event routing", async (t) => {
  await t.step(
    "events for a registered caller arrive through its processor as one batch",
    async () => {
      const { handler } = setup();
      const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
      const events = reader(processor);
      await handler.deliver([
        { value: "start", callerId: A.toString(), timestamp: T0 + 1 },
        { value: "stop", callerId: A.toString(), timestamp: T0 + 2 },
      ]);
      assertEquals(await nextBatch(events), [
        { value: "start", callerId: A.toString(), timestamp: T0 + 1 },
        { value: "stop", callerId: A.toString(), timestamp: T0 + 2 },
      ]);
    },
  );

  await t.step("an event's callerId is the registered CallerId", async () => {
    const { handler } = setup();
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    await handler.deliver([{ value: 1, callerId: A.toString(), timestamp: T0 }]);
    const result = await events.next();
    assert(!result.done);
    const callerId = result.value[0].callerId;
    assert(callerId instanceof CallerId && callerId.equals(A));
  });

  await t.step(
    "an event without a timestamp is stamped with the local time it arrived",
    async () => {
      const { handler, scheduler } = setup();
      const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
      scheduler.advance(7);
      await handler.deliver([{ value: "now", callerId: A.toString() }]);
      assertEquals(await nextBatch(events), [
        { value: "now", callerId: A.toString(), timestamp: T0 + 7_000 },
      ]);
    },
  );

  await t.step(
    "an event whose caller id is in upper case reaches the registered caller",
    async () => {
      const { handler } = setup();
      const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
      await handler.deliver([{
        value: "loud",
        callerId: A.toString().toUpperCase(),
        timestamp: T0,
      }]);
      assertEquals(await nextBatch(events), [{
        value: "loud",
        callerId: A.toString(),
        timestamp: T0,
      }]);
      assertEquals(handler.stats.pendingUnknownCaller, 0);
    },
  );

  await t.step("events for one caller do not reach another", async () => {
    const { handler } = setup();
    const a = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    const b = reader(handler.registerCaller(B, { endpoint: "10.0.0.6", port: 5000 }));
    await handler.deliver([
      { value: "for A", callerId: A.toString(), timestamp: T0 },
      { value: "for B", callerId: B.toString(), timestamp: T0 },
    ]);
    assertEquals(await nextBatch(a), [{ value: "for A", callerId: A.toString(), timestamp: T0 }]);
    assertEquals(await nextBatch(b), [{ value: "for B", callerId: B.toString(), timestamp: T0 }]);
  });

  await t.step("a broadcast reaches every registered caller with callerId undefined", async () => {
    const { handler } = setup();
    const a = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    const b = reader(handler.registerCaller(B, { endpoint: "10.0.0.6", port: 5000 }));
    await handler.deliver([{ value: "all", timestamp: T0 + 5 }]);
    const expected = [{ value: "all", callerId: undefined, timestamp: T0 + 5 }];
    assertEquals(await nextBatch(a), expected);
    assertEquals(await nextBatch(b), expected);
    assertEquals(handler.stats.received, 1);
    assertEquals(handler.stats.delivered, 2);
  });

  await t.step("a broadcast with no caller registered is dropped and counted", async () => {
    const { handler } = setup();
    await handler.deliver([{ value: "nobody", timestamp: T0 }]);
    assertEquals(handler.stats, {
      received: 1,
      delivered: 0,
      droppedOverflow: 0,
      droppedNoCaller: 1,
      droppedUnknownCaller: 0,
      pendingUnknownCaller: 0,
    });
  });

  await t.step(
    "events over a caller's eventCapacity are dropped oldest first and counted",
    async () => {
      const { handler } = setup({ config: { eventCapacity: 2, eventOverflow: "drop-oldest" } });
      const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
      await handler.deliver(
        [1, 2, 3].map((value) => ({ value, callerId: A.toString(), timestamp: T0 })),
      );
      assertEquals((await nextBatch(events))?.map((event) => event.value), [2, 3]);
      assertEquals(handler.stats.droppedOverflow, 1);
      assertEquals(handler.stats.delivered, 2);
    },
  );

  await t.step('a full queue under "error" sends QueueOverflowError to onError', async () => {
    const { handler, errors } = setup({ config: { eventCapacity: 1, eventOverflow: "error" } });
    handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    await handler.deliver(
      [1, 2].map((value) => ({ value, callerId: A.toString(), timestamp: T0 })),
    );
    assertEquals(errors.length, 1);
    assert(errors[0] instanceof QueueOverflowError);
  });

  await t.step('deliver() under "block" resolves once the reader made room', async () => {
    const { handler } = setup({ config: { eventCapacity: 1, eventOverflow: "block" } });
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    const delivered = observe(
      handler.deliver([1, 2].map((value) => ({ value, callerId: A.toString(), timestamp: T0 }))),
    );
    await flush();
    assertEquals(delivered.status, "pending");
    assertEquals((await nextBatch(events))?.map((event) => event.value), [1]);
    await flush();
    assertEquals(delivered.status, "fulfilled");
    assertEquals((await nextBatch(events))?.map((event) => event.value), [2]);
  });

  await t.step("a second concurrent reader of the same processor throws TypeError", async () => {
    const { handler } = setup();
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    const first = reader(processor);
    const pending = first.next();
    await assertRejects(() => reader(processor).next(), TypeError, "one reader at a time");
    await handler.close();
    assertEquals((await pending).done, true);
  });
});

Deno.test("DataHandler events for callers not registered yet", async (t) => {
  await t.step("are kept and delivered when the caller registers, before later ones", async () => {
    const { handler } = setup();
    await handler.deliver([
      { value: "early 1", callerId: A.toString(), timestamp: T0 + 1 },
      { value: "early 2", callerId: A.toString(), timestamp: T0 + 2 },
    ]);
    assertEquals(handler.stats.pendingUnknownCaller, 2);
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    assertEquals(handler.stats.pendingUnknownCaller, 0);
    await handler.deliver([{ value: "later", callerId: A.toString(), timestamp: T0 + 3 }]);
    assertEquals(await nextBatch(events), [
      { value: "early 1", callerId: A.toString(), timestamp: T0 + 1 },
      { value: "early 2", callerId: A.toString(), timestamp: T0 + 2 },
      { value: "later", callerId: A.toString(), timestamp: T0 + 3 },
    ]);
    assertEquals(handler.stats.droppedUnknownCaller, 0);
  });

  await t.step("are kept for the caller whatever the case of their caller id", async () => {
    const { handler } = setup();
    await handler.deliver([{ value: "loud", callerId: A.toString().toUpperCase(), timestamp: T0 }]);
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    assertEquals(await nextBatch(events), [{
      value: "loud",
      callerId: A.toString(),
      timestamp: T0,
    }]);
    assertEquals(handler.stats.pendingUnknownCaller, 0);
  });

  await t.step(
    "are delivered at registration ahead of later events still being routed",
    async () => {
      const { handler } = setup({ config: { eventCapacity: 1, eventOverflow: "block" } });
      const b = reader(handler.registerCaller(B, { endpoint: "10.0.0.6", port: 5000 }));
      await handler.deliver([{ value: "A1", callerId: A.toString(), timestamp: T0 }]);
      const routed = observe(handler.deliver([
        { value: "B1", callerId: B.toString(), timestamp: T0 },
        { value: "B2", callerId: B.toString(), timestamp: T0 },
        { value: "A2", callerId: A.toString(), timestamp: T0 },
      ]));
      await flush();
      assertEquals(routed.status, "pending"); // B2 waits for room in B's queue
      const a = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
      assertEquals((await nextBatch(b))?.map((event) => event.value), ["B1"]);
      assertEquals((await nextBatch(a))?.map((event) => event.value), ["A1"]);
      assertEquals((await nextBatch(a))?.map((event) => event.value), ["A2"]);
      await flush();
      assertEquals(routed.status, "fulfilled");
    },
  );

  await t.step("are all handed out in the first batch after registration", async () => {
    const { handler } = setup();
    await handler.deliver(
      [1, 2, 3].map((value) => ({ value, callerId: A.toString(), timestamp: T0 })),
    );
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    assertEquals((await nextBatch(events))?.map((event) => event.value), [1, 2, 3]);
  });

  await t.step("stay pending for other callers when one caller registers", async () => {
    const { handler } = setup();
    await handler.deliver([
      { value: "for A", callerId: A.toString(), timestamp: T0 },
      { value: "for B", callerId: B.toString(), timestamp: T0 },
    ]);
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    assertEquals(await nextBatch(events), [{
      value: "for A",
      callerId: A.toString(),
      timestamp: T0,
    }]);
    assertEquals(handler.stats.pendingUnknownCaller, 1);
  });

  await t.step("are dropped and counted once older than unknownCallerEventTtlMs", async () => {
    const { handler, scheduler } = setup({ config: { unknownCallerEventTtlMs: 1_000 } });
    await handler.deliver([{ value: "stale", callerId: A.toString(), timestamp: T0 }]);
    scheduler.advance(1_001);
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    assertEquals(handler.stats.droppedUnknownCaller, 1);
    assertEquals(handler.stats.pendingUnknownCaller, 0);
    await handler.deliver([{ value: "fresh", callerId: A.toString(), timestamp: T0 + 1 }]);
    assertEquals(await nextBatch(events), [
      { value: "fresh", callerId: A.toString(), timestamp: T0 + 1 },
    ]);
  });

  await t.step("are still delivered exactly unknownCallerEventTtlMs after they came", async () => {
    const { handler, scheduler } = setup({ config: { unknownCallerEventTtlMs: 1_000 } });
    await handler.deliver([{ value: "just in time", callerId: A.toString(), timestamp: T0 }]);
    scheduler.advance(1_000);
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    assertEquals(await nextBatch(events), [
      { value: "just in time", callerId: A.toString(), timestamp: T0 },
    ]);
    assertEquals(handler.stats.droppedUnknownCaller, 0);
  });

  await t.step("expired ones are counted when the next unknown-caller event arrives", async () => {
    const { handler, scheduler } = setup({ config: { unknownCallerEventTtlMs: 1_000 } });
    await handler.deliver([
      { value: 1, callerId: A.toString(), timestamp: T0 },
      { value: 2, callerId: B.toString(), timestamp: T0 },
    ]);
    scheduler.advance(1_001);
    await handler.deliver([{ value: 3, callerId: C.toString(), timestamp: T0 }]);
    assertEquals(handler.stats.droppedUnknownCaller, 2);
    assertEquals(handler.stats.pendingUnknownCaller, 1);
  });

  await t.step("are bounded by eventCapacity, the oldest dropped and counted", async () => {
    const { handler } = setup({ config: { eventCapacity: 3 } });
    await handler.deliver(
      [1, 2, 3, 4, 5].map((value) => ({ value, callerId: A.toString(), timestamp: T0 })),
    );
    assertEquals(handler.stats.droppedUnknownCaller, 2);
    assertEquals(handler.stats.pendingUnknownCaller, 3);
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    assertEquals((await nextBatch(events))?.map((event) => event.value), [3, 4, 5]);
    assertEquals(handler.stats.droppedUnknownCaller, 2);
  });

  await t.step("an event whose caller id is not a UUID goes to onError as TypeError", async () => {
    const { handler, errors } = setup();
    await handler.deliver([{ value: "lost", callerId: "not-a-uuid", timestamp: T0 }]);
    assertEquals(errors.length, 1);
    assert(errors[0] instanceof TypeError);
    assert(errors[0].message.includes('"not-a-uuid"'));
    assertEquals(handler.stats.droppedUnknownCaller, 1);
    assertEquals(handler.stats.pendingUnknownCaller, 0);
    assertEquals(handler.stats.received, 1);
  });
});

// ---------------------------------------------------------------------------
// Clocks and data
// ---------------------------------------------------------------------------

Deno.test("DataHandler time domains", async (t) => {
  await t.step("event timestamps are converted with the caller clock's sync", async () => {
    const { handler } = setup({ leaseClock: offsetLeases(1_000).leaseClock });
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    await handler.deliver([{ value: "e", callerId: A.toString(), timestamp: T0 }]);
    assertEquals(await nextBatch(events), [
      { value: "e", callerId: A.toString(), timestamp: T0 + 1_000 },
    ]);
  });

  await t.step('processData with domain "synchronized" stores the desynchronised time', () => {
    const { handler, sunk } = setup({ leaseClock: offsetLeases(1_000).leaseClock });
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    processor.processData("reading", T0 + 5_000, { domain: "synchronized" });
    assertEquals(sunk, [{ value: "reading", timestamp: T0 + 4_000, callerId: A.toString() }]);
  });

  await t.step("processData stores a local timestamp unchanged by default", () => {
    const { handler, sunk } = setup({ leaseClock: offsetLeases(1_000).leaseClock });
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    processor.processData("a", T0 + 5_000);
    processor.processData("b", T0 + 6_000, { domain: "local" });
    assertEquals(sunk, [
      { value: "a", timestamp: T0 + 5_000, callerId: A.toString() },
      { value: "b", timestamp: T0 + 6_000, callerId: A.toString() },
    ]);
  });

  await t.step("desynchronize converts through the caller clock's desync", () => {
    const { handler } = setup({ leaseClock: offsetLeases(1_000).leaseClock });
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    assertEquals(processor.desynchronize(T0), T0 - 1_000);
    assertEquals(processor.clock.sync(T0), T0 + 1_000);
  });

  await t.step("clockReady resolves with the lease's offset", async () => {
    const { handler } = setup({ leaseClock: offsetLeases(1_000).leaseClock });
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    assertEquals(await processor.clockReady(), 1_000);
  });

  await t.step("processData with a non-integer timestamp throws TypeError", () => {
    const { handler, sunk } = setup();
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    for (const timestamp of [1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1]) {
      assertThrows(
        () => processor.processData("x", timestamp),
        TypeError,
        "'timestamp' must be a safe integer",
      );
    }
    assertEquals(sunk, []);
  });

  await t.step("processData with an unknown domain throws TypeError", () => {
    const { handler, sunk } = setup();
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    assertThrows(
      // @ts-expect-error: "utc" is not a domain
      () => processor.processData("x", T0, { domain: "utc" }),
      TypeError,
      `'domain' must be "local" or "synchronized"`,
    );
    assertEquals(sunk, []);
  });

  await t.step("processData returns the sink's promise for flow control", async () => {
    const config = createRuntimeConfig({ role: "client" });
    let release!: () => void;
    const handler = new DataHandler({
      config,
      sink: () => new Promise<void>((resolve) => release = resolve),
      onError: () => {},
      scheduler: new ManualScheduler(),
      nowMs: () => 0,
      local: { now: () => T0 },
    });
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    const result = processor.processData("x", T0);
    assert(result instanceof Promise);
    const observed = observe(result);
    await flush();
    assertEquals(observed.status, "pending");
    release();
    await flush();
    assertEquals(observed.status, "fulfilled");
    await handler.close();
  });
});

Deno.test("DataHandler default clock lease", async (t) => {
  await t.step("a server runtime's callers get an identity clock, ready at offset 0", async () => {
    const { handler } = setup({ config: { role: "server" } });
    assertEquals(handler.role, "server");
    assertEquals(handler.timeServerPort, undefined);
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    assertEquals(processor.clock.sync(T0 + 3), T0 + 3);
    assertEquals(processor.clock.desync(T0 + 3), T0 + 3);
    assertEquals(processor.clock.now(), T0);
    assertEquals(await processor.clockReady(), 0);
  });

  await t.step(
    "a client runtime without timeSyncPort gets an identity clock, ready at 0",
    async () => {
      const { handler } = setup({ config: { role: "client", timeSyncPort: null } });
      const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
      assertEquals(processor.desynchronize(T0 + 9), T0 + 9);
      assertEquals(processor.clock.sync(T0 + 9), T0 + 9);
      assertEquals(await processor.clockReady(), 0);
    },
  );
});

// ---------------------------------------------------------------------------
// Deregistration and closing
// ---------------------------------------------------------------------------

Deno.test("DataHandler unregisterCaller", async (t) => {
  await t.step("returns true for a registered caller, then false", () => {
    const { handler } = setup();
    handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    assertEquals(handler.unregisterCaller(A), true);
    assertEquals(handler.unregisterCaller(A), false);
    assertEquals(handler.callers, []);
    assertEquals(handler.checkForCallerId("10.0.0.5", 5000), undefined);
  });

  await t.step("returns false for a value that is not a CallerId", () => {
    const { handler } = setup();
    handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    // @ts-expect-error: a string is not a CallerId
    assertEquals(handler.unregisterCaller(A.toString()), false);
    assertEquals(handler.callers.length, 1);
  });

  await t.step("processor.deregister() unregisters its caller", () => {
    const { handler } = setup();
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    assertEquals(processor.deregister(), true);
    assertEquals(processor.deregister(), false);
    assertEquals(handler.callers, []);
  });

  await t.step("closes the processor, which then refuses data with TypeError", () => {
    const { handler, sunk } = setup();
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    handler.unregisterCaller(A);
    assertEquals(processor.closed, true);
    assertThrows(() => processor.processData("late", T0), TypeError, "must be registered");
    assertEquals(sunk, []);
  });

  await t.step("ends the processor's event iteration after the queued events", async () => {
    const { handler } = setup();
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    await handler.deliver([{ value: "last", callerId: A.toString(), timestamp: T0 }]);
    handler.unregisterCaller(A);
    assertEquals(await nextBatch(events), [{
      value: "last",
      callerId: A.toString(),
      timestamp: T0,
    }]);
    assertEquals(await nextBatch(events), undefined);
    assertEquals(handler.stats.delivered, 1);
  });

  await t.step("releases the caller's clock exactly once", async () => {
    const leases = offsetLeases(0);
    const { handler } = setup({ leaseClock: leases.leaseClock });
    handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    handler.unregisterCaller(A);
    handler.unregisterCaller(A);
    await handler.close();
    assertEquals(leases.leased, ["10.0.0.5"]);
    assertEquals(leases.released, ["10.0.0.5"]);
  });

  await t.step(
    "a caller registered again after unregistering gets a new open processor",
    async () => {
      const { handler } = setup();
      const old = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
      handler.unregisterCaller(A);
      const fresh = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
      assert(fresh !== old);
      assertEquals(fresh.closed, false);
      const events = reader(fresh);
      await handler.deliver([{ value: "again", callerId: A.toString(), timestamp: T0 }]);
      assertEquals(await nextBatch(events), [{
        value: "again",
        callerId: A.toString(),
        timestamp: T0,
      }]);
    },
  );
});

Deno.test("DataHandler close", async (t) => {
  await t.step("ends every caller's event iteration after the queued events", async () => {
    const { handler } = setup();
    const a = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    const b = reader(handler.registerCaller(B, { endpoint: "10.0.0.6", port: 5000 }));
    await handler.deliver([{ value: "queued", callerId: A.toString(), timestamp: T0 }]);
    const waiting = observe(b.next());
    await flush();
    assertEquals(waiting.status, "pending");
    await handler.close();
    assertEquals(await nextBatch(a), [{ value: "queued", callerId: A.toString(), timestamp: T0 }]);
    assertEquals(await nextBatch(a), undefined);
    await flush();
    assertEquals(waiting.status, "fulfilled");
    assertEquals(waiting.value?.done, true);
  });

  await t.step("marks the processors closed, so they refuse data", async () => {
    const { handler } = setup();
    const processor = handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    await handler.close();
    assertEquals(processor.closed, true);
    assertThrows(() => processor.processData("late", T0), TypeError, "must be registered");
  });

  await t.step("makes registerCaller throw TypeError", async () => {
    const { handler } = setup();
    await handler.close();
    assertThrows(
      () => handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }),
      TypeError,
      "must be running",
    );
  });

  await t.step("counts pending unknown-caller events as dropped", async () => {
    const { handler } = setup();
    await handler.deliver([
      { value: 1, callerId: A.toString(), timestamp: T0 },
      { value: 2, callerId: B.toString(), timestamp: T0 },
    ]);
    await handler.close();
    assertEquals(handler.stats.droppedUnknownCaller, 2);
    assertEquals(handler.stats.pendingUnknownCaller, 0);
  });

  await t.step("counts events delivered after it in droppedNoCaller", async () => {
    const { handler } = setup();
    handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    await handler.close();
    await handler.deliver([
      { value: 1, callerId: A.toString(), timestamp: T0 },
      { value: 2, timestamp: T0 },
    ]);
    assertEquals(handler.stats.droppedNoCaller, 2);
    assertEquals(handler.stats.received, 2);
    assertEquals(handler.stats.delivered, 0);
  });

  await t.step("releases each caller's clock once, and is idempotent", async () => {
    const leases = offsetLeases(0);
    const { handler } = setup({ leaseClock: leases.leaseClock });
    handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 });
    handler.registerCaller(B, { endpoint: "10.0.0.6", port: 5000 });
    await handler.close();
    await handler.close();
    assertEquals(leases.released, ["10.0.0.5", "10.0.0.6"]);
  });
});

// ---------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------

Deno.test("DataHandler event rate limit", async (t) => {
  await t.step("two batches for a caller come at least minEventIntervalMs apart", async () => {
    const { handler, scheduler } = setup({ config: { minEventIntervalMs: 100 } });
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    await handler.deliver([{ value: 1, callerId: A.toString(), timestamp: T0 }]);
    assertEquals((await nextBatch(events))?.map((event) => event.value), [1]);
    await handler.deliver([{ value: 2, callerId: A.toString(), timestamp: T0 }]);
    const second = observe(events.next());
    await scheduler.whenPending();
    scheduler.advance(99);
    await flush();
    assertEquals(second.status, "pending");
    scheduler.advance(1);
    await flush();
    assertEquals(second.status, "fulfilled");
    assertEquals(plain(second.value?.value as RuntimeEvent<unknown>[]), [
      { value: 2, callerId: A.toString(), timestamp: T0 },
    ]);
    assertEquals(scheduler.now, 100);
  });

  await t.step("close() during the wait ends the wait at once", async () => {
    const { handler, scheduler } = setup({ config: { minEventIntervalMs: 100 } });
    const events = reader(handler.registerCaller(A, { endpoint: "10.0.0.5", port: 5000 }));
    await handler.deliver([{ value: 1, callerId: A.toString(), timestamp: T0 }]);
    await nextBatch(events);
    await handler.deliver([{ value: 2, callerId: A.toString(), timestamp: T0 }]);
    const second = observe(events.next());
    await scheduler.whenPending();
    await handler.close();
    await flush();
    assertEquals(second.status, "fulfilled");
    assertEquals(await nextBatch(events), undefined);
    assertEquals(scheduler.now, 0);
  });
});

// ---------------------------------------------------------------------------
// Network time sync (loopback UDP)
// ---------------------------------------------------------------------------

Deno.test("DataHandler time server of a server runtime", async (t) => {
  await t.step("serves time on its port and releases the port on close()", async () => {
    const handler = new DataHandler({
      config: createRuntimeConfig({
        role: "server",
        timeSyncPort: 0,
        timeSyncHostname: "127.0.0.1",
      }),
      sink: () => {},
      onError: () => {},
    });
    const port = handler.timeServerPort;
    assert(typeof port === "number" && port > 0, `port: ${port}`);
    try {
      const sample = await queryNtp("127.0.0.1", { port });
      assert(Math.abs(sample.offsetMicros) < 50_000, `offset: ${sample.offsetMicros}`);
      assert(sample.delayMicros >= 0);
    } finally {
      await handler.close();
    }
    const rebound = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
    rebound.close();
  });
});

Deno.test("DataHandler clock sync of a client runtime", async (t) => {
  await t.step("synchronises a caller's clock with the time server at its endpoint", async () => {
    const system = new SystemClock();
    const server = new TimeSyncServer({
      hostname: "127.0.0.1",
      port: 0,
      clock: { now: () => system.now() + 2_500_000 },
    });
    const handler = new DataHandler({
      config: createRuntimeConfig({ role: "client", timeSyncPort: server.port }),
      sink: () => {},
      onError: () => {},
    });
    try {
      const processor = handler.registerCaller(A, { endpoint: "127.0.0.1", port: 5000 });
      const offset = await processor.clockReady({ signal: AbortSignal.timeout(5_000) });
      assert(Math.abs(offset - 2_500_000) < 50_000, `offset: ${offset}`);
      const synced = system.now() + 2_500_000;
      const local = processor.desynchronize(synced);
      assert(Math.abs(local - (synced - offset)) < 50_000, `local: ${local}`);
      assert(Math.abs(local - (synced - 2_500_000)) < 50_000, `local: ${local}`);
    } finally {
      await handler.close();
      await server.close();
    }
  });
});

/** How far (µs) a loopback SNTP estimate may be from the server's known offset. */
const LOOPBACK_TOLERANCE = 50_000;

/**
 * Two loopback time servers on ephemeral ports, `ahead` 2.5 s ahead of this
 * machine's clock and `behind` 1.5 s behind it, and a client handler with
 * `timeSyncPort: null` on the system clock; all closed after `body`.
 */
async function withTwoTimeServers(
  body: (
    servers: { ahead: TimeSyncServer; behind: TimeSyncServer },
    handler: DataHandler,
    system: SystemClock,
  ) => Promise<void>,
): Promise<void> {
  const system = new SystemClock();
  const ahead = new TimeSyncServer({
    hostname: "127.0.0.1",
    port: 0,
    clock: { now: () => system.now() + 2_500_000 },
  });
  const behind = new TimeSyncServer({
    hostname: "127.0.0.1",
    port: 0,
    clock: { now: () => system.now() - 1_500_000 },
  });
  const handler = new DataHandler({
    config: createRuntimeConfig({ role: "client", timeSyncPort: null }),
    sink: () => {},
    onError: () => {},
  });
  try {
    await body({ ahead, behind }, handler, system);
  } finally {
    await handler.close();
    await ahead.close();
    await behind.close();
  }
}

/** Asserts that `actual` is within the loopback tolerance of `expected`. */
function assertNear(actual: number, expected: number, what: string): void {
  assert(
    Math.abs(actual - expected) < LOOPBACK_TOLERANCE,
    `${what}: ${actual}, expected ${expected} ± ${LOOPBACK_TOLERANCE}`,
  );
}

Deno.test("DataHandler per-caller time sync port of a client runtime", async (t) => {
  await t.step(
    "callers at one endpoint follow the time servers at their own timeSyncPorts",
    async () => {
      await withTwoTimeServers(async ({ ahead, behind }, handler, system) => {
        const a = handler.registerCaller(A, {
          endpoint: "127.0.0.1",
          port: 1,
          timeSyncPort: ahead.port,
        });
        const b = handler.registerCaller(B, {
          endpoint: "127.0.0.1",
          port: 2,
          timeSyncPort: behind.port,
        });
        const signal = AbortSignal.timeout(5_000);
        const [offsetA, offsetB] = await Promise.all([
          a.clockReady({ signal }),
          b.clockReady({ signal }),
        ]);
        assertNear(offsetA, 2_500_000, "offset of A");
        assertNear(offsetB, -1_500_000, "offset of B");
        assert(a.clock !== b.clock);
        const now = system.now();
        assertNear(a.clock.sync(now), now + 2_500_000, "A's sync");
        assertNear(b.clock.sync(now), now - 1_500_000, "B's sync");
        assertNear(a.desynchronize(now + 2_500_000), now, "A's desynchronize");
        assertNear(b.desynchronize(now - 1_500_000), now, "B's desynchronize");
      });
    },
  );

  await t.step(
    "events and synchronised data convert through the caller's own time server",
    async () => {
      const sunk: SinkItem[] = [];
      const system = new SystemClock();
      const ahead = new TimeSyncServer({
        hostname: "127.0.0.1",
        port: 0,
        clock: { now: () => system.now() + 2_500_000 },
      });
      const handler = new DataHandler({
        config: createRuntimeConfig({ role: "client", timeSyncPort: null }),
        sink: (item) => {
          sunk.push(item);
        },
        onError: () => {},
      });
      try {
        const processor = handler.registerCaller(A, {
          endpoint: "127.0.0.1",
          port: 1,
          timeSyncPort: ahead.port,
        });
        const offset = await processor.clockReady({ signal: AbortSignal.timeout(5_000) });
        const events = reader(processor);
        await handler.deliver([{ value: "e", callerId: A.toString(), timestamp: T0 }]);
        const batch = await nextBatch(events);
        assertEquals(batch?.length, 1);
        assertNear(batch![0].timestamp, T0 + offset, "event timestamp");
        assertNear(batch![0].timestamp, T0 + 2_500_000, "event timestamp");
        processor.processData("d", T0 + 2_500_000, { domain: "synchronized" });
        assertEquals(sunk.length, 1);
        assertNear(sunk[0].timestamp, T0, "stored local timestamp");
      } finally {
        await handler.close();
        await ahead.close();
      }
    },
  );

  await t.step("two callers at one endpoint and time port share one clock", async () => {
    await withTwoTimeServers(async ({ ahead, behind }, handler) => {
      const a = handler.registerCaller(A, {
        endpoint: "127.0.0.1",
        port: 1,
        timeSyncPort: ahead.port,
      });
      const c = handler.registerCaller(C, {
        endpoint: "127.0.0.1",
        port: 3,
        timeSyncPort: ahead.port,
      });
      const b = handler.registerCaller(B, {
        endpoint: "127.0.0.1",
        port: 2,
        timeSyncPort: behind.port,
      });
      assert(a.clock === c.clock, "A and C share the client of the ahead server");
      assert(a.clock !== b.clock, "B has the client of the behind server");
      const signal = AbortSignal.timeout(5_000);
      assertEquals(await a.clockReady({ signal }), await c.clockReady({ signal }));
    });
  });

  await t.step("unregistering one of two sharing callers keeps the other's clock", async () => {
    await withTwoTimeServers(async ({ ahead }, handler, system) => {
      const a = handler.registerCaller(A, {
        endpoint: "127.0.0.1",
        port: 1,
        timeSyncPort: ahead.port,
      });
      const c = handler.registerCaller(C, {
        endpoint: "127.0.0.1",
        port: 3,
        timeSyncPort: ahead.port,
      });
      const shared = c.clock;
      assertEquals(handler.unregisterCaller(A), true);
      assertEquals(a.closed, true);
      const offset = await c.clockReady({ signal: AbortSignal.timeout(5_000) });
      assertNear(offset, 2_500_000, "offset of C");
      const now = system.now();
      assertNear(c.clock.sync(now), now + 2_500_000, "C's sync");
      // The client is still the shared one: a new caller there gets it too.
      const b = handler.registerCaller(B, {
        endpoint: "127.0.0.1",
        port: 2,
        timeSyncPort: ahead.port,
      });
      assert(b.clock === shared);
      assert(c.clock === shared);
    });
  });

  await t.step(
    "unregistering the last caller of a time port closes its client; the next gets a new one",
    async () => {
      await withTwoTimeServers(async ({ ahead }, handler) => {
        const a = handler.registerCaller(A, {
          endpoint: "127.0.0.1",
          port: 1,
          timeSyncPort: ahead.port,
        });
        const c = handler.registerCaller(C, {
          endpoint: "127.0.0.1",
          port: 3,
          timeSyncPort: ahead.port,
        });
        const signal = AbortSignal.timeout(5_000);
        await a.clockReady({ signal });
        const old = a.clock;
        assertEquals(handler.unregisterCaller(A), true);
        assertEquals(handler.unregisterCaller(C), true);
        assertEquals(handler.callers, []);
        assertEquals(c.closed, true);
        const fresh = handler.registerCaller(A, {
          endpoint: "127.0.0.1",
          port: 1,
          timeSyncPort: ahead.port,
        });
        assert(fresh.clock !== old, "a new client after the last lease was released");
        assertNear(await fresh.clockReady({ signal }), 2_500_000, "offset of the new client");
      });
    },
  );

  await t.step(
    "a caller without timeSyncPort keeps offset 0 when the configured one is null",
    async () => {
      await withTwoTimeServers(async ({ ahead }, handler) => {
        const synced = handler.registerCaller(A, {
          endpoint: "127.0.0.1",
          port: 1,
          timeSyncPort: ahead.port,
        });
        const plainCaller = handler.registerCaller(B, { endpoint: "127.0.0.1", port: 2 });
        assertNear(
          await synced.clockReady({ signal: AbortSignal.timeout(5_000) }),
          2_500_000,
          "offset of A",
        );
        assertEquals(await plainCaller.clockReady(), 0);
        assertEquals(plainCaller.clock.sync(T0), T0);
        assertEquals(plainCaller.desynchronize(T0), T0);
        assert(plainCaller.clock !== synced.clock);
      });
    },
  );

  await t.step("a caller's timeSyncPort takes precedence over the configured one", async () => {
    const system = new SystemClock();
    const ahead = new TimeSyncServer({
      hostname: "127.0.0.1",
      port: 0,
      clock: { now: () => system.now() + 2_500_000 },
    });
    const behind = new TimeSyncServer({
      hostname: "127.0.0.1",
      port: 0,
      clock: { now: () => system.now() - 1_500_000 },
    });
    const handler = new DataHandler({
      config: createRuntimeConfig({ role: "client", timeSyncPort: ahead.port }),
      sink: () => {},
      onError: () => {},
    });
    try {
      const configured = handler.registerCaller(A, { endpoint: "127.0.0.1", port: 1 });
      const own = handler.registerCaller(B, {
        endpoint: "127.0.0.1",
        port: 2,
        timeSyncPort: behind.port,
      });
      const explicit = handler.registerCaller(C, {
        endpoint: "127.0.0.1",
        port: 3,
        timeSyncPort: ahead.port,
      });
      const signal = AbortSignal.timeout(5_000);
      assertNear(await configured.clockReady({ signal }), 2_500_000, "offset of A");
      assertNear(await own.clockReady({ signal }), -1_500_000, "offset of B");
      // Naming the configured port explicitly is the same endpoint and time port.
      assert(explicit.clock === configured.clock);
    } finally {
      await handler.close();
      await ahead.close();
      await behind.close();
    }
  });
});
