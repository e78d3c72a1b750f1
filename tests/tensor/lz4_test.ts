/**
 * The LZ4 frame codec: byte-exact compression against python-lz4's
 * `lz4.frame.compress()` defaults (the extra vectors in `lz4_extra.json`, made
 * by python-lz4; the golden vectors in `wire.json` are checked by
 * `tests/wire_vectors_test.ts`), round trips,
 * XXH32, the decoder's handling of every frame feature, and typed errors for
 * malformed input.
 */

import { assert, assertEquals, assertThrows } from "../_assert.ts";
import fc from "fast-check";
import { compressFrame, decompressFrame, Lz4FormatError, xxh32 } from "../../tensor/_lz4.ts";
import { fromHex, toHex } from "../_vectors.ts";

const SEED = 20261124;

// ---------------------------------------------------------------------------
// Vector data
// ---------------------------------------------------------------------------

/** A rule that makes the raw input of an extra vector (see lz4_extra.json "about"). */
interface RawRule {
  kind: "random" | "alphabet" | "runs" | "float32_ramp" | "copies" | "sine_int16";
  length: number;
  seed?: number;
  symbols?: number;
  max_run?: number;
  period?: number;
  step?: number;
  distances?: number[];
}

/** One extra vector: raw bytes (hex or rule) and the frame python-lz4 made of them. */
interface ExtraVector {
  name: string;
  rule?: RawRule;
  raw_hex?: string;
  frame_hex?: string;
  frame_len?: number;
  frame_xxh32?: number;
  frame_head_hex?: string;
}

/** A frame python-lz4 made with non-default options, for the decoder. */
interface DecodeVector {
  name: string;
  rule: RawRule;
  options: Record<string, unknown>;
  frame_hex: string;
}

interface ExtraVectors {
  python_lz4_version: string;
  liblz4_version: string;
  vectors: ExtraVector[];
  decode_vectors: DecodeVector[];
}

const extra = JSON.parse(
  Deno.readTextFileSync(new URL("../testdata/lz4_extra.json", import.meta.url)),
) as ExtraVectors;

/** xorshift32 (13, 17, 5) from a non-zero seed, as unsigned 32-bit values. */
function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** Expands a rule into raw bytes, exactly as lz4_extra.json's "about" describes. */
function rawFromRule(rule: RawRule): Uint8Array {
  const n = rule.length;
  const out = new Uint8Array(n);
  const next = xorshift32(rule.seed ?? 1);
  switch (rule.kind) {
    case "random":
      for (let i = 0; i < n; i++) out[i] = next() & 0xff;
      break;
    case "alphabet":
      for (let i = 0; i < n; i++) out[i] = next() % rule.symbols!;
      break;
    case "runs":
      for (let i = 0; i < n;) {
        const value = next() & 0xff;
        const run = 1 + (next() % rule.max_run!);
        for (let j = 0; j < run && i < n; j++) out[i++] = value;
      }
      break;
    case "float32_ramp": {
      const floats = new Float32Array(Math.ceil(n / 4));
      for (let i = 0; i < floats.length; i++) floats[i] = (i % rule.period!) * rule.step!;
      out.set(new Uint8Array(floats.buffer, 0, n));
      break;
    }
    case "copies":
      for (let i = 0; i < n;) {
        const r = next();
        const distance = rule.distances![r % rule.distances!.length];
        if (i >= distance && (r >>> 8) % 2 === 0) {
          const len = 4 + ((r >>> 9) % 60);
          for (let j = 0; j < len && i < n; j++, i++) out[i] = out[i - distance];
        } else {
          const len = 1 + ((r >>> 9) % 24);
          for (let j = 0; j < len && i < n; j++) out[i++] = next() & 0xff;
        }
      }
      break;
    case "sine_int16": {
      const view = new DataView(out.buffer);
      for (let i = 0; i + 2 <= n; i += 2) {
        view.setInt16(i, Math.round(1000 * Math.sin(i / 100)) + (next() % 3), true);
      }
      break;
    }
  }
  return out;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Where two frames first differ, for readable failures. */
function firstDifference(a: Uint8Array, b: Uint8Array): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return `lengths ${a.length} and ${b.length}, first difference at byte ${i}`;
}

// ---------------------------------------------------------------------------
// Frame building helpers for the decoder tests
// ---------------------------------------------------------------------------

const MAGIC = [0x04, 0x22, 0x4d, 0x18];

function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

