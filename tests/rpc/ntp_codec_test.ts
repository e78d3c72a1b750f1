import fc from "fast-check";
import { assert, assertEquals } from "../_assert.ts";
import {
  headerByte,
  isZeroTimestamp,
  readHeaderByte,
  readTimestamp,
  referenceIdBytes,
  referenceIdText,
  writeTimestamp,
} from "../../rpc/_ntp.ts";

function stamp(micros: number): Uint8Array {
  const bytes = new Uint8Array(8);
  writeTimestamp(new DataView(bytes.buffer), 0, micros);
  return bytes;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("NTP timestamps", async (t) => {
  await t.step("the Unix epoch is 2,208,988,800 s after the NTP epoch", () => {
    assertEquals(hex(stamp(0)), "83aa7e8000000000");
  });
  await t.step("half a second is a fraction of 2^31", () => {
    assertEquals(hex(stamp(1_500_000)), "83aa7e8180000000");
  });
  await t.step("a 2024 instant encodes and decodes exactly", () => {
    const micros = 1_704_110_400_123_456;
    assertEquals(readTimestamp(new DataView(stamp(micros).buffer), 0), micros);
  });
  await t.step("after 2036-02-07 the seconds wrap into era 1 and still decode", () => {
    const micros = 2_500_000_000_000_001; // year 2049
    const bytes = stamp(micros);
    assert(bytes[0] < 0x80, "era 1 seconds have the top bit clear");
    assertEquals(readTimestamp(new DataView(bytes.buffer), 0), micros);
  });
  await t.step("every microsecond from 1968-01-20 on round-trips", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -61_505_152_000_000, max: 4_000_000_000_000_000 }), // 1968-01-20 … 2096
        (micros) => readTimestamp(new DataView(stamp(micros).buffer), 0) === micros,
      ),
      { numRuns: 10_000 },
    );
  });
  await t.step("all-zero means unknown", () => {
    const zero = new Uint8Array(8);
    assertEquals(readTimestamp(new DataView(zero.buffer), 0), undefined);
    assert(isZeroTimestamp(zero, 0));
    assert(!isZeroTimestamp(stamp(0), 0));
  });
});

Deno.test("NTP header fields", async (t) => {
  await t.step("the first byte packs leap, version and mode", () => {
    assertEquals(headerByte(0, 4, 3), 0x23);
    assertEquals(headerByte(3, 3, 4), 0xdc);
    assertEquals(readHeaderByte(new Uint8Array([0xdc])), { leap: 3, version: 3, mode: 4 });
  });
  await t.step("reference ids are ASCII, NUL-padded, and read back to the first NUL", () => {
    const packet = new Uint8Array(48);
    packet.set(referenceIdBytes("GPS"), 12);
    assertEquals(Array.from(packet.subarray(12, 16)), [71, 80, 83, 0]);
    assertEquals(referenceIdText(packet), "GPS");
    packet.set([0x52, 0x41, 0x54, 0x45], 12);
    assertEquals(referenceIdText(packet), "RATE");
  });
  await t.step("from stratum 2 on, the reference id is the upstream IPv4 address", () => {
    const packet = new Uint8Array(48);
    packet[1] = 8;
    packet.set([127, 127, 1, 1], 12);
    assertEquals(referenceIdText(packet), "127.127.1.1");
  });
});
