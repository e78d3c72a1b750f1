/**
 * LZ4 frame codec for `TensorChunk.compression = LZ4`.
 *
 * {@link compressFrame} produces exactly the bytes that python-lz4's
 * `lz4.frame.compress(data)` produces with its defaults (liblz4's
 * `LZ4F_compressFrame` at compression level 0: the fast block compressor with
 * acceleration 1, 64 KiB blocks, linked blocks when the input needs more than
 * one block, the content size stored, no checksums). Byte-exact output lets a
 * Deno peer and a Python peer produce identical chunks, which the golden
 * vectors check.
 *
 * {@link decompressFrame} reads any LZ4 frame (independent or linked blocks,
 * stored blocks, block and content checksums, every block maximum size,
 * skippable frames, concatenated frames) and rejects malformed input with an
 * {@link Lz4FormatError}, never reading or writing out of bounds and never
 * producing more than `maxOutputBytes`.
 *
 * @module
 */

// ---------------------------------------------------------------------------
// Errors and options
// ---------------------------------------------------------------------------

/**
 * Thrown by {@link decompressFrame} when its input is not a well-formed LZ4
 * frame, or would decode to more than the allowed number of bytes. The message
 * says what was wrong, where, and what was expected.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decompressFrame, Lz4FormatError } from "./_lz4.ts";
 *
 * assert.throws(() => decompressFrame(new Uint8Array([1, 2, 3, 4, 5, 6, 7])), Lz4FormatError);
 * ```
 */
export class Lz4FormatError extends Error {
  /** Creates the error with a message that says what was wrong and what was expected. */
  constructor(message: string) {
    super(message);
    this.name = "Lz4FormatError";
  }
}

/** Options for {@link compressFrame}. */
export interface Lz4CompressOptions {
  /**
   * Store the input's length in the frame header (the frame descriptor's
   * content size field), as python-lz4 does by default. An empty input never
   * stores it, again like python-lz4.
   *
   * @default {true}
   */
  contentSize?: boolean;
}

/** Options for {@link decompressFrame}. */
export interface Lz4DecompressOptions {
  /**
   * The largest number of bytes the whole input (all of its frames) may decode
   * to; a frame that declares or produces more is rejected with an
   * {@link Lz4FormatError} before the excess is allocated. Defeats
   * decompression bombs.
   *
   * @default {268435456} (256 MiB)
   */
  maxOutputBytes?: number;
}

// ---------------------------------------------------------------------------
// XXH32
// ---------------------------------------------------------------------------

const PRIME32_1 = 0x9e3779b1 | 0;
const PRIME32_2 = 0x85ebca77 | 0;
const PRIME32_3 = 0xc2b2ae3d | 0;
const PRIME32_4 = 0x27d4eb2f | 0;
const PRIME32_5 = 0x165667b1 | 0;

function read32(b: Uint8Array, i: number): number {
  return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
}

function xxhRound(acc: number, input: number): number {
  acc = (acc + Math.imul(input, PRIME32_2)) | 0;
  acc = (acc << 13) | (acc >>> 19);
  return Math.imul(acc, PRIME32_1);
}

/**
 * The 32-bit xxHash (XXH32) of `data`, as an unsigned integer. LZ4 frames use
 * it with seed 0 for the header, block and content checksums.
 *
 * @param data The bytes to hash.
 * @param seed The seed, taken modulo 2^32.
 * @returns The hash, in 0..0xFFFFFFFF.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { xxh32 } from "./_lz4.ts";
 *
 * assert.equal(xxh32(new Uint8Array(0)), 0x02cc5d05);
 * ```
 */
