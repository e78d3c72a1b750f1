/**
 * The invariant the whole tensor layer exists for: whatever snapshots a
 * sender records, in whatever order, its chunks delivered to a receiver in
 * a random order rebuild exactly the sender's vector at every timestamp, for
 * every dtype, bit for bit.
 *
 * One limit is inherent in the wire format: a chunk carries no sequence
 * number, so when a snapshot is REPLACED, two chunks may carry different
 * values for the same element at the same timestamp, and no receiver can
 * tell which is newer. The first property therefore shuffles freely across
 * timestamps but keeps the order of the chunks of any one timestamp; the
 * second property has no replaced timestamps and shuffles everything.
 */

import { assertEquals } from "../_assert.ts";
import fc from "fast-check";
import { allocate, bytesOf, type DType, DTYPES, type TensorArray } from "../../tensor/dtype.ts";
import { buildInitialVector, describeInitialState } from "../../tensor/initial_state.ts";
import { CompleteTensorMultiplexer } from "../../tensor/complete_multiplexer.ts";
import { SparseTensorMultiplexer } from "../../tensor/sparse_multiplexer.ts";
import type { TensorChunk } from "../../tensor/tensor_chunk.ts";
import { TensorDemuxer } from "../../tensor/tensor_demuxer.ts";

const T0 = 1_700_000_000_000_000;
const SEED = 20261124;

interface Step {
  slot: number; // timestamp = T0 + slot * 1000
  changes: { index: number; bytes: number[] }[];
}

interface Scenario {
  dtype: DType;
  length: number;
  initialBytes: number[];
  steps: Step[];
  sparse: boolean;
  gap: number;
  picks: number[];
}

function scenario(distinctSlots: boolean): fc.Arbitrary<Scenario> {
  return fc.record({
    dtype: fc.constantFrom(...DTYPES),
    length: fc.oneof(
      { weight: 4, arbitrary: fc.integer({ min: 1, max: 64 }) },
      { weight: 1, arbitrary: fc.integer({ min: 65, max: 2000 }) },
    ),
  }).chain(({ dtype, length }) => {
    const size = allocate(dtype, 0).BYTES_PER_ELEMENT;
    const change = fc.record({
      index: fc.integer({ min: 0, max: length - 1 }),
      bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: size, maxLength: size }),
    });
    const steps = distinctSlots
      ? fc.uniqueArray(fc.integer({ min: 0, max: 30 }), { minLength: 1, maxLength: 10 }).chain((
        slots,
      ) =>
        fc.tuple(
          ...slots.map((slot) =>
            fc.array(change, { maxLength: 12 }).map((changes) => ({ slot, changes }))
          ),
        )
      )
      : fc.array(
        fc.record({
          slot: fc.integer({ min: 0, max: 5 }),
          changes: fc.array(change, { maxLength: 12 }),
        }),
        { minLength: 1, maxLength: 12 },
      );
    return fc.record({
      dtype: fc.constant(dtype),
      length: fc.constant(length),
      initialBytes: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 64 }),
      steps: steps as fc.Arbitrary<Step[]>,
      sparse: fc.boolean(),
      gap: fc.integer({ min: 0, max: 3 }),
      picks: fc.array(fc.nat(), { minLength: 400, maxLength: 400 }),
    });
  });
}

/** A vector of the dtype whose bytes are `seed` repeated; bool elements are 0/1. */
function vectorFrom(dtype: DType, length: number, seed: number[]): TensorArray {
  const values = allocate(dtype, length);
  const bytes = bytesOf(values);
  if (seed.length > 0) { for (let i = 0; i < bytes.length; i++) bytes[i] = seed[i % seed.length]; }
  if (dtype === "bool") { for (let i = 0; i < bytes.length; i++) bytes[i] &= 1; }
  return values;
}

function applyChange(dtype: DType, values: TensorArray, change: Step["changes"][number]): void {
  const bytes = bytesOf(values);
  const size = values.BYTES_PER_ELEMENT;
  for (let k = 0; k < size; k++) bytes[change.index * size + k] = change.bytes[k];
  if (dtype === "bool") bytes[change.index] &= 1;
}

