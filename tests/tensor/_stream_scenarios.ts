/**
 * The spec tensor.md §6.10 scenarios shared by the tensor-stream tests:
 * snapshots in submission order, as [time offset, values].
 *
 * @module
 */

/** One scenario: its name and its snapshots in the order they are submitted. */
export type StreamScenario = [name: string, steps: [at: number, values: number[]][]];

/** Scenarios 1–5 and 7 (6, the window expiry, has its own test). */
export const STREAM_SCENARIOS: readonly StreamScenario[] = [
  ["1. one snapshot", [[1, [1, 2, 3, 4]]]],
  ["2. two snapshots, the first unchanged by the second", [[1, [1, 1, 1]], [2, [1, 2, 1]]]],
  ["3. a late middle snapshot", [[1, [1, 1, 1, 1]], [3, [3, 3, 3, 3]], [2, [2, 2, 2, 2]]]],
  ["4. a late first snapshot", [[2, [1, 2, 3, 4, 5]], [1, [1, 4, 4, 4, 4]]]],
  ["5. one late among four", [[1, [1, 1, 1]], [3, [3, 3, 3]], [4, [4, 4, 4]], [2, [2, 2, 2]]]],
  ["7. a replaced first snapshot", [
    [1, [1, 1, 1]],
    [2, [2, 2, 2]],
    [3, [3, 3, 3]],
    [4, [4, 4, 4]],
    [1, [1, 5, 1]],
  ]],
];
