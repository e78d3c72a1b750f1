import assert from "node:assert/strict";
import { AsyncQueue, deadline, QueueClosedError, QueueOverflowError } from "../../rpc/_async.ts";
import {
  CreditOverflowError,
  CreditWindow,
  type DataMessage,
  deserializeError,
  encodeForTransfer,
  ErrorRegistry,
  type Message,
  MESSAGE_TYPES,
  NON_ERROR_NAME,
  PROTOCOL_VERSION,
  ProtocolError,
  RemoteRuntimeError,
  type SerializedError,
  serializeError,
  validateMessage,
} from "../../runtime/_worker_protocol.ts";
import { SensorFault } from "./_sensor_fault.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const v = PROTOCOL_VERSION;
const SERIALIZED: SerializedError = { name: "Error", message: "boom", stack: "" };

/** One valid message of every type. */
const VALID: readonly Message[] = [
  { v, type: "init", id: 1, moduleUrl: "file:///r.ts", exportName: "Init", params: { a: 1 } },
  { v, type: "ready", id: 1 },
  { v, type: "init-failed", id: 1, error: SERIALIZED },
  { v, type: "start", id: 2 },
  { v, type: "started", id: 2 },
  { v, type: "start-failed", id: 2, error: { ...SERIALIZED, cause: SERIALIZED } },
  { v, type: "stop", id: 3 },
  { v, type: "stopped", id: 3 },
  { v, type: "events", id: 4, items: [{ value: 1 }, { value: "x", callerId: "c", timestamp: 5 }] },
  { v, type: "data", id: 5, items: [{ value: new Float32Array(2), timestamp: -3 }] },
  { v, type: "credit", id: 6, channel: "data", credits: 30 },
  { v, type: "heartbeat", id: 7 },
  { v, type: "heartbeat-ack", id: 7 },
  { v, type: "error", id: 8, error: { ...SERIALIZED, errors: [SERIALIZED], data: { code: 1 } } },
];

function assertProtocolError(value: unknown, path: string, includes?: string): void {
  assert.throws(() => validateMessage(value), (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    assert.equal(error.path, path);
    assert.match(error.message, /^Cannot accept the message as /);
    if (includes !== undefined) assert.ok(error.message.includes(includes), error.message);
    return true;
  });
}

/** Lets pending promise reactions run, without timers. */
async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/** Tracks how a promise settles, without awaiting it. */
function observe<T>(promise: Promise<T>): { state: string; value?: T; error?: unknown } {
  const seen: { state: string; value?: T; error?: unknown } = { state: "pending" };
  promise.then(
    (value) => Object.assign(seen, { state: "fulfilled", value }),
    (error) => Object.assign(seen, { state: "rejected", error }),
  );
  return seen;
}

/** A real module Worker running `_echo_worker.ts`, its replies queued. */
class EchoWorker implements AsyncDisposable {
  readonly worker = new Worker(new URL("./_echo_worker.ts", import.meta.url).href, {
    type: "module",
  });
  readonly #replies = new AsyncQueue<unknown>({ capacity: 100, overflow: "error" });

  constructor() {
    this.worker.onmessage = (event) => this.#replies.tryPush(event.data);
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.#replies.fail(new Error(`the echo worker crashed: ${event.message}`));
    };
  }

  post(message: unknown, transfer: Transferable[] = []): void {
    this.worker.postMessage(message, transfer);
  }

  /** The next reply, validated; fails after 10 s rather than hang. */
  async next(): Promise<Message> {
    const result = await deadline(this.#replies.shift(), 10_000);
    assert.equal(result.done, false);
    return validateMessage(result.value);
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.worker.terminate();
    this.#replies.close();
    return Promise.resolve();
  }
}

// ---------------------------------------------------------------------------
// validateMessage
// ---------------------------------------------------------------------------

