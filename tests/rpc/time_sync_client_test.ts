import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { readTimestamp, writeTimestamp } from "../../rpc/_ntp.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import { SystemClock } from "../../rpc/system_clock.ts";
import {
  estimateOffset,
  TimeSyncClient,
  TimeSyncTimeoutError,
} from "../../rpc/time_sync_client.ts";
import { TimeSyncServer } from "../../rpc/time_sync_server.ts";

const SHIFT = 2_500_000;

Deno.test("TimeSyncClient estimates a 2.5 s offset within 1 ms after its start burst", async () => {
  const local = new SystemClock();
  await using server = new TimeSyncServer({
    hostname: "127.0.0.1",
    port: 0,
    clock: { now: () => local.now() + SHIFT },
  });
  await using client = new TimeSyncClient("127.0.0.1", {
    port: server.port,
    local,
    burst: 4,
    burstIntervalMs: 0,
  });
  await client.ready;
  assert(client.synchronized);
  assertEquals(client.samples.length, 4);
  const error = Math.abs(client.offsetMicros! - SHIFT);
  assert(error < 1_000, `estimate ${client.offsetMicros} is ${error} µs off`);
  const clockError = Math.abs(client.clock.now() - (local.now() + SHIFT));
  assert(clockError < 1_000, `the clock is ${clockError} µs off`);
});

/**
 * A scripted server and a local clock it controls: for request k it answers
 * with the server time that makes the sample's offset `plan[k].offset` and
 * its delay `plan[k].delay` exactly, by setting the client's local clock to
 * T1 + delay before it replies. `plan[k].bad` sends a reply that must be
 * dropped (originate not echoed, wild times) first; `plan[k].silent` sends
 * nothing else.
 */
function scriptedServer(
  plan: { offset: number; delay: number; bad?: boolean; silent?: boolean }[],
) {
  const local = {
    t: 1_704_110_400_000_000,
    now() {
      return this.t;
    },
  };
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  let k = 0;
  const done = (async () => {
    try {
      for (;;) {
        const [request, from] = await conn.receive();
        const step = plan[Math.min(k++, plan.length - 1)];
        const t1 = readTimestamp(new DataView(request.buffer, request.byteOffset), 40)!;
        const reply = new Uint8Array(48);
        const view = new DataView(reply.buffer);
        reply[0] = 0x24;
        reply[1] = 2;
        if (step.bad) {
          writeTimestamp(view, 24, t1 + 1);
          writeTimestamp(view, 32, t1 + 99_000_000);
          writeTimestamp(view, 40, t1 + 99_000_000);
          await conn.send(reply, from);
        }
        if (step.silent) continue;
        reply.set(request.subarray(40, 48), 24);
        const t2 = t1 + step.offset + step.delay / 2;
        writeTimestamp(view, 32, t2);
        writeTimestamp(view, 40, t2);
        local.t = t1 + step.delay;
        await conn.send(reply, from);
      }
    } catch {
      // closed
    }
  })();
  return {
    local,
    port: (conn.addr as Deno.NetAddr).port,
    get requests() {
      return k;
    },
    async [Symbol.asyncDispose]() {
      conn.close();
      await done;
    },
  };
}

Deno.test("TimeSyncClient trusts the lowest-delay samples", async (t) => {
  await t.step("the estimate is the median offset of the three best samples", async () => {
    await using server = scriptedServer([
      { offset: SHIFT + 40_000, delay: 80_000 },
      { offset: SHIFT, delay: 200 },
      { offset: SHIFT - 30_000, delay: 60_000 },
      { offset: SHIFT + 100, delay: 300 },
      { offset: SHIFT - 50, delay: 250 },
    ]);
    await using client = new TimeSyncClient("127.0.0.1", {
      port: server.port,
      local: server.local,
      burst: 5,
      burstIntervalMs: 0,
    });
    await client.ready;
    assertEquals(client.samples.map((s) => [s.offsetMicros, s.delayMicros]), [
      [SHIFT + 40_000, 80_000],
      [SHIFT, 200],
      [SHIFT - 30_000, 60_000],
      [SHIFT + 100, 300],
      [SHIFT - 50, 250],
    ]);
    // A plain mean (the Python original) would say SHIFT + 2,010.
    assertEquals(client.offsetMicros, SHIFT);
  });
  await t.step("estimateOffset, directly", () => {
    assertEquals(estimateOffset([]), undefined);
    assertEquals(estimateOffset([{ offsetMicros: 7, delayMicros: 9 }]), 7);
    assertEquals(
      estimateOffset([{ offsetMicros: 10, delayMicros: 2 }, { offsetMicros: 21, delayMicros: 1 }]),
      16,
    );
    assertEquals(
      estimateOffset([
        { offsetMicros: 500, delayMicros: 5_000 },
        { offsetMicros: 3, delayMicros: 10 },
        { offsetMicros: -400, delayMicros: 4_000 },
        { offsetMicros: 1, delayMicros: 12 },
        { offsetMicros: 2, delayMicros: 11 },
      ]),
      2,
    );
  });
  await t.step("keeps only the newest maxSamples samples", async () => {
    const plan = Array.from({ length: 6 }, (_, k) => ({ offset: 1_000 * k, delay: 100 }));
    await using server = scriptedServer(plan);
    await using client = new TimeSyncClient("127.0.0.1", {
      port: server.port,
      local: server.local,
      burst: 6,
      burstIntervalMs: 0,
      maxSamples: 3,
    });
    await client.ready;
    assertEquals(client.samples.map((s) => s.offsetMicros), [3_000, 4_000, 5_000]);
    assertEquals(client.offsetMicros, 4_000);
  });
});

