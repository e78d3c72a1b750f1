/**
 * The runtimes of the spec/runtime.md §14 end-to-end catalogue, in our own
 * words: each is loaded by module URL and export name, in a Worker or on the
 * test's thread. Payload classes become plain objects and `torch.Tensor`s
 * become Float32Arrays.
 *
 * @module
 */

import { CallerId } from "../../rpc/caller_id.ts";
import type { Runtime, RuntimeContext, RuntimeInitializer } from "../../runtime/runtime.ts";
import type { EndpointDataProcessor, RuntimeEvent } from "../../runtime/runtime_data_handler.ts";

/** The catalogue's custom error class (the Python test's `ConnectionError`). */
export class DirectBlockError extends Error {
  /**
   * Creates the error.
   *
   * @param message The message.
   */
  constructor(message: string) {
    super(message);
    this.name = "DirectBlockError";
  }
}

function nowMicros(): number {
  return Date.now() * 1000;
}

interface FakeParams {
  testId: string;
  port: number;
}

/**
 * The catalogue's `FakeRuntime`: registers `testId` at 0.0.0.0:`port` when
 * started, emits `{ value: "FRESH_SIMPLE_DATA_V2" }` the first time only,
 * and `{ value: "STOPPED" }` when stopped.
 */
export const FakeRuntime: RuntimeInitializer<{ value: string }> = (context) => {
  const { testId, port } = context.params as FakeParams;
  let processor: EndpointDataProcessor<{ value: string }, unknown> | undefined;
  let sent = false;
  return {
    async start() {
      await Promise.resolve();
      processor = context.dataHandler.registerCaller(CallerId.parse(testId), {
        endpoint: "0.0.0.0",
        port,
      });
      if (!sent) {
        sent = true;
        await processor.processData({ value: "FRESH_SIMPLE_DATA_V2" }, nowMicros());
      }
    },
    async stop() {
      await processor?.processData({ value: "STOPPED" }, nowMicros());
    },
  };
};

/** Catalogue #2: emits the tensor [[1, 2], [3, 4]] on start, [[-1, -1]] on stop. */
export const TensorSource: RuntimeInitializer<{ shape: number[]; data: Float32Array }> = (
  context,
) => {
  const { testId, port } = context.params as FakeParams;
  const processor = context.dataHandler.registerCaller(CallerId.parse(testId), {
    endpoint: "0.0.0.0",
    port,
  });
  return {
    async start() {
      await processor.processData(
        { shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) },
        nowMicros(),
      );
    },
    async stop() {
      await processor.processData({ shape: [1, 2], data: Float32Array.of(-1, -1) }, nowMicros());
    },
  };
};

function sum(values: Float32Array): number {
  return values.reduce((total, value) => total + value, 0);
}

/**
 * Runs `onEvent` for each event of `processor` until it ends or the runtime
 * is being stopped; other failures go to the watcher.
 */
function listen<E>(
  context: RuntimeContext<never, E>,
  processor: EndpointDataProcessor<never, E>,
  onEvent: (event: RuntimeEvent<E>) => Promise<void> | void,
): Promise<void> {
  return (async () => {
    for await (const batch of processor.events({ signal: context.signal })) {
      for (const event of batch) await onEvent(event);
    }
  })().catch((error) => {
    if (!context.signal.aborted) context.reportError(error);
  });
}

/**
 * Catalogue #3: a server runtime with string data and tensor events; for
 * each event it emits `"processed_tensor_event_<sum>"`.
 */
export const TensorEventProcessor: RuntimeInitializer<string, Float32Array> = (context) => {
  const { testId, port } = context.params as FakeParams;
  let listening: Promise<void> = Promise.resolve();
  return {
    start() {
      const processor = context.dataHandler.registerCaller(CallerId.parse(testId), {
        endpoint: "0.0.0.0",
        port,
      });
      listening = listen(context, processor, (event) =>
        processor.processData(
          `processed_tensor_event_${sum(event.value).toFixed(1)}`,
          event.timestamp,
          { domain: "synchronized" },
        ));
    },
    async stop() {
      await listening;
    },
  };
};

/**
 * Catalogues #4 and #5: tensor data and tensor events. Emits [250, 350] on
 * start; each event `e` gives `[700 + sum(e), 800 + sum(e)]`, stamped with
 * the event's time; on stop it emits [-999].
 */