Deno.test("validateMessage", async (t) => {
  await t.step("accepts one message of every type and returns it unchanged", () => {
    assert.deepEqual(new Set(VALID.map((m) => m.type)), new Set(MESSAGE_TYPES));
    for (const message of VALID) assert.equal(validateMessage(message), message);
  });

  await t.step("accepts messages after a structured clone, as postMessage delivers them", () => {
    for (const message of VALID) {
      assert.deepEqual(validateMessage(structuredClone(message)), message);
    }
  });

  await t.step("ignores fields the protocol does not know", () => {
    const message = { v, type: "start", id: 1, extra: [1, 2] };
    assert.equal(validateMessage(message), message);
  });

  await t.step("refuses anything but a plain object", () => {
    for (const value of [null, undefined, 42, "start", [], true]) {
      assertProtocolError(value, "", "the message must be an object");
    }
  });

  await t.step("refuses another or a missing protocol version", () => {
    assertProtocolError({ v: 2, type: "start", id: 1 }, "v", "protocol version 1");
    assertProtocolError({ v: "1", type: "start", id: 1 }, "v");
    assertProtocolError({ type: "start", id: 1 }, "v", "current value is undefined");
  });

  await t.step("refuses an unknown or missing type", () => {
    assertProtocolError({ v, type: "launch", id: 1 }, "type", '"launch"');
    assertProtocolError({ v, id: 1 }, "type");
  });

  await t.step("refuses a correlation id that is not a safe integer >= 0", () => {
    for (const id of [-1, 1.5, "1", Number.NaN, 2 ** 53, undefined, null]) {
      assertProtocolError({ v, type: "stop", id }, "id", "a safe integer >= 0");
    }
  });

  await t.step("refuses an init without a module URL or export name", () => {
    assertProtocolError({ v, type: "init", id: 1, exportName: "X" }, "moduleUrl");
    assertProtocolError(
      { v, type: "init", id: 1, moduleUrl: "file:///a", exportName: "" },
      "exportName",
    );
  });

  await t.step("refuses malformed data and event batches, naming the item", () => {
    assertProtocolError({ v, type: "data", id: 1, items: {} }, "items", "an array");
    assertProtocolError({ v, type: "data", id: 1, items: [{ value: 1 }] }, "items[0].timestamp");
    assertProtocolError(
      { v, type: "data", id: 1, items: [{ value: 1, timestamp: 0 }, { value: 2, timestamp: 0.5 }] },
      "items[1].timestamp",
    );
    assertProtocolError({ v, type: "events", id: 1, items: [{ callerId: "a" }] }, "items[0].value");
    assertProtocolError(
      { v, type: "events", id: 1, items: [{ value: 1, callerId: 7 }] },
      "items[0].callerId",
    );
    assertProtocolError({ v, type: "events", id: 1, items: [null] }, "items[0]");
  });

  await t.step("refuses credit that is not a positive integer or names no channel", () => {
    assertProtocolError({ v, type: "credit", id: 1, channel: "data", credits: 0 }, "credits");
    assertProtocolError({ v, type: "credit", id: 1, channel: "data", credits: 2.5 }, "credits");
    assertProtocolError({ v, type: "credit", id: 1, channel: "command", credits: 1 }, "channel");
  });

  await t.step("refuses malformed serialized errors, naming the field", () => {
    assertProtocolError({ v, type: "error", id: 1 }, "error");
    assertProtocolError(
      { v, type: "error", id: 1, error: { name: "E", message: "m" } },
      "error.stack",
    );
    assertProtocolError(
      { v, type: "error", id: 1, error: { ...SERIALIZED, cause: { name: 1 } } },
      "error.cause.name",
    );
    assertProtocolError(
      { v, type: "error", id: 1, error: { ...SERIALIZED, errors: [SERIALIZED, "x"] } },
      "error.errors[1]",
    );
    assertProtocolError(
      { v, type: "error", id: 1, error: { ...SERIALIZED, data: 3 } },
      "error.data",
    );
  });

  await t.step("refuses a cyclic or absurdly deep error without overflowing the stack", () => {
    const cyclic: Record<string, unknown> = { ...SERIALIZED };
    cyclic.cause = cyclic;
    const cloned = structuredClone({ v, type: "error", id: 1, error: cyclic });
    assertProtocolError(cloned, "error.cause", "refer back");
    let deep: Record<string, unknown> = { ...SERIALIZED };
    for (let i = 0; i < 100_000; i++) deep = { ...SERIALIZED, cause: deep };
    assert.throws(() => validateMessage({ v, type: "error", id: 1, error: deep }), (error) => {
      assert.ok(error instanceof ProtocolError);
      assert.match(error.message, /at most 64 errors deep/);
      return true;
    });
  });

  await t.step("turns a throwing getter into a ProtocolError", () => {
    const hostile = {
      v,
      get type(): string {
        throw new Error("gotcha");
      },
      id: 1,
    };
    assertProtocolError(hostile, "", "reading it threw: gotcha");
  });
});

