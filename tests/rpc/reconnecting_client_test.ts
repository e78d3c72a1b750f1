import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { GrpcStatus, GrpcStatusError } from "../../rpc/grpc_types.ts";
import {
  NoConnectionError,
  ReconnectingClient,
  type ReconnectingClientOptions,
} from "../../rpc/reconnecting_client.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";

const UNAVAILABLE = new GrpcStatusError(GrpcStatus.UNAVAILABLE, "connection refused");
const DEADLINE = new GrpcStatusError(GrpcStatus.DEADLINE_EXCEEDED, "too slow");
const INTERNAL = new GrpcStatusError(GrpcStatus.INTERNAL, "server bug");

/** A connection that counts how often it was closed. */
class Connection {
  closed = 0;
  constructor(readonly n: number) {}
  close(): void {
    this.closed++;
  }
}

/** What one connect attempt does: connect, give nothing, or fail. */
type Step = "ok" | null | undefined | Error;

/**
 * A connect function that follows a script (the last step repeats) and
 * records every attempt and the connections it made.
 */
function scripted(...steps: Step[]) {
  const made: Connection[] = [];
  const signals: AbortSignal[] = [];
  let attempts = 0;
  const connect = (signal: AbortSignal) => {
    signals.push(signal);
    const step = steps[Math.min(attempts++, steps.length - 1)];
    if (step instanceof Error) return Promise.reject(step);
    if (step !== "ok") return Promise.resolve(step);
    const connection = new Connection(made.length + 1);
    made.push(connection);
    return Promise.resolve(connection);
  };
  return { connect, made, signals, attempts: () => attempts };
}

const NO_JITTER = { initialMs: 100, maxMs: 30_000, multiplier: 2, jitter: "none" } as const;

function client(
  connect: (signal: AbortSignal) => Promise<Connection | null | undefined>,
  options: ReconnectingClientOptions = {},
) {
  const scheduler = new ManualScheduler();
  const errors: unknown[] = [];
  const gaveUp: [unknown, number][] = [];
  const reconnecting = new ReconnectingClient(connect, {
    backoff: NO_JITTER,
    scheduler,
    onError: (error) => errors.push(error),
    onGiveUp: (error, attempts) => gaveUp.push([error, attempts]),
    ...options,
  });
  return { client: reconnecting, scheduler, errors, gaveUp };
}

/** Fires each wait as soon as it is set, `count` times. */
async function fireWaits(scheduler: ManualScheduler, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await scheduler.whenPending();
    scheduler.advanceToNext();
  }
}