/** Records the steps in a multiplexer; returns its chunks and the expected snapshot per timestamp. */
async function send(s: Scenario) {
  const initial = vectorFrom(s.dtype, s.length, s.initialBytes);
  const state = describeInitialState(initial, T0 - 1);
  const baseline = buildInitialVector(s.dtype, s.length, state.fillValue, state.initialState);
  const chunks: TensorChunk[] = [];
  const sink = { onChunk: (chunk: TensorChunk) => void chunks.push(chunk) };
  const muxer = s.sparse
    ? new SparseTensorMultiplexer(sink, {
      dtype: s.dtype,
      length: s.length,
      baseline,
      gapMergeThreshold: s.gap,
    })
    : new CompleteTensorMultiplexer(sink, { dtype: s.dtype, length: s.length });
  const expected = new Map<number, TensorArray>();
  let current = baseline.slice();
  for (const step of s.steps) {
    const ts = T0 + step.slot * 1000;
    current = current.slice();
    for (const change of step.changes) applyChange(s.dtype, current, change);
    await muxer.process(current.slice() as never, ts);
    expected.set(ts, current.slice());
  }
  return { chunks, expected, baseline };
}

/** Delivers in a random order; with `keepPerTimestamp`, chunks of one timestamp stay in order. */
function shuffle(chunks: TensorChunk[], picks: number[], keepPerTimestamp: boolean): TensorChunk[] {
  if (!keepPerTimestamp) {
    const out = chunks.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = picks[i % picks.length] % (i + 1);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
  const queues = new Map<number, TensorChunk[]>();
  for (const chunk of chunks) {
    const queue = queues.get(chunk.timestamp) ?? [];
    queue.push(chunk);
    queues.set(chunk.timestamp, queue);
  }
  const open = [...queues.values()];
  const out: TensorChunk[] = [];
  let k = 0;
  while (open.length > 0) {
    const q = picks[k++ % picks.length] % open.length;
    out.push(open[q].shift()!);
    if (open[q].length === 0) open.splice(q, 1);
  }
  return out;
}

async function check(s: Scenario, keepPerTimestamp: boolean): Promise<void> {
  const { chunks, expected, baseline } = await send(s);
  const demuxer = new TensorDemuxer({ onTensorChanged() {} }, {
    dtype: s.dtype,
    length: s.length,
    baseline: baseline as never,
  });
  for (const chunk of shuffle(chunks, s.picks, keepPerTimestamp)) await demuxer.receive(chunk);
  for (const [ts, values] of expected) {
    const rebuilt = demuxer.getTensorAt(ts);
    // A snapshot equal to its predecessor sends nothing; the receiver then has no
    // keyframe for it, and its value is the state at the newest earlier keyframe.
    const actual = rebuilt ?? stateBefore(demuxer, ts, baseline);
    assertEquals(
      Array.from(bytesOf(actual)),
      Array.from(bytesOf(values)),
      `${s.dtype}[${s.length}] at T0+${ts - T0}`,
    );
  }
}

function stateBefore(demuxer: TensorDemuxer, ts: number, baseline: TensorArray): TensorArray {
  const i = demuxer.keyframeIndexAtOrBefore(ts);
  return i < 0 ? baseline : demuxer.keyframeValues(i);
}

Deno.test("multiplexer to demuxer, every dtype", async (t) => {
  await t.step(
    "rebuilds every timestamp exactly with replaced timestamps, chunks shuffled across timestamps (500 runs)",
    async () => {
      await fc.assert(
        fc.asyncProperty(scenario(false), (s) => check(s, true)),
        { numRuns: 500, seed: SEED },
      );
    },
  );

  await t.step(
    "rebuilds every timestamp exactly from a full shuffle when no timestamp is replaced (500 runs)",
    async () => {
      await fc.assert(
        fc.asyncProperty(scenario(true), (s) => check(s, false)),
        { numRuns: 500, seed: SEED + 1 },
      );
    },
  );
});