// ---------------------------------------------------------------------------
// encodeForTransfer
// ---------------------------------------------------------------------------

Deno.test("encodeForTransfer", async (t) => {
  await t.step("lists each buffer once, however many views share it", () => {
    const a = new Float32Array(4);
    const b = new Uint8Array(8);
    const message: DataMessage = {
      v,
      type: "data",
      id: 1,
      items: [
        { value: a, timestamp: 1 },
        { value: { x: a.subarray(2), y: new DataView(a.buffer) }, timestamp: 2 },
        { value: [b, b], timestamp: 3 },
      ],
    };
    const { message: same, transfer } = encodeForTransfer(message);
    assert.equal(same, message);
    assert.equal(transfer.length, 2);
    assert.deepEqual(new Set(transfer), new Set([a.buffer, b.buffer]));
  });

  await t.step("finds bare buffers and views inside Maps, Sets and nested objects", () => {
    const inMap = new Int16Array(1);
    const inSet = new Float64Array(1);
    const bare = new ArrayBuffer(3);
    const deep = new BigInt64Array(1);
    const { transfer } = encodeForTransfer({
      map: new Map<unknown, unknown>([["k", inMap]]),
      set: new Set([inSet]),
      bare,
      nested: { a: { b: { c: [deep] } } },
    });
    assert.deepEqual(
      new Set(transfer),
      new Set([inMap.buffer, inSet.buffer, bare, deep.buffer]),
    );
  });

  await t.step("skips SharedArrayBuffers, which are shared rather than moved", () => {
    const shared = new Int32Array(new SharedArrayBuffer(16));
    assert.deepEqual(encodeForTransfer({ shared }).transfer, []);
  });

  await t.step("survives cycles", () => {
    const buffer = new Uint8Array(2);
    const node: Record<string, unknown> = { buffer };
    node.self = node;
    assert.deepEqual(encodeForTransfer(node).transfer, [buffer.buffer]);
  });

  await t.step("refuses a detached buffer with a TypeError that says why", () => {
    const values = new Float32Array(2);
    structuredClone(values, { transfer: [values.buffer] });
    assert.throws(() => encodeForTransfer({ values }), (error) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, /must be attached: one is detached/);
      return true;
    });
  });

  await t.step(
    "moves a batch of Float32Arrays to a real Worker zero-copy, values intact",
    async () => {
      await using echo = new EchoWorker();
      const arrays = [
        new Float32Array([1.5, -2.25, 3.125]),
        new Float32Array([Math.PI, Number.NEGATIVE_INFINITY]),
        new Float32Array(1000).map((_, i) => i / 7),
      ];
      const expected = arrays.map((a) => Array.from(a));
      const message: DataMessage = {
        v,
        type: "data",
        id: 42,
        items: arrays.map((value, i) => ({ value, timestamp: 1_000_000 * i, callerId: `c${i}` })),
      };
      const { transfer } = encodeForTransfer(message);
      assert.equal(transfer.length, 3);
      echo.post(message, transfer);
      for (const array of arrays) {
        assert.equal(array.byteLength, 0);
        assert.equal(array.buffer.byteLength, 0);
        assert.equal(array.buffer.detached, true);
      }
      const reply = await echo.next();
      assert.equal(reply.type, "data");
      assert.equal(reply.id, 42);
      const items = (reply as DataMessage).items;
      assert.deepEqual(items.map((item) => item.timestamp), [0, 1_000_000, 2_000_000]);
      assert.deepEqual(items.map((item) => item.callerId), ["c0", "c1", "c2"]);
      for (let i = 0; i < items.length; i++) {
        assert.ok(items[i].value instanceof Float32Array);
        assert.deepEqual(Array.from(items[i].value as Float32Array), expected[i]);
      }
    },
  );
});

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