export const TensorResponder: RuntimeInitializer<Float32Array, Float32Array> = (context) => {
  const { testId, port } = context.params as FakeParams;
  let processor: EndpointDataProcessor<Float32Array, Float32Array> | undefined;
  let listening: Promise<void> = Promise.resolve();
  // The stop item must be the newest, whatever clock stamped the events.
  let latest = 0;
  return {
    async start() {
      processor = context.dataHandler.registerCaller(CallerId.parse(testId), {
        endpoint: "0.0.0.0",
        port,
      });
      const p = processor;
      await p.processData(Float32Array.of(250, 350), nowMicros());
      listening = listen(context, p, async (event) => {
        const total = sum(event.value);
        latest = Math.max(latest, p.desynchronize(event.timestamp));
        await p.processData(Float32Array.of(700 + total, 800 + total), event.timestamp, {
          domain: "synchronized",
        });
      });
    },
    async stop() {
      await listening;
      await processor?.processData(Float32Array.of(-999), Math.max(nowMicros(), latest + 1));
    },
  };
};

/**
 * Catalogues #6, #7, #13: `start` fails with `params.kind` ("range",
 * "type", "direct") and `params.message`. With `params.background`, `start`
 * succeeds and the error is reported a macrotask later instead.
 */
export const ErrorThrowingRuntime: RuntimeInitializer<unknown> = (context) => {
  const { kind, message, background } = context.params as {
    kind: "range" | "type" | "direct";
    message: string;
    background?: boolean;
  };
  const make = () =>
    kind === "range"
      ? new RangeError(message)
      : kind === "type"
      ? new TypeError(message)
      : new DirectBlockError(message);
  let timer: ReturnType<typeof setTimeout> | undefined;
  return {
    async start() {
      await Promise.resolve();
      if (!background) throw make();
      timer = setTimeout(() => context.reportError(make()), 0);
    },
    stop() {
      clearTimeout(timer);
    },
  };
};

/** Catalogues #9 and #12: the initializer itself throws `params.kind` with `params.message`. */
export const CreateFails: RuntimeInitializer<unknown> = (context) => {
  const { kind, message } = context.params as { kind: "type" | "range"; message: string };
  throw kind === "type" ? new TypeError(message) : new RangeError(message);
};

/**
 * Catalogue #14: registers two callers (`params.ids`) at ports 50000 and
 * 50001 and answers each of their events with `"event_for_<first 8 chars
 * of that caller's id>"`.
 */
export const BroadcastListener: RuntimeInitializer<string> = (context) => {
  const { ids } = context.params as { ids: [string, string] };
  const listening: Promise<void>[] = [];
  return {
    start() {
      ids.forEach((id, i) => {
        const processor = context.dataHandler.registerCaller(CallerId.parse(id), {
          endpoint: "127.0.0.1",
          port: 50_000 + i,
        });
        listening.push(listen(context, processor, async (event) => {
          await processor.processData(
            `event_for_${id.slice(0, 8)}:${event.callerId === undefined ? "broadcast" : "direct"}`,
            nowMicros(),
          );
        }));
      });
    },
    async stop() {
      await Promise.all(listening);
    },
  };
};

/**
 * Emits `params.count` integers 0, 1, ... for caller `params.testId`,
 * stamped `params.base + i`, awaiting each item that waits for credit
 * (unless `params.awaitEach` is false: then it never waits).
 */
export const Flood: RuntimeInitializer<number> = (context) => {
  const { testId, count, base, awaitEach = true } = context.params as {
    testId: string;
    count: number;
    base: number;
    awaitEach?: boolean;
  };
  const processor = context.dataHandler.registerCaller(CallerId.parse(testId), {
    endpoint: "0.0.0.0",
    port: 1,
  });
  let loop: Promise<void> = Promise.resolve();
  const runtime: Runtime = {
    start() {
      loop = (async () => {
        for (let i = 0; i < count; i++) {
          const waiting = processor.processData(i, base + i);
          if (waiting !== undefined && awaitEach) await waiting;
        }
      })();
    },
    async stop() {
      await loop;
    },
  };
  return runtime;
};

/**
 * Registers `params.testId` only when started (late), then echoes each of
 * its events' values as data, stamped with the event's time.
 */
export const LateEcho: RuntimeInitializer<unknown> = (context) => {
  const { testId } = context.params as { testId: string };
  let listening: Promise<void> = Promise.resolve();
  return {
    start() {
      const processor = context.dataHandler.registerCaller(CallerId.parse(testId), {
        endpoint: "10.0.0.1",
        port: 7,
      });
      listening = listen(context, processor, async (event) => {
        await processor.processData(event.value, event.timestamp, { domain: "synchronized" });
      });
    },
    async stop() {
      await listening;
    },
  };
};

/** Emits two items with the same timestamp for `params.testId`. */
export const SameTimestamp: RuntimeInitializer<string> = (context) => {
  const { testId } = context.params as { testId: string };
  return {
    async start() {
      const processor = context.dataHandler.registerCaller(CallerId.parse(testId), {
        endpoint: "0.0.0.0",
        port: 2,
      });
      const timestamp = nowMicros();
      await processor.processData("first", timestamp);
      await processor.processData("second", timestamp);
    },
    stop() {},
  };
};