export function xxh32(data: Uint8Array, seed = 0): number {
  const len = data.length;
  seed = seed | 0;
  let p = 0;
  let h: number;
  if (len >= 16) {
    let v1 = (seed + PRIME32_1 + PRIME32_2) | 0;
    let v2 = (seed + PRIME32_2) | 0;
    let v3 = seed;
    let v4 = (seed - PRIME32_1) | 0;
    const limit = len - 16;
    while (p <= limit) {
      v1 = xxhRound(v1, read32(data, p));
      v2 = xxhRound(v2, read32(data, p + 4));
      v3 = xxhRound(v3, read32(data, p + 8));
      v4 = xxhRound(v4, read32(data, p + 12));
      p += 16;
    }
    h = (((v1 << 1) | (v1 >>> 31)) + ((v2 << 7) | (v2 >>> 25)) + ((v3 << 12) | (v3 >>> 20)) +
      ((v4 << 18) | (v4 >>> 14))) | 0;
  } else {
    h = (seed + PRIME32_5) | 0;
  }
  h = (h + len) | 0;
  while (p + 4 <= len) {
    h = (h + Math.imul(read32(data, p), PRIME32_3)) | 0;
    h = Math.imul((h << 17) | (h >>> 15), PRIME32_4);
    p += 4;
  }
  while (p < len) {
    h = (h + Math.imul(data[p], PRIME32_5)) | 0;
    h = Math.imul((h << 11) | (h >>> 21), PRIME32_1);
    p++;
  }
  h ^= h >>> 15;
  h = Math.imul(h, PRIME32_2);
  h ^= h >>> 13;
  h = Math.imul(h, PRIME32_3);
  h ^= h >>> 16;
  return h >>> 0;
}

// ---------------------------------------------------------------------------
// Frame constants
// ---------------------------------------------------------------------------

const FRAME_MAGIC = 0x184d2204;
const SKIPPABLE_MAGIC_BASE = 0x184d2a50;
const LEGACY_MAGIC = 0x184c2102;
const FLG_VERSION = 0x40;
const FLG_BLOCK_INDEPENDENT = 0x20;
const FLG_BLOCK_CHECKSUM = 0x10;
const FLG_CONTENT_SIZE = 0x08;
const FLG_CONTENT_CHECKSUM = 0x04;
const FLG_RESERVED = 0x02;
const FLG_DICT_ID = 0x01;
const BLOCK_UNCOMPRESSED = 0x80000000;
const BLOCK_SIZE = 64 * 1024; // the default and only block size the compressor uses
const BD_64K = 4 << 4;
const DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024 * 1024;
/** liblz4's LZ4_MAX_INPUT_SIZE; the stream's offsets stay below 2 GiB without renormalising. */
const MAX_INPUT_BYTES = 0x7e000000;
/** The largest maxOutputBytes accepted: 4 GiB. */
const MAX_OUTPUT_LIMIT = 2 ** 32;

// ---------------------------------------------------------------------------
// Block compressor: liblz4's LZ4_compress_generic (fast, acceleration 1) as
// built on 64-bit little-endian machines, for the two cases LZ4F uses:
//  - one independent block of less than 64 KiB + 11 bytes, no dictionary:
//    byU16 table with the 4-byte hash on hashLog 13;
//  - linked 64 KiB blocks from one contiguous source (LZ4_compress_fast_continue,
//    prefix mode): byU32 table with the 5-byte hash on hashLog 12, indices
//    relative to the start of the frame's input, matches at most 65535 back.
// In both cases table indices equal positions in the frame's input, and the
// lowest position a match may catch up to is the start of that input.
// Output is limited to `srcSize - 1` bytes, with liblz4's (conservative) bound
// checks; when they fail the block is stored uncompressed.
// ---------------------------------------------------------------------------

const HASH_LOG = 12; // LZ4_MEMORY_USAGE 14: a 16 KiB table
const MINMATCH = 4;
const LASTLITERALS = 5;
const MFLIMIT = 12;
const MIN_LENGTH = MFLIMIT + 1;
const SKIP_TRIGGER = 6;
const MAX_DISTANCE = 65535;
const ML_MASK = 15;
const RUN_MASK = 15;
const HASH4_PRIME = 0x9e3779b1 | 0; // 2654435761
/** 889523592379, the 5-byte hash prime, split in 20-bit halves for exact double arithmetic. */
const HASH5_PRIME_LO = 889523592379 % 0x100000;
const HASH5_PRIME_HI = Math.floor(889523592379 / 0x100000);

/** byU16 table: 2^13 entries (hashLog + 1), indices below 64 KiB. */
const tableU16 = new Uint16Array(1 << (HASH_LOG + 1));
/** byU32 table: 2^12 entries. */
const tableU32 = new Uint32Array(1 << HASH_LOG);

/** The 4-byte hash of the byU16 table: `(seq * 2654435761) >> (32 - 13)`. */
function hash4(dv: DataView, p: number): number {
  return Math.imul(dv.getInt32(p, true), HASH4_PRIME) >>> (32 - (HASH_LOG + 1));
}

