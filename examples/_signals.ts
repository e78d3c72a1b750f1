/**
 * The demo's synthetic sensors (private): a 6-axis IMU and a 64×64 depth
 * camera, plus a delivery schedule that jitters and reorders samples the way
 * a real link does.
 *
 * @module
 */

/** A small seeded PRNG (mulberry32): the same seed gives the same demo. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard gravity, m/s². */
const G = 9.80665;

/**
 * Writes the IMU reading at `micros` into `out`: accelerometer x, y, z
 * (m/s², gravity on z while the body sways) and gyroscope x, y, z (rad/s),
 * with a little sensor noise.
 */
export function imuSample(
  micros: number,
  phase: number,
  random: () => number,
  out: Float32Array,
): void {
  const s = micros / 1e6 + phase;
  const roll = 0.25 * Math.sin(2 * Math.PI * 0.2 * s);
  const pitch = 0.15 * Math.sin(2 * Math.PI * 0.13 * s + 1);
  const noise = () => (random() - 0.5) * 0.04;
  out[0] = G * Math.sin(pitch) + 0.6 * Math.sin(2 * Math.PI * 1.7 * s) + noise();
  out[1] = -G * Math.sin(roll) * Math.cos(pitch) + noise();
  out[2] = G * Math.cos(roll) * Math.cos(pitch) + noise();
  out[3] = 2 * Math.PI * 0.2 * 0.25 * Math.cos(2 * Math.PI * 0.2 * s) + noise();
  out[4] = 2 * Math.PI * 0.13 * 0.15 * Math.cos(2 * Math.PI * 0.13 * s + 1) + noise();
  out[5] = 0.3 * Math.sin(2 * Math.PI * 0.05 * s) + noise();
}

/** The depth camera's resolution. */
export const DEPTH_WIDTH = 64;
/** The depth camera's resolution. */
export const DEPTH_HEIGHT = 64;

/**
 * Writes the depth frame at `micros` into `out` (millimetres, row-major): a
 * tilted wall about 2 m away with a ball orbiting in front of it. Only the
 * ball's neighbourhood changes from frame to frame, so sparse diffs pay off.
 */
export function depthFrame(micros: number, phase: number, out: Int16Array): void {
  const s = micros / 1e6 + phase;
  const cx = 32 + 18 * Math.cos(2 * Math.PI * 0.25 * s);
  const cy = 32 + 12 * Math.sin(2 * Math.PI * 0.25 * s);
  const radius = 9;
  for (let y = 0; y < DEPTH_HEIGHT; y++) {
    for (let x = 0; x < DEPTH_WIDTH; x++) {
      const wall = 2000 + 8 * x + 3 * y;
      const dx = x - cx;
      const dy = y - cy;
      const d2 = dx * dx + dy * dy;
      out[y * DEPTH_WIDTH + x] = d2 < radius * radius
        ? Math.round(900 - 40 * Math.sqrt(radius * radius - d2))
        : wall;
    }
  }
}

/** A sample waiting for its (jittered) delivery time. */
interface Pending {
  readonly due: number;
  readonly timestamp: number;
}

/**
 * Sample times every `periodMicros`, each delivered after a random delay of
 * up to `jitterMicros`: taken in delivery order, neighbours arrive out of
 * timestamp order as they do over a busy link.
 */
export class JitteredSchedule {
  readonly #period: number;
  readonly #jitter: number;
  readonly #random: () => number;
  #next: number;
  readonly #pending: Pending[] = [];

  constructor(
    startMicros: number,
    periodMicros: number,
    jitterMicros: number,
    random: () => number,
  ) {
    this.#period = periodMicros;
    this.#jitter = jitterMicros;
    this.#random = random;
    this.#next = startMicros;
  }

  /** The sample timestamps due for delivery at `nowMicros`, in delivery order. */
  due(nowMicros: number): number[] {
    while (this.#next <= nowMicros) {
      this.#pending.push({
        timestamp: this.#next,
        due: this.#next + Math.floor(this.#random() * this.#jitter),
      });
      this.#next += this.#period;
    }
    this.#pending.sort((a, b) => a.due - b.due);
    let n = 0;
    while (n < this.#pending.length && this.#pending[n].due <= nowMicros) n++;
    return this.#pending.splice(0, n).map((p) => p.timestamp);
  }
}
