/**
 * The deterministic signal of the three-host end-to-end test (private),
 * shared by the source (which submits it) and the aggregator agent (which
 * checks every rebuilt frame against it):
 *
 * - {@linkcode expectedSnapshot}: the snapshot of a source at source time
 *   `t` — a pure function of the source's name and `t`, so that a
 *   restarted source goes on with the same signal and the checker needs no
 *   state;
 * - {@linkcode jitterMicros}: how late the source submits the snapshot of a
 *   step (seeded), so that neighbouring steps are submitted out of order.
 *
 * Time is the source's clock (system time plus the source's injected
 * offset), in microseconds; a step is {@linkcode STEP_MICROS} long and its
 * snapshot is stamped `step * STEP_MICROS`.
 *
 * @module
 */

/** The stream's length (float32 elements). */
export const LENGTH = 64;
/** The time between two snapshots, microseconds (100 Hz). */
export const STEP_MICROS = 10_000;
/** The most a snapshot is submitted after its timestamp, microseconds. */
export const MAX_JITTER_MICROS = 25_000;
/** The stream's name on the source's TensorStreamServer. */
export const STREAM = "data";

/** A 32-bit integer hash of a few integers (murmur3's finaliser over a running mix). */
export function hash(...parts: number[]): number {
  let h = 0x9e37_79b9;
  for (const part of parts) {
    h = Math.imul(h ^ (part >>> 0), 0x85eb_ca6b);
    h ^= h >>> 13;
    h = Math.imul(h ^ Math.floor(part / 4_294_967_296), 0xc2b2_ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** FNV-1a of a name: the seed of its signal. */
export function nameSeed(name: string): number {
  let h = 0x811c_9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x0100_0193);
  return h >>> 0;
}

/**
 * The snapshot of source `name` at source time `t` (a multiple of
 * {@linkcode STEP_MICROS}): element 0 counts the steps (it changes every
 * step, so every snapshot differs from its predecessor and is sent);
 * element `i > 0` holds a seeded value that changes every `8..48` steps
 * (its own period and phase), so about three elements change per step.
 * Every value is exact in float32.
 *
 * @param name The source's name.
 * @param t The snapshot's timestamp, source time, microseconds.
 * @param out Where to write it (a new array by default).
 * @returns `out`.
 */
export function expectedSnapshot(
  name: string,
  t: number,
  out: Float32Array = new Float32Array(LENGTH),
): Float32Array {
  if (!Number.isSafeInteger(t) || t % STEP_MICROS !== 0) {
    throw new RangeError(
      `Cannot compute the snapshot as 't' must be a multiple of ${STEP_MICROS}: current value is ${t}`,
    );
  }
  const step = t / STEP_MICROS;
  const seed = nameSeed(name);
  out[0] = step % 16_777_216;
  for (let i = 1; i < LENGTH; i++) {
    const period = 8 + (hash(seed, i) % 41);
    const phase = hash(seed, i, 1) % period;
    const epoch = Math.floor((step + phase) / period);
    out[i] = ((hash(seed, i, epoch) % 2_000_001) - 1_000_000) / 64;
  }
  return out;
}

/**
 * How long after its timestamp source `seed` submits step `step`,
 * microseconds, in `[0, MAX_JITTER_MICROS)`: more than a step for about
 * half of them, so neighbours are often submitted out of order.
 *
 * @param seed The source's seed.
 * @param step The step.
 * @returns The delay.
 */
export function jitterMicros(seed: number, step: number): number {
  return hash(seed, step, 7) % MAX_JITTER_MICROS;
}

/**
 * The index of the first element of `got` whose float32 bits differ from
 * `want`'s, `-1` when every bit is equal (and the lengths are).
 *
 * @param got The rebuilt snapshot.
 * @param want The expected one.
 * @returns The index, or -1.
 */
export function firstDifference(got: Float32Array, want: Float32Array): number {
  if (got.length !== want.length) return Math.min(got.length, want.length);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