Deno.test("serializeError", async (t) => {
  await t.step("keeps name, message, stack and the cause chain", () => {
    const root = new TypeError("root");
    const error = new RangeError("outer", { cause: root });
    const serialized = serializeError(error);
    assert.deepEqual(serialized, {
      name: "RangeError",
      message: "outer",
      stack: error.stack,
      cause: { name: "TypeError", message: "root", stack: root.stack },
    });
  });

  await t.step("records the class name when it differs from name", () => {
    class Quiet extends Error {}
    assert.equal(serializeError(new Quiet("q")).className, "Quiet");
    assert.equal(serializeError(new SensorFault("s", 1)).className, undefined);
  });

  await t.step("puts clonable own properties in data and leaves functions out", () => {
    const error = Object.assign(new Error("e"), { code: "ENOENT", retry: () => 1, at: [1, 2] });
    assert.deepEqual(serializeError(error).data, { code: "ENOENT", at: [1, 2] });
  });

  await t.step("cuts the cause chain at maxDepth", () => {
    let error = new Error("level 0");
    for (let i = 1; i <= 20; i++) error = new Error(`level ${i}`, { cause: error });
    const count = (s: SerializedError | undefined): number =>
      s === undefined ? 0 : 1 + count(s.cause);
    assert.equal(count(serializeError(error)), 9);
    assert.equal(count(serializeError(error, { maxDepth: 2 })), 3);
    assert.equal(count(serializeError(error, { maxDepth: 0 })), 1);
    assert.throws(() => serializeError(error, { maxDepth: -1 }), RangeError);
  });

  await t.step("cuts a cause cycle where it closes", () => {
    const a = new Error("a");
    const b = new Error("b", { cause: a });
    (a as { cause?: unknown }).cause = b;
    const serialized = serializeError(a);
    assert.equal(serialized.cause?.message, "b");
    assert.equal(serialized.cause?.cause, undefined);
  });

  await t.step("serializes the errors of an AggregateError", () => {
    const error = new AggregateError([new TypeError("t"), new RangeError("r")], "both");
    assert.deepEqual(serializeError(error).errors?.map((e) => e.name), ["TypeError", "RangeError"]);
  });

  await t.step("turns a thrown non-Error into a NonError, keeping a clonable value", () => {
    assert.deepEqual(serializeError("plain"), {
      name: NON_ERROR_NAME,
      message: "plain",
      stack: "",
      data: { value: "plain" },
    });
    const withFunction = serializeError({ f() {} });
    assert.equal(withFunction.name, NON_ERROR_NAME);
    assert.equal(withFunction.data, undefined);
  });

  await t.step("produces a valid, structured-clonable error message", () => {
    const error = new SensorFault("s", 3, { cause: new Error("c") });
    const message = structuredClone({ v, type: "error", id: 1, error: serializeError(error) });
    assert.equal(validateMessage(message).type, "error");
  });
});