/**
 * The 5-byte hash of the byU32 table on 64-bit little-endian machines:
 * `((read64(p) << 24) * 889523592379) >> (64 - 12)` in wrapping 64-bit
 * arithmetic. Only the low 5 bytes of the read survive the shift, and bits
 * 52..63 of `(x << 24) * P mod 2^64` are bits 28..39 of `x * P mod 2^40`.
 * With x and P split in 20-bit halves that is `x0*p0 + 2^20 * (x0*p1 + x1*p0)`
 * mod 2^40: the first product is exact as a double, and only the low 20 bits
 * of the middle sum matter, which `Math.imul` gives exactly.
 */
function hash5(dv: DataView, p: number): number {
  const seq = dv.getInt32(p, true);
  const x0 = seq & 0xfffff;
  const x1 = (seq >>> 20) | (dv.getUint8(p + 4) << 12);
  const y = x0 * HASH5_PRIME_LO +
    ((Math.imul(x0, HASH5_PRIME_HI) + Math.imul(x1, HASH5_PRIME_LO)) & 0xfffff) * 0x100000;
  return (y / 0x10000000) & 0xfff;
}

/** Copies `n` bytes; short runs byte by byte, long ones with `set`. */
function copyBytes(dst: Uint8Array, d: number, src: Uint8Array, s: number, n: number): void {
  if (n < 32) {
    for (let i = 0; i < n; i++) dst[d + i] = src[s + i];
  } else {
    dst.set(src.subarray(s, s + n), d);
  }
}

/**
 * Compresses `src[start..end)` (`dv` views `src`) into `dst` from `op0`, never past `olimit`
 * (liblz4's `limitedOutput` checks). Returns the compressed size, or 0 when
 * the block does not fit (the caller then stores it uncompressed). The hash
 * table must hold the state liblz4's would at this point.
 */
function compressBlock(
  src: Uint8Array,
  dv: DataView,
  start: number,
  end: number,
  dst: Uint8Array,
  op0: number,
  olimit: number,
  u16: boolean,
): number {
  let op = op0;
  let anchor = start;
  const mflimitPlusOne = end - MFLIMIT + 1;
  const matchlimit = end - LASTLITERALS;

  if (end - start >= MIN_LENGTH) {
    let ip = start;
    let forwardH: number;
    if (u16) {
      tableU16[hash4(dv, ip)] = ip;
      ip++;
      forwardH = hash4(dv, ip);
    } else {
      tableU32[hash5(dv, ip)] = ip;
      ip++;
      forwardH = hash5(dv, ip);
    }

    main: for (;;) {
      let match = 0;

      // Find a match, stepping faster the longer nothing is found.
      let forwardIp = ip;
      let step = 1;
      let searchMatchNb = 1 << SKIP_TRIGGER;
      let found = false;
      do {
        const h = forwardH;
        const current = forwardIp;
        ip = forwardIp;
        forwardIp += step;
        step = searchMatchNb++ >> SKIP_TRIGGER;
        if (forwardIp > mflimitPlusOne) break main;
        if (u16) {
          match = tableU16[h];
          forwardH = hash4(dv, forwardIp);
          tableU16[h] = current;
        } else {
          match = tableU32[h];
          forwardH = hash5(dv, forwardIp);
          tableU32[h] = current;
          if (match + MAX_DISTANCE < current) continue; // too far back
        }
        found = dv.getInt32(match, true) === dv.getInt32(ip, true);
      } while (!found);

      // Catch up: extend the match backwards over equal bytes.
      while (ip > anchor && match > 0 && src[ip - 1] === src[match - 1]) {
        ip--;
        match--;
      }

      // Encode the literals.
      let token: number;
      {
        const litLength = ip - anchor;
        token = op++;
        if (op + litLength + (2 + 1 + LASTLITERALS) + ((litLength / 255) | 0) > olimit) return 0;
        if (litLength >= RUN_MASK) {
          let len = litLength - RUN_MASK;
          dst[token] = RUN_MASK << 4;
          for (; len >= 255; len -= 255) dst[op++] = 255;
          dst[op++] = len;
        } else {
          dst[token] = litLength << 4;
        }
        copyBytes(dst, op, src, anchor, litLength);
        op += litLength;
      }

      // Encode matches; after each, test whether the next position starts
      // another one at once (then it gets a token with no literals).
      let again = false;
      do {
        // Encode the offset.
        const offset = ip - match;
        dst[op++] = offset & 0xff;
        dst[op++] = offset >>> 8;

        // Count and encode the match length.
        let matchCode = 0;
        {
          let a = ip + MINMATCH;
          let b = match + MINMATCH;
          const limit4 = matchlimit - 3;
          while (a < limit4 && dv.getInt32(a, true) === dv.getInt32(b, true)) {
            a += 4;
            b += 4;
          }
          while (a < matchlimit && src[a] === src[b]) {
            a++;
            b++;
          }
          matchCode = a - (ip + MINMATCH);
          ip = a;
        }
        if (op + (1 + LASTLITERALS) + (((matchCode + 240) / 255) | 0) > olimit) return 0;
        if (matchCode >= ML_MASK) {
          dst[token] += ML_MASK;
          matchCode -= ML_MASK;
          for (; matchCode >= 255; matchCode -= 255) dst[op++] = 255;
          dst[op++] = matchCode;
        } else {
          dst[token] += matchCode;
        }

        anchor = ip;
        if (ip >= mflimitPlusOne) break main;

        // Fill the table with ip - 2, then test whether ip starts a match at once.
        if (u16) {
          tableU16[hash4(dv, ip - 2)] = ip - 2;
          const h = hash4(dv, ip);
          match = tableU16[h];
          tableU16[h] = ip;
          again = dv.getInt32(match, true) === dv.getInt32(ip, true);
        } else {
          tableU32[hash5(dv, ip - 2)] = ip - 2;
          const h = hash5(dv, ip);
          match = tableU32[h];
          tableU32[h] = ip;
          again = match + MAX_DISTANCE >= ip &&
            dv.getInt32(match, true) === dv.getInt32(ip, true);
        }
        if (again) {
          token = op++;
          dst[token] = 0;
        }
      } while (again);

      // Prepare the next search.
      ip++;
      forwardH = u16 ? hash4(dv, ip) : hash5(dv, ip);
    }
  }

  // The last literals.
  const lastRun = end - anchor;
  if (op + lastRun + 1 + (((lastRun + 255 - RUN_MASK) / 255) | 0) > olimit) return 0;
  if (lastRun >= RUN_MASK) {
    let acc = lastRun - RUN_MASK;
    dst[op++] = RUN_MASK << 4;
    for (; acc >= 255; acc -= 255) dst[op++] = 255;
    dst[op++] = acc;
  } else {
    dst[op++] = lastRun << 4;
  }
  copyBytes(dst, op, src, anchor, lastRun);
  op += lastRun;
  return op - op0;
}