function concat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

interface TestBlock {
  /** The block's payload as stored (LZ4-compressed unless `stored`). */
  payload: Uint8Array | number[];
  stored?: boolean;
  /** A block checksum to write instead of the right one. */
  checksum?: number;
}

interface TestFrame {
  /** The FLG byte; by default version 1, independent blocks, plus the flags the fields imply. */
  flg?: number;
  /** The BD byte; 0x40 (64 KiB) by default. */
  bd?: number;
  contentSize?: number;
  blockChecksum?: boolean;
  blocks: TestBlock[];
  /** Appends this content checksum (with the FLG flag) when given. */
  contentChecksum?: number;
  /** Leaves out the end mark when false. */
  endMark?: boolean;
}

/** Builds a frame with a correct header checksum (unless the test spoils it later). */
function buildFrame(frame: TestFrame): Uint8Array {
  const flg = frame.flg ??
    (0x60 | (frame.contentSize !== undefined ? 0x08 : 0) | (frame.blockChecksum ? 0x10 : 0) |
      (frame.contentChecksum !== undefined ? 0x04 : 0));
  const descriptor = [flg, frame.bd ?? 0x40];
  if (frame.contentSize !== undefined) {
    descriptor.push(
      ...le32(frame.contentSize >>> 0),
      ...le32(Math.floor(frame.contentSize / 2 ** 32)),
    );
  }
  const hc = (xxh32(new Uint8Array(descriptor)) >>> 8) & 0xff;
  const parts: (Uint8Array | number[])[] = [MAGIC, descriptor, [hc]];
  for (const block of frame.blocks) {
    const payload = new Uint8Array(block.payload);
    parts.push(le32((payload.length | (block.stored ? 0x80000000 : 0)) >>> 0), payload);
    if (frame.blockChecksum) parts.push(le32(block.checksum ?? xxh32(payload)));
  }
  if (frame.endMark !== false) parts.push(le32(0));
  if (frame.contentChecksum !== undefined) parts.push(le32(frame.contentChecksum));
  return concat(...parts);
}

/** An LZ4 block holding only literals. */
function literalBlock(bytes: Uint8Array | number[]): number[] {
  const n = bytes.length;
  const out: number[] = [];
  if (n < 15) {
    out.push(n << 4);
  } else {
    out.push(0xf0);
    let rest = n - 15;
    for (; rest >= 255; rest -= 255) out.push(255);
    out.push(rest);
  }
  out.push(...bytes);
  return out;
}

/** Sets the content size field of a frame made by compressFrame, fixing the header checksum. */
function withContentSize(frame: Uint8Array, size: number): Uint8Array {
  assert(frame[4] & 0x08, "the frame must store a content size");
  const out = frame.slice();
  out.set(le32(size >>> 0), 6);
  out.set(le32(Math.floor(size / 2 ** 32)), 10);
  out[14] = (xxh32(out.subarray(4, 14)) >>> 8) & 0xff;
  return out;
}

/** python-lz4's frame of 1000 random bytes with block and content checksums, no content size. */
function checksummedFrame(): Uint8Array {
  const vector = extra.decode_vectors.find((v) => v.name.startsWith("random_1000_block_checksum"));
  assert(vector !== undefined, "lz4_extra.json has the checksummed random_1000 frame");
  return fromHex(vector.frame_hex);
}

const shortText = new TextEncoder().encode("tsercom tsercom tsercom ");
const shortFrame = compressFrame(shortText);

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

Deno.test(
  `compressFrame matches the extra python-lz4 vectors (python-lz4 ${extra.python_lz4_version}, ` +
    `liblz4 ${extra.liblz4_version})`,
  async (t) => {
    for (const vector of extra.vectors) {
      const raw = vector.raw_hex !== undefined
        ? fromHex(vector.raw_hex)
        : rawFromRule(vector.rule!);
      await t.step(`compresses ${vector.name} to exactly the reference frame`, () => {
        const frame = compressFrame(raw);
        if (vector.frame_hex !== undefined) {
          assertEquals(toHex(frame), vector.frame_hex);
        } else {
          assertEquals(toHex(frame.subarray(0, 48)), vector.frame_head_hex);
          assertEquals(
            [frame.length, xxh32(frame)],
            [vector.frame_len, vector.frame_xxh32],
          );
        }
        assert(bytesEqual(decompressFrame(frame), raw), "the frame decompresses to the input");
      });
      if (vector.frame_hex !== undefined) {
        await t.step(`decompresses the ${vector.name} reference frame to its raw bytes`, () => {
          assert(bytesEqual(decompressFrame(fromHex(vector.frame_hex!)), raw));
        });
      }
    }
  },
);

