/**
 * Runtime initializers for `runtime_bench.ts`; each runs inside the Worker of
 * a `WorkerRuntimeHost`, loaded by module URL and export name.
 *
 * @module
 */

import { CallerId } from "../rpc/caller_id.ts";
import type { RuntimeInitializer } from "../runtime/runtime.ts";

/** What `BigFloats` emits last: how many arrays it emitted and their byte lengths afterwards. */
export interface TransferCheck {
  /** Marks the check item. */
  readonly check: true;
  /** Arrays emitted. */
  readonly emitted: number;
  /** Sum of the worker-side byte lengths of the emitted arrays after emit (0 when all moved). */
  readonly remainingBytes: number;
}

/**
 * Emits `params.count` fresh Float32Arrays of `params.length` values (element
 * 0 holds the index), awaiting each emit; then, a macrotask later, a
 * {@linkcode TransferCheck}.
 */
export const BigFloats: RuntimeInitializer<Float32Array | TransferCheck> = (context) => {
  const { count, length } = context.params as { count: number; length: number };
  let loop: Promise<void> = Promise.resolve();
  return {
    start() {
      loop = (async () => {
        const emitted: Float32Array[] = [];
        for (let i = 0; i < count && !context.signal.aborted; i++) {
          const array = new Float32Array(length);
          array[0] = i;
          emitted.push(array);
          const pending = context.emit(array, i);
          if (pending !== undefined) await pending;
        }
        await new Promise((resolve) => setTimeout(resolve, 0));
        let remainingBytes = 0;
        for (const array of emitted) remainingBytes += array.byteLength;
        await context.emit({ check: true, emitted: emitted.length, remainingBytes }, count);
      })();
    },
    async stop() {
      await loop;
    },
  };
};

/** Emits the numbers `0 .. params.count - 1` (timestamp = value), awaiting blocked emits. */
export const SmallNumbers: RuntimeInitializer<number> = (context) => {
  const { count } = context.params as { count: number };
  let loop: Promise<void> = Promise.resolve();
  return {
    start() {
      loop = (async () => {
        for (let i = 0; i < count && !context.signal.aborted; i++) {
          const pending = context.emit(i, i);
          if (pending !== undefined) await pending;
        }
      })();
    },
    async stop() {
      await loop;
    },
  };
};

/**
 * Registers caller `params.testId` and sends it `params.count` numbers
 * through its processor (stamped `params.base + i`), awaiting each item
 * that waits for credit: the full path into a handle's aggregator.
 */
export const CallerNumbers: RuntimeInitializer<number> = (context) => {
  const { testId, count, base } = context.params as { testId: string; count: number; base: number };
  const processor = context.dataHandler.registerCaller(CallerId.parse(testId), {
    endpoint: "127.0.0.1",
    port: 1,
  });
  let loop: Promise<void> = Promise.resolve();
  return {
    start() {
      loop = (async () => {
        for (let i = 0; i < count && !context.signal.aborted; i++) {
          const pending = processor.processData(i, base + i);
          if (pending !== undefined) await pending;
        }
      })();
    },
    async stop() {
      await loop;
    },
  };
};