Deno.test("deserializeError", async (t) => {
  await t.step("rebuilds every built-in class, with message, stack and cause", () => {
    for (
      const Class of [
        Error,
        TypeError,
        RangeError,
        SyntaxError,
        ReferenceError,
        EvalError,
        URIError,
      ]
    ) {
      const original = new Class("m", { cause: new Error("c") });
      const rebuilt = deserializeError(structuredClone(serializeError(original)));
      assert.ok(rebuilt instanceof Class);
      assert.equal(Object.getPrototypeOf(rebuilt), Class.prototype);
      assert.equal(rebuilt.name, Class.name);
      assert.equal(rebuilt.message, "m");
      assert.equal(rebuilt.stack, original.stack);
      assert.ok(rebuilt.cause instanceof Error);
      assert.equal((rebuilt.cause as Error).message, "c");
      assert.ok(Error.isError(rebuilt));
    }
  });

  await t.step("rebuilds an AggregateError with its errors", () => {
    const rebuilt = deserializeError(
      serializeError(new AggregateError([new TypeError("t")], "agg")),
    );
    assert.ok(rebuilt instanceof AggregateError);
    assert.equal(rebuilt.message, "agg");
    assert.equal(rebuilt.errors.length, 1);
    assert.ok(rebuilt.errors[0] instanceof TypeError);
  });

  await t.step("rebuilds a registered custom class with its data, without its constructor", () => {
    const registry = new ErrorRegistry().register(SensorFault);
    const rebuilt = deserializeError(serializeError(new SensorFault("hot", 451)), registry);
    assert.ok(rebuilt instanceof SensorFault);
    assert.equal(rebuilt.name, "SensorFault");
    assert.equal(rebuilt.message, "hot");
    assert.equal(rebuilt.code, 451);
  });

  await t.step("falls back to RemoteRuntimeError for an unregistered class", () => {
    const original = new SensorFault("cold", 2);
    const rebuilt = deserializeError(serializeError(original));
    assert.ok(rebuilt instanceof RemoteRuntimeError);
    assert.equal(rebuilt.name, "SensorFault");
    assert.equal(rebuilt.message, "cold");
    assert.equal(rebuilt.stack, original.stack);
    assert.equal(rebuilt.remoteStack, original.stack);
    assert.deepEqual(rebuilt.data, { code: 2 });
  });

  await t.step("registry refuses non-error classes and a name held by another class", () => {
    const registry = new ErrorRegistry();
    assert.throws(() => registry.register(Map as never), TypeError);
    class TypeErrorLookalike extends Error {}
    assert.throws(
      () => registry.register(TypeErrorLookalike, "TypeError"),
      /class TypeError holds it/,
    );
    assert.equal(registry.register(TypeError), registry);
    assert.equal(registry.has("AggregateError"), true);
    assert.equal(registry.has("SensorFault"), false);
  });

  await t.step("a custom class thrown in a real Worker arrives as that class", async () => {
    await using echo = new EchoWorker();
    echo.post({ v, type: "init", id: 9, moduleUrl: "file:///x.ts", exportName: "SensorFault" });
    const reply = await echo.next();
    assert.equal(reply.type, "init-failed");
    assert.equal(reply.id, 9);
    const registry = new ErrorRegistry().register(SensorFault);
    const error = deserializeError((reply as { error: SerializedError }).error, registry);
    assert.ok(error instanceof SensorFault);
    assert.equal(error.message, "lidar offline");
    assert.equal(error.code, 7);
    assert.match(error.stack ?? "", /_echo_worker\.ts/);
    assert.ok(error.cause instanceof RangeError);
    assert.equal(error.cause.message, "angle out of range");
  });

  await t.step(
    "a real Worker refuses malformed messages with a ProtocolError and lives on",
    async () => {
      await using echo = new EchoWorker();
      const registry = new ErrorRegistry().register(ProtocolError);
      const malformed = [{ v: 2, type: "start", id: 1 }, "garbage", {
        v,
        type: "data",
        id: 1,
        items: 3,
      }];
      for (const message of malformed) {
        echo.post(message);
        const reply = await echo.next();
        assert.equal(reply.type, "error");
        const error = deserializeError((reply as { error: SerializedError }).error, registry);
        assert.ok(error instanceof ProtocolError);
        assert.match(error.message, /^Cannot accept the message as /);
      }
      echo.post({ v, type: "heartbeat", id: 77 });
      assert.deepEqual(await echo.next(), { v, type: "heartbeat-ack", id: 77 });
    },
  );
});

// ---------------------------------------------------------------------------
// CreditWindow
// ---------------------------------------------------------------------------