Deno.test("compressFrame frame layout", async (t) => {
  await t.step("writes FLG 0x68 and the content size for an input that fits one block", () => {
    assertEquals(Array.from(shortFrame.subarray(0, 15)), [
      ...MAGIC,
      0x68,
      0x40,
      ...le32(24),
      0,
      0,
      0,
      0,
      shortFrame[14],
    ]);
  });

  await t.step("links blocks (FLG 0x48) only when the input needs more than one block", () => {
    assertEquals(compressFrame(new Uint8Array(65536))[4], 0x68);
    assertEquals(compressFrame(new Uint8Array(65537))[4], 0x48);
  });

  await t.step("stores inputs shorter than 13 bytes as an uncompressed block", () => {
    const frame = compressFrame(new Uint8Array(12).fill(7));
    assertEquals(Array.from(frame.subarray(15, 19)), le32(0x8000000c));
    assertEquals(Array.from(frame.subarray(19, 31)), new Array(12).fill(7));
    assertEquals(frame.length, 15 + 4 + 12 + 4);
  });

  await t.step("leaves the content size out when contentSize is false", () => {
    const frame = compressFrame(shortText, { contentSize: false });
    assertEquals(
      toHex(frame),
      "04224d18604082110000008774736572636f6d2008005072636f6d2000000000",
    );
    assert(bytesEqual(decompressFrame(frame), shortText));
  });

  await t.step("returns a fresh array on every call", () => {
    const a = compressFrame(shortText);
    const b = compressFrame(shortText);
    assert(a !== b && a.buffer !== b.buffer);
    a.fill(0);
    assertEquals(toHex(b), toHex(shortFrame));
  });

  await t.step("compresses a subarray view of a larger buffer by its own bytes only", () => {
    const big = new Uint8Array(100);
    big.set(shortText, 40);
    assertEquals(toHex(compressFrame(big.subarray(40, 64))), toHex(shortFrame));
  });

  await t.step("rejects a non-Uint8Array input with a TypeError", () => {
    assertThrows(
      () => compressFrame([1, 2, 3] as unknown as Uint8Array),
      TypeError,
      "'data' must be a Uint8Array",
    );
  });
});

Deno.test("xxh32", async (t) => {
  await t.step("hashes the empty input with seed 0 to 0x02CC5D05", () => {
    assertEquals(xxh32(new Uint8Array(0)), 0x02cc5d05);
  });

  await t.step("matches python-lz4's content checksums for short strings", () => {
    const enc = new TextEncoder();
    assertEquals(xxh32(enc.encode("a")), 0x550d7456);
    assertEquals(xxh32(enc.encode("abc")), 0x32d153ff);
    assertEquals(xxh32(enc.encode("Nobody inspects the spammish repetition")), 0xe2293b2f);
    const counting = new Uint8Array(1024).map((_, i) => i & 0xff);
    assertEquals(xxh32(counting), 0x58654d5a);
  });

  await t.step("matches xxHash's published sanity values, with and without a seed", () => {
    // xxHash's sanity buffer: byte i is the top byte of PRIME32 * PRIME64^i mod 2^64.
    const buffer = new Uint8Array(222);
    let gen = 2654435761n;
    for (let i = 0; i < buffer.length; i++) {
      buffer[i] = Number(gen >> 56n);
      gen = (gen * 11400714785074694797n) & 0xffffffffffffffffn;
    }
    const prime = 2654435761;
    const got = [0, 1, 14, 222].flatMap((len) => [
      xxh32(buffer.subarray(0, len)),
      xxh32(buffer.subarray(0, len), prime),
    ]);
    assertEquals(got, [
      0x02cc5d05,
      0x36b78ae7,
      0xcf65b03e,
      0xb4545aa4,
      0x1208e7e2,
      0x6af1d1fe,
      0x5bd11dbd,
      0x58803c5f,
    ]);
  });
});

