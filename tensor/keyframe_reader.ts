/**
 * Read access to a demuxer's rebuilt snapshots, for smoothing and lookups.
 *
 * @module
 */

import type { TensorArray } from "./dtype.ts";

/**
 * The rebuilt snapshots ("keyframes") a demuxer holds, in timestamp order.
 * Arrays returned are the demuxer's own storage: read them, never write them,
 * and copy what you keep, since later chunks may change them.
 */
export interface KeyframeReader<A extends TensorArray = TensorArray> {
  /** The flat vector length. */
  readonly tensorLength: number;
  /** The number of keyframes held. */
  readonly keyframeCount: number;
  /** The timestamp of keyframe `i` (0 is the oldest). */
  keyframeTime(i: number): number;
  /** The full vector of keyframe `i` (read-only by contract). */
  keyframeValues(i: number): A;
  /** The index of the newest keyframe at or before `timestamp`, or -1. */
  keyframeIndexAtOrBefore(timestamp: number): number;
}