// ---------------------------------------------------------------------------
// Frame compressor
// ---------------------------------------------------------------------------

/** Output buffers up to this size are kept between calls; larger ones are not. */
const SCRATCH_KEEP_BYTES = 4 * 1024 * 1024 + 1024;
let scratch = new Uint8Array(0);

function writeLE32(b: Uint8Array, p: number, v: number): void {
  b[p] = v & 0xff;
  b[p + 1] = (v >>> 8) & 0xff;
  b[p + 2] = (v >>> 16) & 0xff;
  b[p + 3] = (v >>> 24) & 0xff;
}

/**
 * Compresses `data` into one LZ4 frame, byte for byte as python-lz4's
 * `lz4.frame.compress(data)` does with its default settings: 64 KiB blocks
 * (linked when there is more than one), the content size in the header (unless
 * `options.contentSize` is false or the input is empty), no block or content
 * checksum, and blocks that would not shrink stored uncompressed.
 *
 * @param data The bytes to compress (at most 2,113,929,216 bytes).
 * @param options See {@link Lz4CompressOptions}.
 * @returns A new array holding the frame.
 * @throws {TypeError} If `data` is not a `Uint8Array`.
 * @throws {RangeError} If `data` is larger than liblz4 accepts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compressFrame, decompressFrame } from "./_lz4.ts";
 *
 * const raw = new TextEncoder().encode("tsercom tsercom tsercom ");
 * const frame = compressFrame(raw);
 * assert.equal(frame.length, 40);
 * assert.deepEqual(decompressFrame(frame), raw);
 * ```
 */