Deno.test("decompressFrame reads every frame feature", async (t) => {
  for (const vector of extra.decode_vectors) {
    await t.step(`decodes python-lz4's ${vector.name} frame to its raw bytes`, () => {
      const raw = rawFromRule(vector.rule);
      const out = decompressFrame(fromHex(vector.frame_hex));
      assert(bytesEqual(out, raw), firstDifference(out, raw));
    });
  }

  await t.step("skips skippable frames before, between and after frames", () => {
    const skippable = (magicLow: number, body: number[]) =>
      concat([0x50 + magicLow, 0x2a, 0x4d, 0x18], le32(body.length), body);
    const input = concat(
      skippable(0, [1, 2, 3]),
      shortFrame,
      skippable(0xf, []),
      compressFrame(new Uint8Array([9, 8, 7])),
      skippable(5, [0xff, 0xff]),
    );
    assertEquals(Array.from(decompressFrame(input)), [...shortText, 9, 8, 7]);
  });

  await t.step("joins the contents of concatenated frames", () => {
    const big = rawFromRule({ kind: "runs", length: 150_000, seed: 3, max_run: 50 });
    const input = concat(
      compressFrame(big),
      compressFrame(new Uint8Array(0)),
      compressFrame(shortText, { contentSize: false }),
      compressFrame(big, { contentSize: false }),
    );
    const out = decompressFrame(input);
    assert(
      bytesEqual(out, concat(big, shortText, big)),
      firstDifference(out, concat(big, shortText, big)),
    );
  });

  await t.step("decodes a frame of only skippable frames to nothing", () => {
    assertEquals(decompressFrame(concat([0x5a, 0x2a, 0x4d, 0x18], le32(1), [0])).length, 0);
  });

  await t.step("decodes stored blocks and verifies block and content checksums", () => {
    const a = [1, 2, 3, 4, 5];
    const b = [...shortText];
    const frame = buildFrame({
      blockChecksum: true,
      contentSize: 29,
      blocks: [{ payload: a, stored: true }, { payload: literalBlock(b) }],
      contentChecksum: xxh32(new Uint8Array([...a, ...b])),
    });
    assertEquals(Array.from(decompressFrame(frame)), [...a, ...b]);
  });

  await t.step("lets linked blocks refer back into earlier blocks", () => {
    // Block 2 is a 4-byte match 4 bytes back, then one literal: it copies block 1.
    const frame = buildFrame({
      flg: 0x40,
      blocks: [{ payload: literalBlock([1, 2, 3, 4]) }, { payload: [0x00, 4, 0, 0x10, 9] }],
    });
    assertEquals(Array.from(decompressFrame(frame)), [1, 2, 3, 4, 1, 2, 3, 4, 9]);
  });

  await t.step("accepts every block maximum size code from 4 (64 KiB) to 7 (4 MiB)", () => {
    for (const bd of [0x40, 0x50, 0x60, 0x70]) {
      const frame = buildFrame({ bd, blocks: [{ payload: literalBlock([bd]) }] });
      assertEquals(Array.from(decompressFrame(frame)), [bd]);
    }
  });

  await t.step("decodes overlapping matches (runs and short repeating patterns)", () => {
    // 'ab' then a 998-byte match at offset 2, then 'c'; 'x' then a 70-byte run at offset 1.
    const block = [0x2f, 0x61, 0x62, 2, 0, 255, 255, 255, 214, 0x10, 0x63];
    const run = [0x1f, 0x78, 1, 0, 51, 0x10, 0x79];
    const frame = buildFrame({ flg: 0x60, blocks: [{ payload: block }, { payload: run }] });
    const out = decompressFrame(frame);
    assertEquals(new TextDecoder().decode(out), "ab".repeat(500) + "c" + "x".repeat(71) + "y");
  });

  await t.step("allows output of exactly maxOutputBytes", () => {
    const raw = new Uint8Array(100_000).fill(3);
    assertEquals(decompressFrame(compressFrame(raw), { maxOutputBytes: 100_000 }).length, 100_000);
    const noSize = compressFrame(raw, { contentSize: false });
    assertEquals(decompressFrame(noSize, { maxOutputBytes: 100_000 }).length, 100_000);
  });

  await t.step("decodes a frame in a subarray view of a larger buffer", () => {
    const big = new Uint8Array(shortFrame.length + 20);
    big.set(shortFrame, 10);
    const view = big.subarray(10, 10 + shortFrame.length);
    assert(bytesEqual(decompressFrame(view), shortText));
  });
});