Deno.test("ReconnectingClient.start", async (t) => {
  await t.step("connects once and holds the connection", async () => {
    const script = scripted("ok");
    const { client: c } = client(script.connect);
    assertEquals(await c.start(), true);
    assertEquals([c.current, script.attempts()], [script.made[0], 1]);
    assertEquals(script.signals[0].aborted, false);
  });

  await t.step("answers false, without retrying, when the server is unavailable", async () => {
    for (const error of [UNAVAILABLE, DEADLINE]) {
      const script = scripted(error);
      const { client: c, scheduler, errors } = client(script.connect);
      assertEquals(await c.start(), false);
      assertEquals([c.current, script.attempts(), scheduler.pending, errors], [null, 1, 0, []]);
    }
  });

  await t.step("answers false when connect gives null or undefined", async () => {
    for (const step of [null, undefined]) {
      const script = scripted(step);
      const { client: c } = client(script.connect);
      assertEquals([await c.start(), c.current], [false, null]);
    }
  });

  await t.step("rejects with any other error of connect", async () => {
    const script = scripted(INTERNAL);
    const { client: c } = client(script.connect);
    const error = await assertRejects(() => c.start(), GrpcStatusError);
    assertEquals([error, c.current], [INTERNAL, null]);
  });

  await t.step("rejects a connection without a close method", async () => {
    const c = new ReconnectingClient(() => Promise.resolve({} as never));
    await assertRejects(() => c.start(), TypeError, "an object with a close() method");
  });

  await t.step("refuses to start twice", async () => {
    const script = scripted("ok");
    const { client: c } = client(script.connect);
    await c.start();
    await assertRejects(() => c.start(), Error, "it is already started");
    assertEquals(script.attempts(), 1);
  });

  await t.step("may start again after a false answer", async () => {
    const script = scripted(UNAVAILABLE, "ok");
    const { client: c } = client(script.connect);
    assertEquals([await c.start(), await c.start()], [false, true]);
  });

  await t.step("may start again after stop", async () => {
    const script = scripted("ok");
    const { client: c } = client(script.connect);
    await c.start();
    await c.stop();
    assertEquals(await c.start(), true);
    assertEquals([script.made[0].closed, c.current], [1, script.made[1]]);
  });

  await t.step("closes a connection that arrives after stop and answers false", async () => {
    let resolve!: (connection: Connection) => void;
    const c = new ReconnectingClient(
      () => new Promise<Connection>((r) => resolve = r),
      { scheduler: new ManualScheduler() },
    );
    const starting = c.start();
    await c.stop();
    const late = new Connection(1);
    resolve(late);
    assertEquals([await starting, late.closed, c.current], [false, 1, null]);
  });
});

