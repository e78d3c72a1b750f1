/**
 * Record helpers of the mDNS engine (private): the canonical wire form of a
 * record's RDATA, record identity, and the simultaneous-probe tie-break of
 * RFC 6762 §8.2.
 *
 * Names follow the convention of `_types.ts` (no trailing dot) plus the DNS
 * presentation-format escapes of RFC 1035 §5.1 for the two characters that a
 * label may contain but a dotted name cannot show plainly: `\.` is a dot
 * inside a label (DNS-SD instance names may contain dots, RFC 6763 §4.3) and
 * `\\` is a backslash. Build names from raw labels with
 * {@linkcode escapeLabel}.
 *
 * @module
 */

import type { MdnsRecord, QuestionType, RecordType } from "./_types.ts";
import { nameKey } from "./_types.ts";

/** The numeric DNS type of each record type the engine knows, and of ANY. */
export const TYPE_CODES: Readonly<Record<QuestionType, number>> = Object.freeze({
  A: 1,
  PTR: 12,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  NSEC: 47,
  ANY: 255,
});

/** The record type of each numeric DNS type the engine knows (ANY excluded). */
export const RECORD_TYPES_BY_CODE: ReadonlyMap<number, RecordType> = new Map<number, RecordType>([
  [1, "A"],
  [12, "PTR"],
  [16, "TXT"],
  [28, "AAAA"],
  [33, "SRV"],
  [47, "NSEC"],
]);

/** The numeric DNS type of a record type the engine knows, or `undefined` for anything else. */
export function recordTypeCode(type: unknown): number | undefined {
  for (const [code, name] of RECORD_TYPES_BY_CODE) {
    if (name === type) return code;
  }
  return undefined;
}

/** The DNS class IN. */
export const CLASS_IN = 1;

/** The longest label, in bytes (RFC 1035 §2.3.4). */
export const MAX_LABEL_BYTES = 63;

/** The longest name in wire form, in bytes, including the final zero byte (RFC 1035 §2.3.4). */
export const MAX_NAME_BYTES = 255;

/** The longest character string of a TXT record, in bytes. */
export const MAX_TXT_STRING_BYTES = 255;