Deno.test("round trips", async (t) => {
  const kinds = ["random", "alphabet", "runs", "float32_ramp", "copies", "sine_int16"] as const;

  await t.step("round-trips small random byte arrays (150 cases)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (raw) => {
        assert(bytesEqual(decompressFrame(compressFrame(raw)), raw));
      }),
      { seed: SEED, numRuns: 150 },
    );
  });

  await t.step("round-trips generated inputs up to 200 KiB of every kind (150 cases)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...kinds),
        fc.integer({ min: 0, max: 200 * 1024 }),
        fc.integer({ min: 1, max: 0xffffffff }),
        fc.integer({ min: 2, max: 16 }),
        (kind, length, seed, param) => {
          const raw = rawFromRule({
            kind,
            length,
            seed,
            symbols: param,
            max_run: param * 20,
            period: param * 3,
            step: 0.125 * param,
            distances: [1, param, 65535, 65534, 65536, 300 * param, 40000],
          });
          const frame = compressFrame(raw);
          assert(bytesEqual(decompressFrame(frame), raw), `kind ${kind}, length ${length}`);
          assert(frame.length <= raw.length + 15 + 4 * Math.ceil(raw.length / 65536) + 4);
        },
      ),
      { seed: SEED, numRuns: 150 },
    );
  });

  await t.step("round-trips inputs built from literals, runs and back-copies (100 cases)", () => {
    const piece = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 80 }).map((bytes) => ({ bytes })),
      fc.record({ byte: fc.nat(255), count: fc.integer({ min: 1, max: 5000 }) }),
      fc.record({ back: fc.nat(), count: fc.integer({ min: 1, max: 3000 }) }),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 120 }), (pieces) => {
        const bytes: number[] = [];
        for (const p of pieces) {
          if ("bytes" in p) bytes.push(...p.bytes);
          else if ("byte" in p) { for (let i = 0; i < p.count; i++) bytes.push(p.byte); }
          else if (bytes.length > 0) {
            const from = bytes.length - 1 - (p.back % Math.min(bytes.length, 70_000));
            for (let i = 0; i < p.count; i++) bytes.push(bytes[from + i]);
          }
        }
        const raw = new Uint8Array(bytes);
        assert(bytesEqual(decompressFrame(compressFrame(raw)), raw));
        const noSize = compressFrame(raw, { contentSize: false });
        assert(bytesEqual(decompressFrame(noSize), raw));
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  await t.step("never fails except with Lz4FormatError on corrupted frames (300 cases)", () => {
    const frames = [
      shortFrame,
      compressFrame(rawFromRule({ kind: "copies", length: 3000, seed: 4, distances: [1, 9, 700] })),
      compressFrame(rawFromRule({ kind: "runs", length: 70_000, seed: 5, max_run: 90 })),
      checksummedFrame(),
    ];
    fc.assert(
      fc.property(
        fc.nat(frames.length - 1),
        fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }),
        fc.option(fc.nat()),
        (which, flips, cut) => {
          const frame = frames[which].slice();
          for (const [at, value] of flips) frame[at % frame.length] = value;
          const input = cut === null ? frame : frame.subarray(0, cut % frame.length);
          try {
            decompressFrame(input, { maxOutputBytes: 1 << 20 });
          } catch (error) {
            assert(error instanceof Lz4FormatError, `unexpected ${String(error)}`);
          }
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });
});