Deno.test("ReconnectingClient.onDisconnect", async (t) => {
  await t.step("closes the connection, waits, reconnects and holds the new one", async () => {
    const script = scripted("ok");
    const { client: c, scheduler } = client(script.connect);
    await c.start();
    const outcome = c.onDisconnect(UNAVAILABLE);
    assertEquals([c.current, c.reconnecting], [null, true]);
    await scheduler.whenPending();
    assertEquals([script.made[0].closed, script.attempts()], [1, 1]);
    scheduler.advance(99);
    assertEquals(script.attempts(), 1);
    scheduler.advance(1);
    assertEquals(await outcome, "connected");
    assertEquals([c.current, c.reconnecting, scheduler.delays], [script.made[1], false, [100]]);
  });

  await t.step("backs off exponentially up to maxMs between failed attempts", async () => {
    const script = scripted("ok", UNAVAILABLE, UNAVAILABLE, null, UNAVAILABLE, "ok");
    const { client: c, scheduler } = client(script.connect, {
      backoff: { initialMs: 100, maxMs: 500, multiplier: 2, jitter: "none" },
    });
    await c.start();
    const outcome = c.onDisconnect(UNAVAILABLE);
    await fireWaits(scheduler, 5);
    assertEquals(await outcome, "connected");
    assertEquals(scheduler.delays, [100, 200, 400, 500, 500]);
    assertEquals(script.attempts(), 6);
  });

  await t.step("waits a random fraction of the backoff with full jitter", async () => {
    const script = scripted("ok", UNAVAILABLE, UNAVAILABLE, "ok");
    const { client: c, scheduler } = client(script.connect, {
      backoff: { initialMs: 100, multiplier: 3, jitter: "full" },
      random: () => 0.25,
    });
    await c.start();
    const outcome = c.onDisconnect(DEADLINE);
    await fireWaits(scheduler, 3);
    assertEquals(await outcome, "connected");
    assertEquals(scheduler.delays, [25, 75, 225]);
  });

  await t.step("gives up after maxRetries 2 failed attempts and tells onGiveUp", async () => {
    const script = scripted("ok", UNAVAILABLE);
    const { client: c, scheduler, gaveUp, errors } = client(script.connect, { maxRetries: 2 });
    await c.start();
    const outcome = c.onDisconnect(UNAVAILABLE);
    await fireWaits(scheduler, 2);
    assertEquals(await outcome, "gave-up");
    assertEquals([script.attempts(), gaveUp, errors], [3, [[UNAVAILABLE, 2]], []]);
    assertEquals([c.current, scheduler.pending, c.reconnecting], [null, 0, false]);
  });

  await t.step("counts connect giving null as a failed attempt", async () => {
    const script = scripted("ok", null);
    const { client: c, scheduler, gaveUp } = client(script.connect, { maxRetries: 3 });
    await c.start();
    const outcome = c.onDisconnect(UNAVAILABLE);
    await fireWaits(scheduler, 3);
    assertEquals(await outcome, "gave-up");
    assertEquals([script.attempts(), gaveUp.length, gaveUp[0][1]], [4, 1, 3]);
    assert(gaveUp[0][0] instanceof NoConnectionError);
  });

  await t.step("reconnects after null answers when connect later succeeds", async () => {
    const script = scripted("ok", null, undefined, "ok");
    const { client: c, scheduler } = client(script.connect, { maxRetries: 5 });
    await c.start();
    const outcome = c.onDisconnect(UNAVAILABLE);
    await fireWaits(scheduler, 3);
    assertEquals([await outcome, c.current?.n], ["connected", 2]);
  });

  await t.step("retries without limit when maxRetries is undefined", async () => {
    const steps: Step[] = ["ok", ...Array<Step>(30).fill(UNAVAILABLE), "ok"];
    const script = scripted(...steps);
    const { client: c, scheduler, gaveUp } = client(script.connect);
    await c.start();
    const outcome = c.onDisconnect(UNAVAILABLE);
    await fireWaits(scheduler, 31);
    assertEquals([await outcome, script.attempts(), gaveUp], ["connected", 32, []]);
    assertEquals(scheduler.delays.at(-1), 30_000);
  });

  await t.step("gives up at once with maxRetries 0", async () => {
    const script = scripted("ok");
    const { client: c, scheduler, gaveUp } = client(script.connect, { maxRetries: 0 });
    await c.start();
    assertEquals(await c.onDisconnect(UNAVAILABLE), "gave-up");
    assertEquals([gaveUp, script.attempts(), scheduler.delays], [[[UNAVAILABLE, 0]], 1, []]);
  });

  await t.step("does not reconnect after an error that is not unavailable", async () => {
    const script = scripted("ok");
    const { client: c, scheduler, errors } = client(script.connect);
    await c.start();
    assertEquals(await c.onDisconnect(INTERNAL), "not-retried");
    assertEquals([errors, script.made[0].closed, c.current], [[INTERNAL], 1, null]);
    assertEquals([script.attempts(), scheduler.pending], [1, 0]);
  });

  await t.step(
    "follows a custom isServerUnavailable, e.g. DEADLINE_EXCEEDED as final",
    async () => {
      const script = scripted("ok");
      const { client: c, errors } = client(script.connect, {
        isServerUnavailable: (error) =>
          error instanceof GrpcStatusError && error.code === GrpcStatus.UNAVAILABLE,
      });
      await c.start();
      assertEquals(await c.onDisconnect(DEADLINE), "not-retried");
      assertEquals(errors, [DEADLINE]);
    },
  );

  await t.step("stops reconnecting when an attempt fails otherwise, telling onError", async () => {
    const script = scripted("ok", UNAVAILABLE, INTERNAL, "ok");
    const { client: c, scheduler, errors, gaveUp } = client(script.connect);
    await c.start();
    const outcome = c.onDisconnect(UNAVAILABLE);
    await fireWaits(scheduler, 2);
    assertEquals(await outcome, "failed");
    assertEquals([errors, gaveUp, script.attempts(), scheduler.pending], [[INTERNAL], [], 3, 0]);
  });

  await t.step("shares one reconnection between concurrent disconnections", async () => {
    const script = scripted("ok");
    const { client: c, scheduler } = client(script.connect);
    await c.start();
    const first = c.onDisconnect(UNAVAILABLE);
    const second = c.onDisconnect(UNAVAILABLE);
    assertEquals(first, second);
    await fireWaits(scheduler, 1);
    assertEquals([await first, script.attempts(), scheduler.delays], ["connected", 2, [100]]);
  });

  await t.step("ignores a disconnection without an error", async () => {
    const script = scripted("ok");
    const { client: c } = client(script.connect);
    await c.start();
    assertEquals([await c.onDisconnect(undefined), await c.onDisconnect(null)], [
      "ignored",
      "ignored",
    ]);
    assertEquals([c.current, script.made[0].closed], [script.made[0], 0]);
  });

  await t.step("ignores a late failure of a connection that was replaced already", async () => {
    const script = scripted("ok");
    const { client: c, scheduler } = client(script.connect);
    await c.start();
    const [first] = script.made;
    const outcome = c.onDisconnect(UNAVAILABLE, first);
    await fireWaits(scheduler, 1);
    assertEquals(await outcome, "connected");
    const second = script.made[1];
    assertEquals(await c.onDisconnect(UNAVAILABLE, first), "ignored");
    assertEquals([c.current, second.closed, script.attempts()], [second, 0, 2]);
  });

  await t.step("reconnects for a failure of the current connection named explicitly", async () => {
    const script = scripted("ok");
    const { client: c, scheduler } = client(script.connect);
    await c.start();
    const outcome = c.onDisconnect(UNAVAILABLE, c.current!);
    await fireWaits(scheduler, 1);
    assertEquals(await outcome, "connected");
  });

  await t.step("ignores a disconnection before start and after stop", async () => {
    const script = scripted("ok");
    const { client: c, scheduler } = client(script.connect);
    assertEquals(await c.onDisconnect(UNAVAILABLE), "ignored");
    await c.start();
    await c.stop();
    assertEquals(await c.onDisconnect(UNAVAILABLE), "ignored");
    assertEquals([script.attempts(), scheduler.pending], [1, 0]);
  });

  await t.step("reports a failing close to onError and reconnects anyway", async () => {
    const failure = new Error("close failed");
    const broken = { n: 0, close: () => Promise.reject(failure) };
    let calls = 0;
    const { client: c, scheduler, errors } = client(
      () => Promise.resolve(calls++ === 0 ? broken as unknown as Connection : new Connection(1)),
    );
    await c.start();
    const outcome = c.onDisconnect(UNAVAILABLE);
    await fireWaits(scheduler, 1);
    assertEquals([await outcome, errors], ["connected", [failure]]);
  });

  await t.step("reports a random source out of range as a failure", async () => {
    const script = scripted("ok");
    const { client: c, errors } = client(script.connect, {
      backoff: { jitter: "full" },
      random: () => 2,
    });
    await c.start();
    assertEquals(await c.onDisconnect(UNAVAILABLE), "failed");
    assert(errors[0] instanceof RangeError);
  });
});