export function compressFrame(data: Uint8Array, options: Lz4CompressOptions = {}): Uint8Array {
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot compress as 'data' must be a Uint8Array: current value is ${describe(data)}`,
    );
  }
  const n = data.length;
  if (n > MAX_INPUT_BYTES) {
    throw new RangeError(
      `Cannot compress as 'data' must be at most ${MAX_INPUT_BYTES} bytes: current length is ${n}`,
    );
  }
  const storeSize = (options.contentSize ?? true) && n > 0;
  const linked = n > BLOCK_SIZE;
  const blocks = Math.ceil(n / BLOCK_SIZE);
  const bound = 4 + 2 + 8 + 1 + 4 * blocks + n + 4;
  let out: Uint8Array;
  if (bound <= scratch.length) {
    out = scratch;
  } else if (bound <= SCRATCH_KEEP_BYTES) {
    out = scratch = new Uint8Array(
      Math.max(bound, Math.min(SCRATCH_KEEP_BYTES, scratch.length * 2)),
    );
  } else {
    out = new Uint8Array(bound);
  }

  // Header: magic, descriptor, header checksum.
  writeLE32(out, 0, FRAME_MAGIC);
  out[4] = FLG_VERSION | (linked ? 0 : FLG_BLOCK_INDEPENDENT) | (storeSize ? FLG_CONTENT_SIZE : 0);
  out[5] = BD_64K;
  let op = 6;
  if (storeSize) {
    writeLE32(out, 6, n >>> 0);
    writeLE32(out, 10, Math.floor(n / 0x100000000));
    op = 14;
  }
  out[op] = (xxh32(out.subarray(4, op)) >>> 8) & 0xff;
  op++;

  // Blocks. A fresh liblz4 context starts with a zeroed table.
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (linked) tableU32.fill(0);
  else if (n > 0) tableU16.fill(0);
  for (let start = 0; start < n; start += BLOCK_SIZE) {
    const end = Math.min(n, start + BLOCK_SIZE);
    const size = end - start;
    const cSize = compressBlock(data, dv, start, end, out, op + 4, op + 4 + size - 1, !linked);
    if (cSize === 0) {
      writeLE32(out, op, (size | BLOCK_UNCOMPRESSED) >>> 0);
      out.set(data.subarray(start, end), op + 4);
      op += 4 + size;
    } else {
      writeLE32(out, op, cSize);
      op += 4 + cSize;
    }
  }

  // End mark.
  writeLE32(out, op, 0);
  op += 4;
  return out === scratch || op !== out.length ? out.slice(0, op) : out;
}

// ---------------------------------------------------------------------------
// Decompression
// ---------------------------------------------------------------------------

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "object";
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function hex32(v: number): string {
  return "0x" + (v >>> 0).toString(16).padStart(8, "0");
}

/**
 * Decodes one LZ4 block `src[ip..iend)` into `out` from `op`. Matches may
 * reach back to `lowest`: the start of the block when the frame's blocks are
 * independent, else the start of the frame's output. Returns the new output
 * position, or -1 if the block would write past `olimit` (the caller says
 * which limit that was).
 */
function decodeBlock(
  src: Uint8Array,
  ip: number,
  iend: number,
  out: Uint8Array,
  op: number,
  olimit: number,
  lowest: number,
  independent: boolean,
): number {
  for (;;) {
    if (ip >= iend) {
      throw new Lz4FormatError(
        `Truncated LZ4 block: it ends at input offset ${ip} after a match, but a block must end ` +
          `with a literal-only sequence`,
      );
    }
    const token = src[ip++];

    // Literals.
    let litLen = token >>> 4;
    if (litLen === RUN_MASK) {
      let b: number;
      do {
        if (ip >= iend) {
          throw new Lz4FormatError(
            `Truncated LZ4 block: the literal length runs past the end of the block at input ` +
              `offset ${ip}`,
          );
        }
        b = src[ip++];
        litLen += b;
      } while (b === 255);
    }
    if (litLen > iend - ip) {
      throw new Lz4FormatError(
        `LZ4 literal run of ${litLen} bytes at input offset ${ip} runs past the end of its ` +
          `block: only ${iend - ip} bytes are left`,
      );
    }
    if (litLen > olimit - op) return -1;
    if (litLen < 16) {
      for (let i = 0; i < litLen; i++) out[op + i] = src[ip + i];
    } else {
      out.set(src.subarray(ip, ip + litLen), op);
    }
    ip += litLen;
    op += litLen;
    if (ip === iend) return op;

    // Match.
    if (iend - ip < 2) {
      throw new Lz4FormatError(
        `Truncated LZ4 block: a match offset at input offset ${ip} needs 2 bytes, but only ` +
          `${iend - ip} is left`,
      );
    }
    const offset = src[ip] | (src[ip + 1] << 8);
    if (offset === 0) {
      throw new Lz4FormatError(
        `Bad LZ4 match at input offset ${ip}: the offset is 0, but it must be at least 1`,
      );
    }
    ip += 2;
    if (offset > op - lowest) {
      throw new Lz4FormatError(
        `Bad LZ4 match at input offset ${ip - 2}: offset ${offset} points before the start of ` +
          `the ${independent ? "block (the frame's blocks are independent)" : "frame's output"}; ` +
          `at most ${op - lowest} is valid there`,
      );
    }
    let matchLen = (token & ML_MASK) + MINMATCH;
    if ((token & ML_MASK) === ML_MASK) {
      let b: number;
      do {
        if (ip >= iend) {
          throw new Lz4FormatError(
            `Truncated LZ4 block: the match length runs past the end of the block at input ` +
              `offset ${ip}`,
          );
        }
        b = src[ip++];
        matchLen += b;
      } while (b === 255);
    }
    if (matchLen > olimit - op) return -1;
    let from = op - offset;
    if (offset >= matchLen) {
      if (matchLen < 32) {
        for (let i = 0; i < matchLen; i++) out[op + i] = out[from + i];
      } else {
        out.copyWithin(op, from, from + matchLen);
      }
      op += matchLen;
    } else if (offset === 1) {
      out.fill(out[from], op, op + matchLen);
      op += matchLen;
    } else if (matchLen < 64) {
      const stop = op + matchLen;
      while (op < stop) out[op++] = out[from++];
    } else {
      // Overlapping copy of a repeating pattern: copy it in chunks that double.
      const stop = op + matchLen;
      while (op < stop) {
        const chunk = Math.min(stop - op, op - from);
        out.copyWithin(op, from, from + chunk);
        op += chunk;
      }
    }
  }
}

/** The growable output of {@link decompressFrame}. */
interface Output {
  buf: Uint8Array;
  len: number;
}

function ensureCapacity(out: Output, needed: number, hardMax: number): void {
  if (needed <= out.buf.length) return;
  const size = Math.min(hardMax, Math.max(needed, out.buf.length * 2, 65536));
  const buf = new Uint8Array(size);
  buf.set(out.buf.subarray(0, out.len));
  out.buf = buf;
}

function truncated(what: string, at: number, needed: number, have: number): Lz4FormatError {
  return new Lz4FormatError(
    `Truncated LZ4 frame: ${what} at input offset ${at} needs ${needed} bytes, but only ` +
      `${have} ${have === 1 ? "is" : "are"} left`,
  );
}

/**
 * Decodes the LZ4 frame whose magic number is at `pos` (already checked),
 * appending to `out`. Returns the input offset just past the frame.
 */
function decodeFrame(src: Uint8Array, pos: number, out: Output, maxOut: number): number {
  const frameStart = pos;
  const n = src.length;
  pos += 4;
  if (n - pos < 3) truncatedHeader(frameStart, n - pos);
  const flg = src[pos];
  const bd = src[pos + 1];
  if ((flg >>> 6) !== 1) {
    throw new Lz4FormatError(
      `Unsupported LZ4 frame version ${flg >>> 6} in the FLG byte at input offset ${pos}: ` +
        `expected version 1`,
    );
  }
  if (flg & FLG_RESERVED) {
    throw new Lz4FormatError(
      `Bad LZ4 frame descriptor: reserved bit 1 of the FLG byte (0x${hex8(flg)}) at input ` +
        `offset ${pos} is set; it must be 0`,
    );
  }
  if (flg & FLG_DICT_ID) {
    throw new Lz4FormatError(
      `Unsupported LZ4 frame at input offset ${frameStart}: it needs a dictionary (the FLG ` +
        `dictionary ID flag is set), and decompressing with dictionaries is not supported`,
    );
  }
  if (bd & 0x8f) {
    throw new Lz4FormatError(
      `Bad LZ4 frame descriptor: reserved bits of the BD byte (0x${hex8(bd)}) at input offset ` +
        `${pos + 1} are set; only bits 4-6 may be`,
    );
  }
  const bsid = bd >>> 4;
  if (bsid < 4) {
    throw new Lz4FormatError(
      `Bad LZ4 frame descriptor: block maximum size code ${bsid} in the BD byte at input offset ` +
        `${pos + 1}; expected 4 (64 KiB), 5 (256 KiB), 6 (1 MiB) or 7 (4 MiB)`,
    );
  }
  const blockMax = 1 << (2 * bsid + 8);
  const independent = (flg & FLG_BLOCK_INDEPENDENT) !== 0;
  const blockChecksum = (flg & FLG_BLOCK_CHECKSUM) !== 0;
  const hasContentSize = (flg & FLG_CONTENT_SIZE) !== 0;
  const contentChecksum = (flg & FLG_CONTENT_CHECKSUM) !== 0;
  const descriptorLength = 2 + (hasContentSize ? 8 : 0);
  if (n - pos < descriptorLength + 1) truncatedHeader(frameStart, n - pos);

  let contentSize = -1;
  if (hasContentSize) {
    const lo = read32(src, pos + 2) >>> 0;
    const hi = read32(src, pos + 6) >>> 0;
    const room = maxOut - out.len;
    if (hi >= 0x200000 || hi * 0x100000000 + lo > room) {
      const declared = (BigInt(hi) << 32n) | BigInt(lo);
      throw new Lz4FormatError(
        `LZ4 frame at input offset ${frameStart} declares a content size of ${declared} bytes, ` +
          `more than the ${room} bytes left under maxOutputBytes (${maxOut})`,
      );
    }
    contentSize = hi * 0x100000000 + lo;
  }
  const expectedHc = (xxh32(src.subarray(pos, pos + descriptorLength)) >>> 8) & 0xff;
  const hc = src[pos + descriptorLength];
  if (hc !== expectedHc) {
    throw new Lz4FormatError(
      `LZ4 frame header checksum mismatch at input offset ${pos + descriptorLength}: the byte ` +
        `is 0x${hex8(hc)}, but the descriptor hashes to 0x${hex8(expectedHc)}`,
    );
  }
  pos += descriptorLength + 1;

  const outStart = out.len;
  // The hard limit on this frame's output: maxOutputBytes, and the content size if declared.
  const frameLimit = contentSize >= 0 ? outStart + contentSize : maxOut;
  if (contentSize >= 0 && out.buf.length < frameLimit && contentSize <= (n - pos) * 255 + 64) {
    // A plausible declared size: allocate it at once (exactly, for a single frame).
    ensureCapacity(out, frameLimit, out.buf.length === 0 ? frameLimit : maxOut);
  }

  for (;;) {
    if (n - pos < 4) throw truncated("a block size", pos, 4, n - pos);
    const word = read32(src, pos) >>> 0;
    pos += 4;
    if (word === 0) break; // end mark
    const stored = word >= BLOCK_UNCOMPRESSED;
    const size = stored ? word - BLOCK_UNCOMPRESSED : word;
    if (size > blockMax) {
      throw new Lz4FormatError(
        `LZ4 block at input offset ${pos - 4} is ${size} bytes, larger than the frame's ` +
          `declared block maximum size of ${blockMax} bytes`,
      );
    }
    const need = size + (blockChecksum ? 4 : 0);
    if (n - pos < need) throw truncated(`a ${size}-byte block`, pos, need, n - pos);
    if (blockChecksum) {
      const expected = read32(src, pos + size) >>> 0;
      const actual = xxh32(src.subarray(pos, pos + size));
      if (expected !== actual) {
        throw new Lz4FormatError(
          `LZ4 block checksum mismatch for the block at input offset ${pos - 4}: stored ` +
            `${hex32(expected)}, but the block hashes to ${hex32(actual)}`,
        );
      }
    }

    const op = out.len;
    const limit = Math.min(op + blockMax, frameLimit, maxOut);
    let end: number;
    if (stored) {
      end = op + size <= limit ? op + size : -1;
      if (end >= 0) {
        ensureCapacity(out, end, maxOut);
        out.buf.set(src.subarray(pos, pos + size), op);
      }
    } else {
      ensureCapacity(out, limit, maxOut);
      end = decodeBlock(
        src,
        pos,
        pos + size,
        out.buf,
        op,
        limit,
        independent ? op : outStart,
        independent,
      );
    }
    if (end < 0) {
      if (limit === op + blockMax) {
        throw new Lz4FormatError(
          `LZ4 block at input offset ${pos - 4} decodes to more than the frame's declared ` +
            `block maximum size of ${blockMax} bytes`,
        );
      }
      if (limit === frameLimit && contentSize >= 0) {
        throw new Lz4FormatError(
          `LZ4 frame at input offset ${frameStart} decodes to more than its declared content ` +
            `size of ${contentSize} bytes`,
        );
      }
      throw new Lz4FormatError(
        `LZ4 input decodes to more than maxOutputBytes (${maxOut} bytes); the block at input ` +
          `offset ${pos - 4} goes past it`,
      );
    }
    out.len = end;
    pos += need;
  }

  if (contentChecksum) {
    if (n - pos < 4) throw truncated("the content checksum", pos, 4, n - pos);
    const expected = read32(src, pos) >>> 0;
    const actual = xxh32(out.buf.subarray(outStart, out.len));
    if (expected !== actual) {
      throw new Lz4FormatError(
        `LZ4 content checksum mismatch for the frame at input offset ${frameStart}: stored ` +
          `${hex32(expected)}, but the decoded content hashes to ${hex32(actual)}`,
      );
    }
    pos += 4;
  }
  if (contentSize >= 0 && out.len - outStart !== contentSize) {
    throw new Lz4FormatError(
      `LZ4 frame at input offset ${frameStart} declares a content size of ${contentSize} bytes, ` +
        `but its blocks decode to ${out.len - outStart} bytes`,
    );
  }
  return pos;
}