Deno.test("TimeSyncClient is not disturbed by bad replies or lost ones", async () => {
  await using server = scriptedServer([
    { offset: SHIFT, delay: 100 },
    { offset: SHIFT, delay: 100, bad: true, silent: true }, // only a bad reply: times out
    { offset: SHIFT + 10, delay: 120, bad: true }, // a bad reply, then a good one
  ]);
  await using client = new TimeSyncClient("127.0.0.1", {
    port: server.port,
    local: server.local,
    burst: 3,
    burstIntervalMs: 0,
    timeoutMs: 100,
  });
  await client.ready;
  assertEquals(client.counters, { queries: 3, samples: 2, failures: 1 });
  assertEquals(client.samples.map((s) => s.offsetMicros), [SHIFT, SHIFT + 10]);
  assertEquals(client.offsetMicros, SHIFT + 5);
  assert(client.lastError instanceof Error && client.lastError.name === "NtpQueryError");
});

Deno.test("TimeSyncClient forgets samples older than maxSampleAgeMs", async () => {
  await using server = scriptedServer([
    { offset: SHIFT, delay: 100 },
    { offset: 0, delay: 0, silent: true },
  ]);
  await using client = new TimeSyncClient("127.0.0.1", {
    port: server.port,
    local: server.local,
    burst: 1,
    periodMs: 1,
    timeoutMs: 20,
    maxSampleAgeMs: 1_000,
  });
  await client.ready;
  assert(client.synchronized);
  server.local.t += 1_000_001; // a second and a microsecond later, the next query fails
  const failures = client.counters.failures;
  while (client.counters.failures === failures) await new Promise((r) => setTimeout(r, 5));
  assertEquals([client.synchronized, client.offsetMicros, client.samples.length], [
    false,
    undefined,
    0,
  ]);
  // The clock keeps its last estimate rather than jumping back to local time.
  assertEquals(client.clock.targetOffsetMicros, SHIFT);
});

Deno.test("TimeSyncClient waits, times out and closes cleanly", async (t) => {
  await t.step("getOffset resolves with the estimate once there is one", async () => {
    await using server = scriptedServer([{ offset: -1_750_000, delay: 40 }]);
    await using client = new TimeSyncClient("127.0.0.1", {
      port: server.port,
      local: server.local,
      burst: 1,
    });
    assertEquals(await client.getOffset(), -1_750_000);
  });
  await t.step("getOffset times out on the injected scheduler", async () => {
    await using server = scriptedServer([{ offset: 0, delay: 0, silent: true }]);
    const scheduler = new ManualScheduler();
    await using client = new TimeSyncClient("127.0.0.1", { port: server.port, scheduler });
    const waiting = client.getOffset({ timeoutMs: 5_000 });
    scheduler.advance(5_000);
    await assertRejects(() => waiting, TimeSyncTimeoutError, "within 5000 ms");
  });
  await t.step("close before the first sample rejects ready and pending waits", async () => {
    await using server = scriptedServer([{ offset: 0, delay: 0, silent: true }]);
    const client = new TimeSyncClient("127.0.0.1", {
      port: server.port,
      scheduler: new ManualScheduler(),
    });
    const waiting = assertRejects(() => client.getOffset(), TimeSyncTimeoutError, "closed first");
    await client.close();
    await assertRejects(() => client.ready, TimeSyncTimeoutError, "closed first");
    await waiting;
    await assertRejects(() => client.getOffset(), TimeSyncTimeoutError, "closed first");
    await client.close();
    assert(client.closed && !client.synchronized);
  });
  await t.step("aborting its signal stops the client", async () => {
    await using server = scriptedServer([{ offset: 0, delay: 0, silent: true }]);
    const controller = new AbortController();
    const client = new TimeSyncClient("127.0.0.1", {
      port: server.port,
      scheduler: new ManualScheduler(),
      signal: controller.signal,
    });
    controller.abort();
    await assertRejects(() => client.ready, TimeSyncTimeoutError);
    assert(client.closed);
    await client.close();
  });
  await t.step("the periodic loop queries again after periodMs", async () => {
    await using server = scriptedServer([{ offset: 5, delay: 10 }]);
    const scheduler = new ManualScheduler();
    await using client = new TimeSyncClient("127.0.0.1", {
      port: server.port,
      local: server.local,
      burst: 1,
      periodMs: 3_000,
      scheduler,
    });
    await client.ready;
    while (scheduler.pending === 0) await new Promise((r) => setTimeout(r, 1));
    assertEquals(scheduler.nextIn, 3_000);
    assertEquals(server.requests, 1);
    scheduler.advance(3_000);
    while (client.counters.samples < 2) await new Promise((r) => setTimeout(r, 1));
    assertEquals(server.requests, 2);
  });
  await t.step("bad options are rejected", () => {
    assertThrows(() => new TimeSyncClient(""), TypeError, "'hostname'");
    assertThrows(() => new TimeSyncClient("time.example"), TypeError, "IP address");
    assertThrows(() => new TimeSyncClient("127.0.0.1", { port: 0 }), RangeError, "'port'");
    assertThrows(() => new TimeSyncClient("127.0.0.1", { burst: -1 }), RangeError, "'burst'");
    assertThrows(() => new TimeSyncClient("127.0.0.1", { periodMs: 0 }), RangeError, "periodMs");
    assertThrows(
      () => new TimeSyncClient("127.0.0.1", { maxSamples: 0 }),
      RangeError,
      "'maxSamples'",
    );
  });
});