Deno.test("ReconnectingClient.stop", async (t) => {
  await t.step("closes and forgets the current connection", async () => {
    const script = scripted("ok");
    const { client: c } = client(script.connect);
    await c.start();
    await c.stop();
    assertEquals([c.current, script.made[0].closed], [null, 1]);
  });

  await t.step("ends a wait at once: no more attempts and no pending timer", async () => {
    const script = scripted("ok", UNAVAILABLE);
    const { client: c, scheduler, gaveUp } = client(script.connect);
    await c.start();
    const outcome = c.onDisconnect(UNAVAILABLE);
    await scheduler.whenPending();
    await c.stop();
    assertEquals(await outcome, "stopped");
    assertEquals([scheduler.pending, script.attempts(), gaveUp, c.current], [0, 1, [], null]);
  });

  await t.step("aborts an attempt in flight and closes what it brings afterwards", async () => {
    let resolve!: (connection: Connection) => void;
    let attempts = 0;
    const signals: AbortSignal[] = [];
    const first = new Connection(1);
    const { client: c, scheduler } = client((signal) => {
      signals.push(signal);
      return attempts++ === 0
        ? Promise.resolve(first)
        : new Promise<Connection>((r) => resolve = r);
    });
    await c.start();
    const outcome = c.onDisconnect(UNAVAILABLE);
    await fireWaits(scheduler, 1);
    assertEquals(attempts, 2);
    await c.stop();
    assertEquals(signals[1].aborted, true);
    const late = new Connection(2);
    resolve(late);
    assertEquals([await outcome, late.closed, c.current], ["stopped", 1, null]);
  });

  await t.step("lets a new start begin while a stopped reconnection winds down", async () => {
    let resolve!: (connection: Connection) => void;
    let attempts = 0;
    const { client: c, scheduler } = client(() => {
      attempts++;
      return attempts === 2
        ? new Promise<Connection>((r) => resolve = r)
        : Promise.resolve(new Connection(attempts));
    });
    await c.start();
    const outcome = c.onDisconnect(UNAVAILABLE);
    await fireWaits(scheduler, 1);
    await c.stop();
    assertEquals(await c.start(), true);
    const fresh = c.current;
    const late = new Connection(99);
    resolve(late);
    assertEquals([await outcome, late.closed, c.current === fresh], ["stopped", 1, true]);
  });

  await t.step("stops when the signal option is aborted, and refuses to start again", async () => {
    const script = scripted("ok");
    const controller = new AbortController();
    const { client: c } = client(script.connect, { signal: controller.signal });
    await c.start();
    controller.abort(new Error("shutting down"));
    await Promise.resolve();
    assertEquals([c.current, script.made[0].closed], [null, 1]);
    await assertRejects(() => c.start(), Error, "shutting down");
  });

  await t.step("stops on await using", async () => {
    const script = scripted("ok");
    {
      await using c = new ReconnectingClient(script.connect);
      await c.start();
    }
    assertEquals(script.made[0].closed, 1);
  });
});