function hex8(v: number): string {
  return v.toString(16).padStart(2, "0");
}

function truncatedHeader(frameStart: number, have: number): never {
  throw new Lz4FormatError(
    `Truncated LZ4 frame header at input offset ${frameStart}: the descriptor and header ` +
      `checksum after the magic number need more than the ${have} bytes left`,
  );
}

/**
 * Decompresses LZ4 frame data: one frame, or several concatenated (their
 * contents are joined), with skippable frames (magic 0x184D2A50..0x184D2A5F)
 * skipped. Block and content checksums and the declared content size are
 * verified when present. Frames that need a dictionary are not supported.
 *
 * @param frame The frame bytes.
 * @param options See {@link Lz4DecompressOptions}.
 * @returns A new array holding the decompressed bytes.
 * @throws {Lz4FormatError} If the input is not well-formed LZ4 frame data or
 *   would decode to more than `options.maxOutputBytes`.
 * @throws {TypeError} If `frame` is not a `Uint8Array`.
 * @throws {RangeError} If `options.maxOutputBytes` is not a non-negative integer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decompressFrame } from "./_lz4.ts";
 *
 * // An empty frame made by python-lz4's lz4.frame.compress(b"").
 * const frame = new Uint8Array([0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82, 0, 0, 0, 0]);
 * assert.equal(decompressFrame(frame).length, 0);
 * ```
 */
