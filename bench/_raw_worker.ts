/**
 * The raw-`postMessage` baseline of `runtime_bench.ts`: a bare module Worker
 * that, on `{ mode: "big", count, length }`, posts `count` fresh
 * Float32Arrays with a transfer list, then `{ check, remainingBytes }`; on
 * `{ mode: "small", count, batch }`, posts the numbers `0 .. count - 1` as
 * arrays of `batch` `{ value, timestamp }` items (the shape a
 * `WorkerRuntimeHost` batch carries), with no flow control.
 *
 * @module
 */

/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />

self.onmessage = (event: MessageEvent<Record<string, number | string>>) => {
  const { mode, count, length, batch } = event.data as {
    mode: string;
    count: number;
    length: number;
    batch: number;
  };
  if (mode === "big") {
    const emitted: Float32Array[] = [];
    for (let i = 0; i < count; i++) {
      const array = new Float32Array(length);
      array[0] = i;
      emitted.push(array);
      self.postMessage(array, [array.buffer]);
    }
    let remainingBytes = 0;
    for (const array of emitted) remainingBytes += array.byteLength;
    self.postMessage({ check: true, emitted: emitted.length, remainingBytes });
  } else {
    for (let start = 0; start < count; start += batch) {
      const end = Math.min(count, start + batch);
      const items: { value: number; timestamp: number }[] = [];
      for (let i = start; i < end; i++) items.push({ value: i, timestamp: i });
      self.postMessage(items);
    }
  }
};