Deno.test("decompressFrame rejects malformed input with Lz4FormatError", async (t) => {
  await t.step("rejects every truncation of a small frame", () => {
    for (let n = 0; n < shortFrame.length; n++) {
      assertThrows(() => decompressFrame(shortFrame.subarray(0, n)), Lz4FormatError, "Truncated");
    }
  });

  await t.step("rejects every truncation of a frame with checksums", () => {
    const frame = checksummedFrame();
    for (let n = 0; n < frame.length; n += n < 40 || n > frame.length - 40 ? 1 : 37) {
      assertThrows(() => decompressFrame(frame.subarray(0, n)), Lz4FormatError);
    }
  });

  await t.step("rejects a wrong magic number and says which was expected", () => {
    const frame = shortFrame.slice();
    frame[0] = 0x05;
    assertThrows(() => decompressFrame(frame), Lz4FormatError, "expected 0x184d2204");
  });

  await t.step("rejects the legacy LZ4 format as unsupported", () => {
    const legacy = concat([0x02, 0x21, 0x4c, 0x18], le32(2), [0x10, 0x41]);
    assertThrows(() => decompressFrame(legacy), Lz4FormatError, "legacy LZ4 format");
  });

  await t.step("rejects trailing bytes that do not start another frame", () => {
    assertThrows(
      () => decompressFrame(concat(shortFrame, [1, 2, 3, 4, 5])),
      Lz4FormatError,
      "Bad LZ4 magic number 0x04030201 at input offset 40",
    );
    assertThrows(() => decompressFrame(concat(shortFrame, [1, 2])), Lz4FormatError, "Truncated");
  });

  await t.step("rejects a flipped header checksum", () => {
    const frame = shortFrame.slice();
    frame[14] ^= 0x01;
    assertThrows(() => decompressFrame(frame), Lz4FormatError, "header checksum mismatch");
  });

  await t.step("rejects a changed descriptor whose checksum no longer matches", () => {
    const frame = shortFrame.slice();
    frame[6] = 25;
    assertThrows(() => decompressFrame(frame), Lz4FormatError, "header checksum mismatch");
  });

  await t.step(
    "rejects reserved FLG and BD bits, other versions and small block size codes",
    () => {
      const cases: [number, number, string][] = [
        [0x62, 0x40, "reserved bit 1 of the FLG byte"],
        [0xa0, 0x40, "version 2"],
        [0x20, 0x40, "version 0"],
        [0x60, 0xc0, "reserved bits of the BD byte"],
        [0x60, 0x41, "reserved bits of the BD byte"],
        [0x60, 0x30, "block maximum size code 3"],
        [0x60, 0x00, "block maximum size code 0"],
      ];
      for (const [flg, bd, message] of cases) {
        const frame = buildFrame({ flg, bd, blocks: [{ payload: literalBlock([1]) }] });
        assertThrows(() => decompressFrame(frame), Lz4FormatError, message);
      }
    },
  );

  await t.step("rejects a frame that needs a dictionary as unsupported", () => {
    const frame = concat(MAGIC, [0x61, 0x40, 1, 2, 3, 4, 0], le32(0));
    assertThrows(() => decompressFrame(frame), Lz4FormatError, "dictionaries is not supported");
  });

  await t.step("rejects a match offset of 0", () => {
    const frame = buildFrame({ blocks: [{ payload: [0x10, 0x41, 0, 0, 0x00] }] });
    assertThrows(() => decompressFrame(frame), Lz4FormatError, "the offset is 0");
  });

  await t.step("rejects a match offset that points before the start of the output", () => {
    const linked = buildFrame({ flg: 0x40, blocks: [{ payload: [0x10, 0x41, 2, 0, 0x00] }] });
    assertThrows(
      () => decompressFrame(linked),
      Lz4FormatError,
      "offset 2 points before the start of the frame's output; at most 1 is valid there",
    );
    const frame = buildFrame({ blocks: [{ payload: [0x10, 0x41, 2, 0, 0x00] }] });
    assertThrows(
      () => decompressFrame(frame),
      Lz4FormatError,
      "offset 2 points before the start of the block (the frame's blocks are independent)",
    );
  });

  await t.step("rejects an independent block whose match reaches into the previous block", () => {
    const frame = buildFrame({
      flg: 0x60,
      blocks: [{ payload: literalBlock([1, 2, 3, 4]) }, { payload: [0x00, 4, 0, 0x10, 9] }],
    });
    assertThrows(
      () => decompressFrame(frame),
      Lz4FormatError,
      "offset 4 points before the start of the block (the frame's blocks are independent); " +
        "at most 0 is valid there",
    );
  });

  await t.step("rejects literals and matches that run past the end of their block", () => {
    const cases: [number[], string][] = [
      [[0x50, 1, 2], "literal run of 5 bytes"],
      [[0xf0, 255], "literal length runs past the end of the block"],
      [[0x1f, 0x41, 1, 0], "match length runs past the end of the block"],
      [[0x10, 0x41, 1], "a match offset"],
      [[0x10, 0x41, 1, 0], "ends at input offset"],
    ];
    for (const [payload, message] of cases) {
      const frame = buildFrame({ blocks: [{ payload }] });
      assertThrows(() => decompressFrame(frame), Lz4FormatError, message);
    }
  });

  await t.step("rejects a block larger than the declared block maximum size", () => {
    const frame = concat(buildFrame({ blocks: [], endMark: false }), le32(65537));
    assertThrows(
      () => decompressFrame(frame),
      Lz4FormatError,
      "larger than the frame's declared block maximum size of 65536 bytes",
    );
  });

  await t.step("rejects a block that decodes to more than the block maximum size", () => {
    // One literal, then a match of 4 + 15 + 255 * 300 bytes: more than 64 KiB.
    const payload = [0x1f, 0x41, 1, 0, ...new Array(300).fill(255), 0, 0x00];
    const frame = buildFrame({ blocks: [{ payload }] });
    assertThrows(
      () => decompressFrame(frame),
      Lz4FormatError,
      "decodes to more than the frame's declared block maximum size of 65536 bytes",
    );
  });

  await t.step("rejects a declared content size larger than the content", () => {
    assertThrows(
      () => decompressFrame(withContentSize(shortFrame, 25)),
      Lz4FormatError,
      "declares a content size of 25 bytes, but its blocks decode to 24 bytes",
    );
  });

  await t.step("rejects a declared content size smaller than the content", () => {
    assertThrows(
      () => decompressFrame(withContentSize(shortFrame, 23)),
      Lz4FormatError,
      "decodes to more than its declared content size of 23 bytes",
    );
  });

  await t.step("rejects a wrong content checksum", () => {
    const frame = checksummedFrame();
    frame[frame.length - 1] ^= 0x80;
    assertThrows(() => decompressFrame(frame), Lz4FormatError, "content checksum mismatch");
  });

  await t.step("rejects a wrong block checksum", () => {
    const frame = buildFrame({
      blockChecksum: true,
      blocks: [{ payload: literalBlock([1, 2, 3]), checksum: 0x12345678 }],
    });
    assertThrows(
      () => decompressFrame(frame),
      Lz4FormatError,
      "block checksum mismatch for the block at input offset 7: stored 0x12345678",
    );
  });

  await t.step("rejects a truncated skippable frame", () => {
    const input = concat([0x50, 0x2a, 0x4d, 0x18], le32(10), [1, 2, 3]);
    assertThrows(() => decompressFrame(input), Lz4FormatError, "skippable frame of 10 bytes");
  });

  await t.step("rejects an empty input", () => {
    assertThrows(() => decompressFrame(new Uint8Array(0)), Lz4FormatError, "the input is empty");
  });

  await t.step("rejects a declared content size over maxOutputBytes before allocating it", () => {
    const header = buildFrame({ contentSize: 2 ** 40, blocks: [] });
    assertThrows(
      () => decompressFrame(header),
      Lz4FormatError,
      "declares a content size of 1099511627776 bytes, more than the 268435456 bytes left",
    );
    const frame = compressFrame(new Uint8Array(300_000));
    assertThrows(
      () => decompressFrame(frame, { maxOutputBytes: 299_999 }),
      Lz4FormatError,
      "maxOutputBytes (299999)",
    );
  });

  await t.step("stops a decompression bomb without a content size at maxOutputBytes", () => {
    // 64 KiB zero blocks of about 270 bytes each: about 250:1.
    const bomb = compressFrame(new Uint8Array(20 * 1024 * 1024), { contentSize: false });
    assert(bomb.length < 100_000);
    assertThrows(
      () => decompressFrame(bomb, { maxOutputBytes: 1024 * 1024 }),
      Lz4FormatError,
      "decodes to more than maxOutputBytes (1048576 bytes)",
    );
  });

  await t.step("counts concatenated frames together against maxOutputBytes", () => {
    const frame = compressFrame(new Uint8Array(1000));
    assertEquals(decompressFrame(concat(frame, frame), { maxOutputBytes: 2000 }).length, 2000);
    assertThrows(
      () => decompressFrame(concat(frame, frame), { maxOutputBytes: 1999 }),
      Lz4FormatError,
      "more than the 999 bytes left under maxOutputBytes",
    );
  });

  await t.step("rejects bad arguments with TypeError and RangeError", () => {
    assertThrows(
      () => decompressFrame("frame" as unknown as Uint8Array),
      TypeError,
      "'frame' must be a Uint8Array",
    );
    for (const maxOutputBytes of [-1, 1.5, Number.NaN, 2 ** 40]) {
      assertThrows(
        () => decompressFrame(shortFrame, { maxOutputBytes }),
        RangeError,
        "'maxOutputBytes' must be an integer",
      );
    }
  });

  await t.step("names the error class Lz4FormatError", () => {
    const error = assertThrows(() => decompressFrame(new Uint8Array(3)), Lz4FormatError);
    assertEquals(error.name, "Lz4FormatError");
    assert(error instanceof Error);
  });
});