export function decompressFrame(
  frame: Uint8Array,
  options: Lz4DecompressOptions = {},
): Uint8Array {
  if (!(frame instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot decompress as 'frame' must be a Uint8Array: current value is ${describe(frame)}`,
    );
  }
  const maxOut = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  if (!Number.isSafeInteger(maxOut) || maxOut < 0 || maxOut > MAX_OUTPUT_LIMIT) {
    throw new RangeError(
      `Cannot decompress as 'maxOutputBytes' must be an integer in 0..${MAX_OUTPUT_LIMIT}: ` +
        `current value is ${maxOut}`,
    );
  }
  const n = frame.length;
  if (n === 0) {
    throw new Lz4FormatError(
      "Truncated LZ4 frame: the input is empty, but a frame needs at least 11 bytes",
    );
  }
  const out: Output = { buf: new Uint8Array(0), len: 0 };
  let pos = 0;
  while (pos < n) {
    if (n - pos < 4) throw truncated("a magic number", pos, 4, n - pos);
    const magic = read32(frame, pos) >>> 0;
    if (magic === FRAME_MAGIC) {
      pos = decodeFrame(frame, pos, out, maxOut);
    } else if ((magic & 0xfffffff0) >>> 0 === SKIPPABLE_MAGIC_BASE) {
      if (n - pos < 8) throw truncated("a skippable frame's size", pos + 4, 4, n - pos - 4);
      const size = read32(frame, pos + 4) >>> 0;
      if (size > n - pos - 8) {
        throw truncated(`a skippable frame of ${size} bytes`, pos + 8, size, n - pos - 8);
      }
      pos += 8 + size;
    } else if (magic === LEGACY_MAGIC) {
      throw new Lz4FormatError(
        `Unsupported LZ4 data at input offset ${pos}: magic number 0x184c2102 starts the legacy ` +
          `LZ4 format, but only LZ4 frames (magic 0x184d2204) are supported`,
      );
    } else {
      throw new Lz4FormatError(
        `Bad LZ4 magic number ${hex32(magic)} at input offset ${pos}: expected 0x184d2204 ` +
          `(or 0x184d2a50..0x184d2a5f for a skippable frame)`,
      );
    }
  }
  return out.len === out.buf.length ? out.buf : out.buf.slice(0, out.len);
}