Deno.test("CreditWindow", async (t) => {
  await t.step("grants at once while credit lasts and counts nothing", async () => {
    const window = new CreditWindow({ initialCredit: 3 });
    assert.equal(await window.acquire(2), true);
    assert.equal(window.tryAcquire(1), true);
    assert.equal(window.tryAcquire(1), false);
    assert.equal(window.available, 0);
    assert.equal(window.dropped, 0);
  });

  await t.step('"block" waits in order until the receiver grants enough', async () => {
    const window = new CreditWindow({ overflow: "block" });
    const big = observe(window.acquire(3));
    const small = observe(window.acquire(1));
    await flush();
    assert.equal(window.pending, 2);
    window.grant(2); // not enough for the head: the small one must not overtake it
    await flush();
    assert.deepEqual([big.state, small.state], ["pending", "pending"]);
    assert.equal(window.tryAcquire(1), false);
    window.grant(2);
    await flush();
    assert.deepEqual([big.value, small.value], [true, true]);
    assert.equal(window.available, 0);
    assert.equal(window.pending, 0);
    assert.equal(window.dropped, 0);
  });

  await t.step('"drop-oldest" keeps maxPending waiters and drops the oldest, exactly', async () => {
    const window = new CreditWindow({ overflow: "drop-oldest", maxPending: 2 });
    const first = observe(window.acquire(1));
    const second = observe(window.acquire(2));
    const third = observe(window.acquire(3));
    const fourth = observe(window.acquire(4));
    await flush();
    assert.deepEqual([first.value, second.value], [false, false]);
    assert.equal(window.droppedOldest, 3);
    assert.equal(window.pending, 2);
    window.grant(7);
    await flush();
    assert.deepEqual([third.value, fourth.value], [true, true]);
    assert.equal(window.dropped, 3);
    assert.equal(window.droppedNewest, 0);
    assert.equal(window.available, 0);
  });

  await t.step('"drop-newest" refuses at once and counts the dropped items', async () => {
    const window = new CreditWindow({ initialCredit: 1, overflow: "drop-newest" });
    assert.equal(await window.acquire(1), true);
    assert.equal(await window.acquire(5), false);
    assert.equal(await window.acquire(1), false);
    assert.equal(window.droppedNewest, 6);
    assert.equal(window.dropped, 6);
    assert.equal(window.pending, 0);
  });

  await t.step(
    '"error" rejects with a CreditOverflowError that is a QueueOverflowError',
    async () => {
      const window = new CreditWindow({ initialCredit: 2, overflow: "error" });
      const error = await window.acquire(3).then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof CreditOverflowError);
      assert.ok(error instanceof QueueOverflowError);
      assert.equal(error.requested, 3);
      assert.equal(error.available, 2);
      assert.equal(
        error.message,
        'Cannot send 3 items as the receiver must have granted the credit: 2 available (overflow policy "error")',
      );
      assert.equal(window.rejected, 3);
      assert.equal(window.dropped, 0);
      assert.equal(window.available, 2);
    },
  );

  await t.step("an aborted acquire withdraws and lets the next one through", async () => {
    const window = new CreditWindow({ initialCredit: 1 });
    const controller = new AbortController();
    const big = observe(window.acquire(5, { signal: controller.signal }));
    const small = observe(window.acquire(1));
    await flush();
    assert.equal(small.state, "pending");
    controller.abort(new Error("gave up"));
    await flush();
    assert.equal(big.state, "rejected");
    assert.equal((big.error as Error).message, "gave up");
    assert.equal(small.value, true);
    assert.equal(window.dropped, 0);
    await assert.rejects(window.acquire(1, { signal: controller.signal }), { message: "gave up" });
  });

  await t.step("close rejects waiting and later acquires with QueueClosedError", async () => {
    const window = new CreditWindow();
    const waiting = window.acquire(1);
    const crash = new Error("worker crashed");
    window.close(crash);
    await assert.rejects(
      waiting,
      (error) => error instanceof QueueClosedError && error.cause === crash,
    );
    await assert.rejects(window.acquire(1), QueueClosedError);
    window.grant(5);
    assert.equal(window.available, 0);
    assert.equal(window.closed, true);
  });

  await t.step("validates its arguments up front", () => {
    assert.throws(
      () => new CreditWindow({ initialCredit: -1 }),
      /'initialCredit' must be a safe integer >= 0/,
    );
    assert.throws(
      () => new CreditWindow({ overflow: "spill" as never }),
      /'overflow' must be one of/,
    );
    assert.throws(() => new CreditWindow({ maxPending: 0 }), RangeError);
    const window = new CreditWindow();
    assert.throws(() => window.acquire(0), /'n' must be a safe integer >= 1: current value is 0/);
    assert.throws(() => window.grant(1.5), RangeError);
    assert.throws(() => window.acquire(1, { signal: {} as AbortSignal }), TypeError);
    window.grant(Number.MAX_SAFE_INTEGER);
    assert.throws(() => window.grant(1), RangeError);
  });
});