/** A record (or name) cannot be put in wire form because a field is out of range or malformed. */
export class InvalidRecordError extends Error {
  /** Creates the error; the message says which field was wrong and what was expected. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "InvalidRecordError";
  }
}

const encoder = new TextEncoder();

/**
 * Escapes one raw label (for example a DNS-SD instance name such as
 * `"Living Room v1.2"`) so that it can be joined with dots into a name.
 *
 * @example
 * ```ts ignore
 * const instance = `${escapeLabel("Printer 1.2")}._ipp._tcp.local`; // "Printer 1\\.2._ipp._tcp.local"
 * ```
 */
export function escapeLabel(label: string): string {
  return label.replace(/[\\.]/g, (char) => `\\${char}`);
}

/**
 * Splits a name into its raw labels, undoing the escapes `\.` and `\\`
 * (`\x` stands for `x` in general). The empty name is the root (no labels).
 *
 * @throws {InvalidRecordError} on an empty label or a trailing lone backslash.
 */
export function splitName(name: string): string[] {
  if (name === "") return [];
  const labels: string[] = [];
  let label = "";
  for (let i = 0; i < name.length; i++) {
    const char = name[i];
    if (char === "\\") {
      if (i + 1 >= name.length) {
        throw new InvalidRecordError(
          `Cannot encode the name ${JSON.stringify(name)} as it ends with a lone backslash`,
        );
      }
      label += name[++i];
    } else if (char === ".") {
      labels.push(emptyLabelCheck(label, name));
      label = "";
    } else {
      label += char;
    }
  }
  labels.push(emptyLabelCheck(label, name));
  return labels;
}

function emptyLabelCheck(label: string, name: string): string {
  if (label === "") {
    throw new InvalidRecordError(
      `Cannot encode the name ${JSON.stringify(name)} as it has an empty label`,
    );
  }
  return label;
}

/** Joins raw labels into a name, escaping each (the inverse of {@linkcode splitName}). */
export function joinLabels(labels: readonly string[]): string {
  return labels.map(escapeLabel).join(".");
}

/**
 * The labels of `name` as UTF-8 bytes, checked against the limits of
 * RFC 1035 (labels of 1..63 bytes, at most 255 bytes in wire form).
 *
 * @throws {InvalidRecordError} when a limit is exceeded or the name is malformed.
 */
export function nameLabelBytes(name: string): Uint8Array[] {
  if (typeof name !== "string") {
    throw new InvalidRecordError(
      `Cannot encode a name as it must be a string: current value is ${String(name)}`,
    );
  }
  const labels = splitName(name).map((label) => encoder.encode(label));
  let size = 1;
  for (const label of labels) {
    if (label.length > MAX_LABEL_BYTES) {
      throw new InvalidRecordError(
        `Cannot encode the name ${JSON.stringify(name)} as a label must be at most ` +
          `${MAX_LABEL_BYTES} bytes: current length is ${label.length}`,
      );
    }
    size += label.length + 1;
  }
  if (size > MAX_NAME_BYTES) {
    throw new InvalidRecordError(
      `Cannot encode the name ${JSON.stringify(name)} as a name must be at most ` +
        `${MAX_NAME_BYTES} bytes in wire form: current length is ${size}`,
    );
  }
  return labels;
}

/** The uncompressed wire form of `name`: length-prefixed labels and a final zero byte. */
export function nameWireBytes(name: string): Uint8Array {
  const labels = nameLabelBytes(name);
  const out = new Uint8Array(labels.reduce((sum, label) => sum + label.length + 1, 1));
  let offset = 0;
  for (const label of labels) {
    out[offset++] = label.length;
    out.set(label, offset);
    offset += label.length;
  }
  out[offset] = 0;
  return out;
}

const IPV4_OCTET = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/**
 * The 4 bytes of a dotted IPv4 address (`"192.168.1.7"`); leading zeros are rejected.
 *
 * @throws {InvalidRecordError} when `address` is not a dotted IPv4 address.
 */
export function ipv4Bytes(address: string): Uint8Array {
  const parts = typeof address === "string" ? address.split(".") : [];
  if (parts.length !== 4 || !parts.every((part) => IPV4_OCTET.test(part))) {
    throw new InvalidRecordError(
      `Cannot encode an A record as its data must be a dotted IPv4 address: current value is ${
        JSON.stringify(address)
      }`,
    );
  }
  return Uint8Array.from(parts, Number);
}

/** The dotted form of 4 IPv4 address bytes. */
export function formatIpv4(bytes: Uint8Array): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

function invalidIpv6(address: unknown): InvalidRecordError {
  return new InvalidRecordError(
    `Cannot encode an AAAA record as its data must be an IPv6 address without zone: ` +
      `current value is ${JSON.stringify(address)}`,
  );
}

/** Parses hex groups (and a final dotted IPv4 part when `allowV4`) into 16-bit words. */
function ipv6Words(part: string, allowV4: boolean, address: string): number[] {
  if (part === "") return [];
  const groups = part.split(":");
  const words: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const group = groups[i];
    if (allowV4 && i === groups.length - 1 && group.includes(".")) {
      const v4 = ipv4Bytes(group);
      words.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else if (/^[0-9a-fA-F]{1,4}$/.test(group)) {
      words.push(parseInt(group, 16));
    } else {
      throw invalidIpv6(address);
    }
  }
  return words;
}

/**
 * The 16 bytes of an IPv6 address in text form (`"fe80::1"`, `"::ffff:10.0.0.1"`).
 *
 * @throws {InvalidRecordError} when `address` is not an IPv6 address (zones are rejected).
 */
export function ipv6Bytes(address: string): Uint8Array {
  if (typeof address !== "string" || address.length > 45) throw invalidIpv6(address);
  const halves = address.split("::");
  let words: number[];
  try {
    if (halves.length === 1) {
      words = ipv6Words(address, true, address);
      if (words.length !== 8) throw invalidIpv6(address);
    } else if (halves.length === 2) {
      const head = ipv6Words(halves[0], false, address);
      const tail = ipv6Words(halves[1], true, address);
      if (head.length + tail.length > 7) throw invalidIpv6(address);
      words = [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
    } else {
      throw invalidIpv6(address);
    }
  } catch {
    throw invalidIpv6(address);
  }
  const out = new Uint8Array(16);
  words.forEach((word, i) => {
    out[2 * i] = word >> 8;
    out[2 * i + 1] = word & 0xff;
  });
  return out;
}

/**
 * The RFC 5952 text form of 16 IPv6 address bytes: lower-case hex, no leading
 * zeros, the longest run of two or more zero words written `::` (the first
 * such run on a tie). Embedded IPv4 forms are not used.
 */
export function formatIpv6(bytes: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((bytes[i] << 8) | bytes[i + 1]);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = words.map((word) => word.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}

function u16(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new InvalidRecordError(
      `Cannot encode an SRV record as '${field}' must be an integer in 0..65535: ` +
        `current value is ${value}`,
    );
  }
  return value;
}

function srvBytes(data: { priority: number; weight: number; port: number; target: string }) {
  const target = nameWireBytes(data.target);
  const out = new Uint8Array(6 + target.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, u16(data.priority, "priority"));
  view.setUint16(2, u16(data.weight, "weight"));
  view.setUint16(4, u16(data.port, "port"));
  out.set(target, 6);
  return out;
}

/**
 * The wire form of TXT strings. No strings at all is written as one empty
 * string (a single zero byte), as RFC 6763 §6.1 requires.
 */
function txtBytes(strings: readonly Uint8Array[]): Uint8Array {
  if (!Array.isArray(strings)) {
    throw new InvalidRecordError(
      `Cannot encode a TXT record as its data must be an array of Uint8Array: current value is ${
        String(strings)
      }`,
    );
  }
  if (strings.length === 0) return new Uint8Array(1);
  let size = 0;
  for (const string of strings) {
    if (!(string instanceof Uint8Array) || string.length > MAX_TXT_STRING_BYTES) {
      throw new InvalidRecordError(
        `Cannot encode a TXT record as each string must be a Uint8Array of at most ` +
          `${MAX_TXT_STRING_BYTES} bytes: current value is ${
            string instanceof Uint8Array ? `${string.length} bytes long` : String(string)
          }`,
      );
    }
    size += string.length + 1;
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const string of strings) {
    out[offset++] = string.length;
    out.set(string, offset);
    offset += string.length;
  }
  return out;
}

/**
 * The type bitmap of an NSEC record in the single window (0) that mDNS uses
 * (RFC 6762 §6.1): window number, bitmap length, bitmap.
 */
function typeBitmapBytes(types: readonly RecordType[]): Uint8Array {
  if (!Array.isArray(types)) {
    throw new InvalidRecordError(
      `Cannot encode an NSEC record as 'types' must be an array: current value is ${String(types)}`,
    );
  }
  if (types.length === 0) return new Uint8Array(0);
  const codes = (types as readonly unknown[]).map((type) => {
    const code = recordTypeCode(type);
    if (code === undefined) {
      throw new InvalidRecordError(
        `Cannot encode an NSEC record as each type must be one of ` +
          `${[...RECORD_TYPES_BY_CODE.values()].join(", ")}: current value is ${String(type)}`,
      );
    }
    return code;
  });
  const length = (Math.max(...codes) >> 3) + 1;
  const out = new Uint8Array(2 + length);
  out[1] = length;
  for (const code of codes) out[2 + (code >> 3)] |= 0x80 >> (code & 7);
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * The RDATA of `record` in canonical wire form: names uncompressed and in the
 * case given (RFC 6762 §8.2 compares raw bytes), without the 2-byte RDLENGTH.
 * IPv6 addresses and NSEC bitmaps are canonical, so equal data gives equal bytes.
 *
 * @example
 * ```ts ignore
 * recordDataBytes({ name: "h.local", type: "A", ttl: 120, flush: true, data: "10.0.0.1" });
 * // Uint8Array [10, 0, 0, 1]
 * ```
 *
 * @throws {InvalidRecordError} when a field is out of range or malformed.
 */
export function recordDataBytes(record: MdnsRecord): Uint8Array {
  switch (record.type) {
    case "A":
      return ipv4Bytes(record.data);
    case "AAAA":
      return ipv6Bytes(record.data);
    case "PTR":
      return nameWireBytes(record.data);
    case "SRV":
      return srvBytes(record.data);
    case "TXT":
      return txtBytes(record.data);
    case "NSEC":
      return concat(nameWireBytes(record.data.nextDomain), typeBitmapBytes(record.data.types));
    default:
      throw new InvalidRecordError(
        `Cannot encode a record as its type must be one of ` +
          `${[...RECORD_TYPES_BY_CODE.values()].join(", ")}: current value is ${
            String((record as { type: unknown }).type)
          }`,
      );
  }
}

/** Compares bytes as unsigned values; a prefix is lesser. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/**
 * Tells whether two records are the same record: same name (case-insensitive,
 * see `nameKey`), same type and the same RDATA bytes. TTL and the cache-flush
 * bit are not compared.
 *
 * @throws {InvalidRecordError} when the data of either record is malformed.
 */
export function sameRecordData(a: MdnsRecord, b: MdnsRecord): boolean {
  return a.type === b.type && nameKey(a.name) === nameKey(b.name) &&
    compareBytes(recordDataBytes(a), recordDataBytes(b)) === 0;
}

function hex(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}

/**
 * A string unique per (`nameKey(name)`, type, RDATA bytes), for maps and
 * sets: `"<nameKey>|<type>|<rdata in hex>"`. Records for which
 * {@linkcode sameRecordData} holds have the same key.
 *
 * @throws {InvalidRecordError} when the record's data is malformed.
 */
export function recordKey(record: MdnsRecord): string {
  return `${nameKey(record.name)}|${record.type}|${hex(recordDataBytes(record))}`;
}

interface ProbeEntry {
  type: number;
  data: Uint8Array;
}

function probeEntries(records: readonly MdnsRecord[]): ProbeEntry[] {
  return records
    .map((record) => ({ type: recordTypeCode(record.type) ?? 0, data: recordDataBytes(record) }))
    .sort(compareProbeEntries);
}

function compareProbeEntries(a: ProbeEntry, b: ProbeEntry): number {
  // Every record is class IN (the cache-flush bit is excluded), so the class never decides.
  return a.type !== b.type ? a.type - b.type : compareBytes(a.data, b.data);
}

/**
 * The simultaneous-probe tie-break of RFC 6762 §8.2 and §8.2.1: each set is
 * sorted by (class, type, raw RDATA bytes), then the two are compared
 * pairwise and the first difference decides; a set that runs out first is
 * lesser. Pass only the records of the name being probed. TTL, the
 * cache-flush bit and the owner name are not compared.
 *
 * Returns a negative number when `ours` is lexicographically earlier (we lose
 * and must defer, then probe again), 0 when both sets are identical, and a
 * positive number when ours is later (we win).
 *
 * @example
 * ```ts ignore
 * const ours = [{ name: "h.local", type: "A", ttl: 120, flush: true, data: "169.254.99.200" }];
 * const theirs = [{ name: "h.local", type: "A", ttl: 120, flush: true, data: "169.254.200.50" }];
 * compareProbeRecords(ours, theirs) < 0; // true: we lose
 * ```
 *
 * @throws {InvalidRecordError} when the data of a record is malformed.
 */
export function compareProbeRecords(
  ours: readonly MdnsRecord[],
  theirs: readonly MdnsRecord[],
): number {
  const a = probeEntries(ours);
  const b = probeEntries(theirs);
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const order = compareProbeEntries(a[i], b[i]);
    if (order !== 0) return Math.sign(order);
  }
  return Math.sign(a.length - b.length);
}
