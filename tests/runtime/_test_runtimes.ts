/**
 * Runtime initializers for the worker runtime host tests; each runs inside a
 * real Worker, loaded by module URL and export name.
 *
 * @module
 */

import type { RuntimeInitializer } from "../../runtime/runtime.ts";
import { SensorFault } from "./_sensor_fault.ts";

/** Emits `params.values` (with timestamps 1, 2, ...) on start and `"bye:<reason>"` on stop. */
export const Echo: RuntimeInitializer<unknown> = (context) => {
  const { values } = context.params as { values: unknown[] };
  return {
    start() {
      values.forEach((value, i) => context.emit(value, i + 1));
    },
    stop(reason) {
      context.emit(`bye:${String(reason)}`, 1_000_000);
    },
  };
};

/**
 * Emits `params.count` integers `i` at timestamp `i` in a background loop,
 * awaiting each emit when `params.await` is true; without it, emits them all
 * synchronously in `start`.
 */
export const Counter: RuntimeInitializer<number> = (context) => {
  const { count, await: awaitEmit } = context.params as { count: number; await: boolean };
  let loop: Promise<void> = Promise.resolve();
  return {
    start() {
      if (!awaitEmit) {
        for (let i = 0; i < count; i++) context.emit(i, i);
        return;
      }
      loop = (async () => {
        for (let i = 0; i < count && !context.signal.aborted; i++) await context.emit(i, i);
      })();
    },
    async stop() {
      await loop;
    },
  };
};

/**
 * Emits `params.count` Float32Arrays of `params.length` values `[i, i, ...]`,
 * then, a macrotask later, `{ byteLengths }`: the worker-side byte length of
 * each emitted array (0 once its buffer moved).
 */
export const Floats: RuntimeInitializer<unknown> = (context) => {
  const { count, length } = context.params as { count: number; length: number };
  return {
    async start() {
      const arrays = Array.from({ length: count }, (_, i) => new Float32Array(length).fill(i));
      arrays.forEach((array, i) => context.emit(array, i));
      await new Promise((resolve) => setTimeout(resolve, 0));
      context.emit({ byteLengths: arrays.map((array) => array.byteLength) }, count);
    },
    stop() {},
  };
};

/** Throws a {@linkcode SensorFault} from `start`. */
export const FailsToStart: RuntimeInitializer<never> = () => ({
  start() {
    throw new SensorFault("lidar offline", 7);
  },
  stop() {},
});

/** Throws a {@linkcode SensorFault} from a timer, after a successful start. */
export const FailsLater: RuntimeInitializer<never> = () => ({
  start() {
    setTimeout(() => {
      throw new SensorFault("lidar overheated", 9);
    }, 0);
  },
  stop() {},
});

/** Rejects a promise nobody handles, after a successful start. */
export const RejectsLater: RuntimeInitializer<never> = () => ({
  start() {
    setTimeout(() => Promise.reject(new RangeError("angle out of range")), 0);
  },
  stop() {},
});

/** Ends its worker after start: `Deno.exit(params.code)` or `self.close()` (`params.how`). */
export const Exits: RuntimeInitializer<never> = (context) => {
  const { how, code } = context.params as { how: "exit" | "close"; code?: number };
  return {
    start() {
      setTimeout(() => {
        if (how === "exit") Deno.exit(code);
        else (globalThis as unknown as { close(): void }).close();
      }, 0);
    },
    stop() {},
  };
};

/** Never finishes `stop`. */
export const HangsInStop: RuntimeInitializer<never> = () => ({
  start() {},
  stop() {
    return new Promise<void>(() => {});
  },
});

/** Blocks its worker's event loop for `params.ms` milliseconds, after start. */
export const BusyLoops: RuntimeInitializer<never> = (context) => {
  const { ms } = context.params as { ms: number };
  return {
    start() {
      setTimeout(() => {
        const end = Date.now() + ms;
        while (Date.now() < end) {
          // busy
        }
      }, 0);
    },
    stop() {},
  };
};

/** Is not a function. */
export const NotAnInitializer = 42;
