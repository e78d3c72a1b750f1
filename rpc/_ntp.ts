/**
 * The NTP packet (RFC 5905 §7.3) and NTP timestamps, for the SNTP server and
 * client (private).
 *
 * @module
 */

import { show } from "./_show.ts";

/** The length of an NTP header without extension fields or MAC. */
export const NTP_PACKET_BYTES = 48;

/** Seconds from 1900-01-01 (the NTP prime epoch) to 1970-01-01. */
const NTP_UNIX_OFFSET = 2_208_988_800;
const TWO_32 = 4_294_967_296;

/** The association modes this library uses. */
export const MODE_CLIENT = 3;
/** The server's reply mode. */
export const MODE_SERVER = 4;

/** Byte offsets of the header's fields. */
export const OFFSET_REFERENCE_ID = 12;
/** Byte offset of the reference timestamp. */
export const OFFSET_REFERENCE = 16;
/** Byte offset of the originate timestamp (T1, echoed). */
export const OFFSET_ORIGINATE = 24;
/** Byte offset of the receive timestamp (T2). */
export const OFFSET_RECEIVE = 32;
/** Byte offset of the transmit timestamp (T3, or T1 in a request). */
export const OFFSET_TRANSMIT = 40;

/** The first byte's fields. */
export interface NtpHeaderByte {
  /** Leap indicator, 0..3 (3: the clock is unsynchronised). */
  leap: number;
  /** Version number, 0..7. */
  version: number;
  /** Association mode, 0..7. */
  mode: number;
}

/** Splits the first byte of a header. */
export function readHeaderByte(packet: Uint8Array): NtpHeaderByte {
  const b = packet[0];
  return { leap: b >>> 6, version: (b >>> 3) & 7, mode: b & 7 };
}

/** Builds the first byte of a header. */
export function headerByte(leap: number, version: number, mode: number): number {
  return ((leap & 3) << 6) | ((version & 7) << 3) | (mode & 7);
}

/**
 * Writes `micros` (microseconds since the Unix epoch) as an NTP timestamp at
 * `offset`: 32 bits of seconds since 1900 (modulo 2^32, so era 1 after 2036
 * wraps as RFC 5905 prescribes) and 32 bits of fraction.
 */
export function writeTimestamp(view: DataView, offset: number, micros: number): void {
  const seconds = Math.floor(micros / 1_000_000);
  const rest = micros - seconds * 1_000_000; // 0 ≤ rest < 1e6
  const era = (seconds + NTP_UNIX_OFFSET) % TWO_32;
  view.setUint32(offset, era < 0 ? era + TWO_32 : era);
  // rest · 2^32 < 2^53: exact; floor keeps the round trip exact (see readTimestamp).
  view.setUint32(offset + 4, Math.floor(rest * TWO_32 / 1_000_000));
}

/**
 * Reads the NTP timestamp at `offset` as integer microseconds since the Unix
 * epoch, or `undefined` when it is zero (NTP's "unknown"). Seconds with the
 * top bit clear are taken to be in era 1 (2036-2104), as RFC 4330 §3
 * suggests, so the reading is right from 1968-01-20 to 2104-02-26.
 */
export function readTimestamp(view: DataView, offset: number): number | undefined {
  const seconds = view.getUint32(offset);
  const fraction = view.getUint32(offset + 4);
  if (seconds === 0 && fraction === 0) return undefined;
  const unix = seconds >= 0x8000_0000
    ? seconds - NTP_UNIX_OFFSET
    : seconds + TWO_32 - NTP_UNIX_OFFSET;
  return unix * 1_000_000 + Math.round(fraction * 1_000_000 / TWO_32);
}

/** Whether the 8 bytes at `offset` of `a` equal the 8 bytes at `offsetB` of `b`. */
export function sameTimestampBytes(
  a: Uint8Array,
  offset: number,
  b: Uint8Array,
  offsetB: number,
): boolean {
  for (let k = 0; k < 8; k++) if (a[offset + k] !== b[offsetB + k]) return false;
  return true;
}

/** Whether the 8 bytes at `offset` are all zero. */
export function isZeroTimestamp(packet: Uint8Array, offset: number): boolean {
  for (let k = 0; k < 8; k++) if (packet[offset + k] !== 0) return false;
  return true;
}

/** Encodes a 4-character ASCII reference id (shorter ones are padded with NULs). */
export function referenceIdBytes(id: string): Uint8Array {
  const out = new Uint8Array(4);
  for (let k = 0; k < Math.min(4, id.length); k++) out[k] = id.charCodeAt(k) & 0x7f;
  return out;
}

/**
 * Decodes a reference id: for stratum 0 (a kiss code) and 1 (a reference
 * clock) ASCII up to the first NUL; from stratum 2 on the upstream server's
 * IPv4 address, dotted (or the first four bytes of an IPv6 address's hash,
 * which look the same), as RFC 5905 §7.3 defines.
 */
export function referenceIdText(packet: Uint8Array): string {
  if (packet[1] >= 2) {
    return Array.from(packet.subarray(OFFSET_REFERENCE_ID, OFFSET_REFERENCE_ID + 4)).join(".");
  }
  let text = "";
  for (let k = OFFSET_REFERENCE_ID; k < OFFSET_REFERENCE_ID + 4; k++) {
    const c = packet[k];
    if (c === 0) break;
    text += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : "?";
  }
  return text;
}

/**
 * Checks that `hostname` is an IPv4 or IPv6 address (or `"localhost"`, taken
 * as 127.0.0.1) and returns the address to send to.
 *
 * @throws {TypeError} Naming `action` when it is not.
 */
export function serverAddress(hostname: string, action: string): string {
  if (hostname === "localhost") return "127.0.0.1";
  if (
    typeof hostname === "string" &&
    (/^\d{1,3}(\.\d{1,3}){3}$/.test(hostname) ||
      (hostname.includes(":") && /^[0-9a-fA-F:.]+$/.test(hostname)))
  ) {
    return hostname;
  }
  throw new TypeError(
    `Cannot ${action} as 'hostname' must be an IP address or "localhost": current value is ${
      show(hostname)
    }`,
  );
}