Deno.test("ReconnectingClient options", async (t) => {
  await t.step("rejects values out of range with a RangeError naming the option", () => {
    const connect = scripted("ok").connect;
    const cases: [ReconnectingClientOptions, string][] = [
      [
        { maxRetries: -1 },
        "'maxRetries' must be an integer >= 0 or undefined: current value is -1",
      ],
      [{ maxRetries: 1.5 }, "'maxRetries'"],
      [{ backoff: { initialMs: -1 } }, "'backoff.initialMs' must be a number in 0..2147483647"],
      [
        { backoff: { initialMs: 100, maxMs: 50 } },
        "'backoff.maxMs' must be >= 'backoff.initialMs'",
      ],
      [{ backoff: { multiplier: 0.5 } }, "'backoff.multiplier' must be a finite number >= 1"],
      [{ backoff: { jitter: "half" as never } }, `'backoff.jitter' must be "full" or "none"`],
    ];
    for (const [options, message] of cases) {
      assertThrows(() => new ReconnectingClient(connect, options), RangeError, message);
    }
  });

  await t.step("rejects values of the wrong type with a TypeError naming the option", () => {
    const connect = scripted("ok").connect;
    assertThrows(() => new ReconnectingClient(null as never), TypeError, "'connect'");
    const cases: [ReconnectingClientOptions, string][] = [
      [{ random: 1 as never }, "'random'"],
      [{ isServerUnavailable: true as never }, "'isServerUnavailable'"],
      [{ onGiveUp: "x" as never }, "'onGiveUp'"],
      [{ onError: {} as never }, "'onError'"],
      [{ scheduler: {} as never }, "'scheduler' must have setTimeout and clearTimeout"],
      [{ signal: {} as never }, "'signal' must be an AbortSignal"],
    ];
    for (const [options, message] of cases) {
      assertThrows(() => new ReconnectingClient(connect, options), TypeError, message);
    }
  });
});
