/**
 * The DNS wire codec of the mDNS engine (private): {@linkcode decodeMessage},
 * {@linkcode encodeMessage} and {@linkcode encodeMessages} between packets and
 * the plain {@linkcode MdnsMessage} of `_types.ts`.
 *
 * The codec is written for mDNS rather than wrapping `npm:dns-packet`, whose
 * name codec cannot carry a label containing a dot (DNS-SD instance names may,
 * RFC 6763 §4.3), decodes bad UTF-8 lossily, ignores RDLENGTH for PTR data and
 * never compresses names (RFC 6762 §18.14 says SHOULD). The tests check this
 * codec against dns-packet both ways.
 *
 * Decoding is strict and total: anything malformed throws
 * {@linkcode MdnsDecodeError}, and nothing else is ever thrown. Names use the
 * escapes of `_records.ts` (`\.` for a dot inside a label, `\\` for a
 * backslash).
 *
 * @module
 */

import type { MdnsMessage, MdnsQuestion, MdnsRecord, QuestionType, RecordType } from "./_types.ts";
import {
  CLASS_IN,
  escapeLabel,
  formatIpv4,
  formatIpv6,
  InvalidRecordError,
  MAX_NAME_BYTES,
  nameLabelBytes,
  RECORD_TYPES_BY_CODE,
  recordDataBytes,
  recordTypeCode,
  splitName,
  TYPE_CODES,
} from "./_records.ts";

/**
 * The largest mDNS payload of one IPv4 packet on a 1500-byte Ethernet MTU:
 * 1500 − 20 (IPv4 header) − 8 (UDP header).
 */
export const DEFAULT_MAX_PACKET_BYTES = 1472;

/** The class ANY, accepted in questions as IN. */
const CLASS_ANY = 255;
/** The top bit of a class field: QU in questions, cache-flush in records. */
const TOP_BIT = 0x8000;
/** The DNS header size. */
const HEADER_BYTES = 12;
/** Names at offsets from here on cannot be the target of a compression pointer. */
const MAX_POINTER_OFFSET = 0x3fff;
/** The largest TTL; RFC 2181 §8 reads larger values as 0. */
const MAX_TTL = 0x7fffffff;

const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;

/** A packet is not a well-formed mDNS message, or must be ignored (opcode or rcode not 0). */
export class MdnsDecodeError extends Error {
  /** Creates the error; the message says what was malformed and where. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MdnsDecodeError";
  }
}

/**
 * Counters that {@linkcode decodeMessage} adds to when it skips something it
 * does not handle. They are only updated when the message decodes.
 */
export interface DecodeStats {
  /** Questions skipped for an unknown type or a class other than IN/ANY. */
  skippedQuestions: number;
  /** Records skipped for an unknown type (OPT, HINFO, …) or a class other than IN. */
  skippedRecords: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Reads a packet with bounds checks; every failure is a {@linkcode MdnsDecodeError}. */
class Reader {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  offset = 0;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(count: number, what: string): void {
    if (this.offset + count > this.bytes.length) {
      throw new MdnsDecodeError(
        `Cannot decode an mDNS message as ${what} at offset ${this.offset} needs ${count} ` +
          `bytes but the packet is ${this.bytes.length} bytes long`,
      );
    }
  }

  u16(what: string): number {
    this.need(2, what);
    const value = this.view.getUint16(this.offset);
    this.offset += 2;
    return value;
  }

  u32(what: string): number {
    this.need(4, what);
    const value = this.view.getUint32(this.offset);
    this.offset += 4;
    return value;
  }

  /**
   * Reads a possibly compressed name at the current offset and moves past it.
   * Every pointer must point before the labels it continues, so decoding ends.
   */
  name(what: string): string {
    const bytes = this.bytes;
    const labels: string[] = [];
    let pos = this.offset;
    let limit = this.offset;
    let next = -1;
    let size = 1;
    for (;;) {
      if (pos >= bytes.length) throw this.nameError(what, pos, "runs past the end of the packet");
      const length = bytes[pos];
      if (length === 0) {
        pos += 1;
        break;
      }
      const kind = length & 0xc0;
      if (kind === 0xc0) {
        if (pos + 1 >= bytes.length) throw this.nameError(what, pos, "has a cut pointer");
        const target = ((length & 0x3f) << 8) | bytes[pos + 1];
        if (target >= limit) {
          throw this.nameError(what, pos, `has a pointer to ${target} that does not point back`);
        }
        if (next < 0) next = pos + 2;
        limit = target;
        pos = target;
        continue;
      }
      if (kind !== 0) {
        throw this.nameError(what, pos, `has an unknown label type 0x${kind.toString(16)}`);
      }
      if (pos + 1 + length > bytes.length) {
        throw this.nameError(what, pos, "has a label that runs past the end of the packet");
      }
      size += length + 1;
      if (size > MAX_NAME_BYTES) {
        throw this.nameError(what, pos, `is longer than ${MAX_NAME_BYTES} bytes`);
      }
      labels.push(this.label(bytes.subarray(pos + 1, pos + 1 + length), what, pos));
      pos += 1 + length;
    }
    this.offset = next < 0 ? pos : next;
    return labels.join(".");
  }

  label(raw: Uint8Array, what: string, pos: number): string {
    try {
      return escapeLabel(utf8.decode(raw));
    } catch {
      throw this.nameError(what, pos, "has a label that is not valid UTF-8");
    }
  }

  nameError(what: string, pos: number, problem: string): MdnsDecodeError {
    return new MdnsDecodeError(
      `Cannot decode an mDNS message as the name of ${what} (at offset ${pos}) ${problem}`,
    );
  }
}

interface Header {
  id: number;
  response: boolean;
  authoritative: boolean;
  truncated: boolean;
  counts: [number, number, number, number];
}

function readHeader(reader: Reader): Header {
  if (reader.bytes.length < HEADER_BYTES) {
    throw new MdnsDecodeError(
      `Cannot decode an mDNS message as it must be at least ${HEADER_BYTES} bytes long: ` +
        `current length is ${reader.bytes.length}`,
    );
  }
  const id = reader.u16("the id");
  const flags = reader.u16("the flags");
  const opcode = (flags >> 11) & 0xf;
  const rcode = flags & 0xf;
  if (opcode !== 0 || rcode !== 0) {
    throw new MdnsDecodeError(
      `Cannot decode an mDNS message as its opcode and rcode must be 0 (RFC 6762 §18.3, ` +
        `§18.11): current values are ${opcode} and ${rcode}`,
    );
  }
  const counts: Header["counts"] = [
    reader.u16("the question count"),
    reader.u16("the answer count"),
    reader.u16("the authority count"),
    reader.u16("the additional count"),
  ];
  // Each question takes at least 5 bytes and each record at least 11.
  const least = HEADER_BYTES + counts[0] * 5 + (counts[1] + counts[2] + counts[3]) * 11;
  if (least > reader.bytes.length) {
    throw new MdnsDecodeError(
      `Cannot decode an mDNS message as its counts (${counts.join(", ")}) need at least ` +
        `${least} bytes but the packet is ${reader.bytes.length} bytes long`,
    );
  }
  return {
    id,
    response: (flags & FLAG_QR) !== 0,
    authoritative: (flags & FLAG_AA) !== 0,
    truncated: (flags & FLAG_TC) !== 0,
    counts,
  };
}

function questionType(code: number): QuestionType | undefined {
  return code === TYPE_CODES.ANY ? "ANY" : RECORD_TYPES_BY_CODE.get(code);
}

function readQuestion(reader: Reader, index: number): MdnsQuestion | undefined {
  const what = `question ${index}`;
  const name = reader.name(what);
  const type = questionType(reader.u16(`the type of ${what}`));
  const klass = reader.u16(`the class of ${what}`);
  const base = klass & ~TOP_BIT;
  if (type === undefined || (base !== CLASS_IN && base !== CLASS_ANY)) return undefined;
  return { name, type, unicastResponse: (klass & TOP_BIT) !== 0 };
}

/** Reads a name that must end exactly at `end` (the end of its RDATA). */
function rdataName(reader: Reader, what: string, end: number): string {
  const name = reader.name(what);
  if (reader.offset !== end) {
    throw new MdnsDecodeError(
      `Cannot decode an mDNS message as the RDATA of ${what} ends at offset ${end} but its ` +
        `name ends at ${reader.offset}`,
    );
  }
  return name;
}

function rdataError(what: string, problem: string): MdnsDecodeError {
  return new MdnsDecodeError(`Cannot decode an mDNS message as the RDATA of ${what} ${problem}`);
}

function fixedLength(what: string, length: number, wanted: number): void {
  if (length !== wanted) {
    throw rdataError(what, `must be ${wanted} bytes long: current length is ${length}`);
  }
}

/**
 * Reads TXT strings. Empty RDATA reads as one empty string, which is how it
 * is written back (RFC 6763 §6.1 treats both alike), so a decoded message
 * re-encodes to the same message.
 */
function readTxt(reader: Reader, what: string, end: number): Uint8Array[] {
  const strings: Uint8Array[] = [];
  const bytes = reader.bytes;
  let pos = reader.offset;
  if (pos === end) strings.push(new Uint8Array(0));
  while (pos < end) {
    const length = bytes[pos];
    if (pos + 1 + length > end) {
      throw new MdnsDecodeError(
        `Cannot decode an mDNS message as a string of ${what} (at offset ${pos}) runs past ` +
          `the end of its RDATA`,
      );
    }
    strings.push(bytes.slice(pos + 1, pos + 1 + length));
    pos += 1 + length;
  }
  reader.offset = end;
  return strings;
}

function readTypeBitmaps(reader: Reader, what: string, end: number): RecordType[] {
  const types: RecordType[] = [];
  const bytes = reader.bytes;
  let pos = reader.offset;
  let lastWindow = -1;
  while (pos < end) {
    const window = bytes[pos];
    const length = pos + 1 < end ? bytes[pos + 1] : 0;
    if (window <= lastWindow || length < 1 || length > 32 || pos + 2 + length > end) {
      throw new MdnsDecodeError(
        `Cannot decode an mDNS message as the type bitmap of ${what} (at offset ${pos}) must be ` +
          `windows in increasing order with 1 to 32 bytes each, within its RDATA`,
      );
    }
    lastWindow = window;
    for (let i = 0; i < length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        if ((bytes[pos + 2 + i] & (0x80 >> bit)) === 0) continue;
        const type = RECORD_TYPES_BY_CODE.get((window << 8) | (i << 3) | bit);
        if (type !== undefined) types.push(type);
      }
    }
    pos += 2 + length;
  }
  reader.offset = end;
  return types;
}

/** Reads the RDATA of a record of a known type, which must fill exactly `length` bytes. */
function readData(
  reader: Reader,
  type: RecordType,
  what: string,
  length: number,
): MdnsRecord["data"] {
  const start = reader.offset;
  const end = start + length;
  switch (type) {
    case "A":
      fixedLength(what, length, 4);
      reader.offset = end;
      return formatIpv4(reader.bytes.subarray(start, end));
    case "AAAA":
      fixedLength(what, length, 16);
      reader.offset = end;
      return formatIpv6(reader.bytes.subarray(start, end));
    case "PTR":
      return rdataName(reader, what, end);
    case "SRV": {
      if (length < 7) {
        throw rdataError(what, `must be at least 7 bytes long: current length is ${length}`);
      }
      const priority = reader.u16(`the priority of ${what}`);
      const weight = reader.u16(`the weight of ${what}`);
      const port = reader.u16(`the port of ${what}`);
      return { priority, weight, port, target: rdataName(reader, what, end) };
    }
    case "TXT":
      return readTxt(reader, what, end);
    case "NSEC": {
      const nextDomain = reader.name(`the next domain of ${what}`);
      if (reader.offset > end) {
        throw rdataError(what, `is ${length} bytes long, shorter than its name`);
      }
      return { nextDomain, types: readTypeBitmaps(reader, what, end) };
    }
  }
}

function readRecord(reader: Reader, what: string): MdnsRecord | undefined {
  const name = reader.name(what);
  const code = reader.u16(`the type of ${what}`);
  const klass = reader.u16(`the class of ${what}`);
  const rawTtl = reader.u32(`the TTL of ${what}`);
  const length = reader.u16(`the RDATA length of ${what}`);
  reader.need(length, `the RDATA of ${what}`);
  const type = RECORD_TYPES_BY_CODE.get(code);
  if (type === undefined || (klass & ~TOP_BIT) !== CLASS_IN) {
    reader.offset += length;
    return undefined;
  }
  const data = readData(reader, type, what, length);
  const ttl = rawTtl > MAX_TTL ? 0 : rawTtl;
  return { name, type, ttl, flush: (klass & TOP_BIT) !== 0, data } as MdnsRecord;
}

const SECTIONS = ["answer", "authority", "additional"] as const;

/**
 * Decodes one mDNS packet.
 *
 * Questions and records of types the engine does not know, or of classes
 * other than IN (ANY is accepted for questions), are skipped and counted in
 * `stats` when given. TTLs above 2³¹−1 read as 0 (RFC 2181 §8). Bytes after
 * the last record are ignored. TXT strings are fresh copies. Names have no
 * trailing dot and use the escapes of `_records.ts`.
 *
 * @example
 * ```ts ignore
 * try {
 *   const message = decodeMessage(datagram.data);
 * } catch (error) {
 *   if (!(error instanceof MdnsDecodeError)) throw error; // never happens
 *   // drop the packet and count it
 * }
 * ```
 *
 * @throws {MdnsDecodeError} when the packet is malformed (truncated, a bad
 * name or pointer, RDATA that does not match its length or type, labels that
 * are not UTF-8, …) or has an opcode or rcode other than 0 (RFC 6762 §18.3,
 * §18.11: such messages are ignored). Nothing else is ever thrown.
 */
export function decodeMessage(bytes: Uint8Array, stats?: DecodeStats): MdnsMessage {
  if (!(bytes instanceof Uint8Array)) {
    throw new MdnsDecodeError(
      `Cannot decode an mDNS message as it must be a Uint8Array: current value is ${
        Object.prototype.toString.call(bytes)
      }`,
    );
  }
  try {
    const reader = new Reader(bytes);
    const header = readHeader(reader);
    let skippedQuestions = 0;
    let skippedRecords = 0;
    const questions: MdnsQuestion[] = [];
    for (let i = 0; i < header.counts[0]; i++) {
      const question = readQuestion(reader, i);
      if (question === undefined) skippedQuestions++;
      else questions.push(question);
    }
    const sections: MdnsRecord[][] = [[], [], []];
    for (let s = 0; s < 3; s++) {
      for (let i = 0; i < header.counts[s + 1]; i++) {
        const record = readRecord(reader, `${SECTIONS[s]} ${i}`);
        if (record === undefined) skippedRecords++;
        else sections[s].push(record);
      }
    }
    if (stats !== undefined) {
      stats.skippedQuestions += skippedQuestions;
      stats.skippedRecords += skippedRecords;
    }
    return {
      id: header.id,
      response: header.response,
      authoritative: header.authoritative,
      truncated: header.truncated,
      questions,
      answers: sections[0],
      authorities: sections[1],
      additionals: sections[2],
    };
  } catch (error) {
    if (error instanceof MdnsDecodeError) throw error;
    throw new MdnsDecodeError(
      `Cannot decode an mDNS message as decoding failed unexpectedly: ${
        error instanceof Error ? error.message : String(error)
      }`,
      { cause: error },
    );
  }
}

/** Writes a packet into a growing buffer, compressing names, with rollback to a mark. */
class Writer {
  buffer = new Uint8Array(512);
  length = 0;
  readonly #names = new Map<string, number>();
  readonly #added: string[] = [];

  mark(): [number, number] {
    return [this.length, this.#added.length];
  }

  reset([length, added]: [number, number]): void {
    this.length = length;
    for (const key of this.#added.splice(added)) this.#names.delete(key);
  }

  reserve(count: number): number {
    if (this.length + count > this.buffer.length) {
      const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.length + count));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    const at = this.length;
    this.length += count;
    return at;
  }

  u16(value: number): void {
    const at = this.reserve(2);
    this.buffer[at] = value >> 8;
    this.buffer[at + 1] = value & 0xff;
  }

  u32(value: number): void {
    this.u16(Math.floor(value / 0x10000));
    this.u16(value % 0x10000);
  }

  u16At(at: number, value: number): void {
    this.buffer[at] = value >> 8;
    this.buffer[at + 1] = value & 0xff;
  }

  bytes(data: Uint8Array): void {
    const at = this.reserve(data.length);
    this.buffer.set(data, at);
  }

  /** Writes `name`, pointing to an earlier copy of its longest suffix already written. */
  name(name: string): void {
    const wire = nameLabelBytes(name);
    const labels = splitName(name);
    for (let i = 0; i < labels.length; i++) {
      const key = labels.slice(i).map(escapeLabel).join(".");
      const target = this.#names.get(key);
      if (target !== undefined) {
        this.u16(0xc000 | target);
        return;
      }
      if (this.length <= MAX_POINTER_OFFSET) {
        this.#names.set(key, this.length);
        this.#added.push(key);
      }
      const at = this.reserve(wire[i].length + 1);
      this.buffer[at] = wire[i].length;
      this.buffer.set(wire[i], at + 1);
    }
    this.bytes(new Uint8Array(1));
  }

  result(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

function checkTtl(record: MdnsRecord): number {
  const ttl = record.ttl;
  if (!Number.isInteger(ttl) || ttl < 0 || ttl > MAX_TTL) {
    throw new InvalidRecordError(
      `Cannot encode the ${record.type} record of ${JSON.stringify(record.name)} as 'ttl' ` +
        `must be an integer in 0..${MAX_TTL}: current value is ${ttl}`,
    );
  }
  return ttl;
}

function writeRecord(writer: Writer, record: MdnsRecord): void {
  const code = recordTypeCode(record.type);
  if (code === undefined) recordDataBytes(record); // throws the error that explains
  const ttl = checkTtl(record);
  writer.name(record.name);
  writer.u16(code!);
  writer.u16(CLASS_IN | (record.flush ? TOP_BIT : 0));
  writer.u32(ttl);
  const lengthAt = writer.reserve(2);
  const start = writer.length;
  if (record.type === "PTR") {
    writer.name(record.data);
  } else if (record.type === "SRV") {
    const wire = recordDataBytes(record); // validates the fields and the target
    writer.bytes(wire.subarray(0, 6));
    writer.name(record.data.target);
  } else {
    writer.bytes(recordDataBytes(record));
  }
  writer.u16At(lengthAt, writer.length - start);
}

function writeQuestion(writer: Writer, question: MdnsQuestion): void {
  const code = question.type === "ANY" ? TYPE_CODES.ANY : recordTypeCode(question.type);
  if (code === undefined) {
    throw new InvalidRecordError(
      `Cannot encode the question for ${JSON.stringify(question.name)} as its type must be ` +
        `one of ${Object.keys(TYPE_CODES).join(", ")}: current value is ${String(question.type)}`,
    );
  }
  writer.name(question.name);
  writer.u16(code);
  writer.u16(CLASS_IN | (question.unicastResponse ? TOP_BIT : 0));
}

function checkMessage(message: MdnsMessage): void {
  if (!Number.isInteger(message.id) || message.id < 0 || message.id > 0xffff) {
    throw new RangeError(
      `Cannot encode an mDNS message as 'id' must be an integer in 0..65535: current value is ${message.id}`,
    );
  }
  for (const key of ["questions", "answers", "authorities", "additionals"] as const) {
    const list = message[key];
    if (!Array.isArray(list) || list.length > 0xffff) {
      throw new RangeError(
        `Cannot encode an mDNS message as '${key}' must be an array of at most 65535 entries: ` +
          `current value is ${Array.isArray(list) ? `${list.length} entries` : String(list)}`,
      );
    }
  }
}

/** The 12-byte header of a message with the given section counts. */
function writeHeader(
  writer: Writer,
  message: MdnsMessage,
  truncated: boolean,
  counts: readonly number[],
): void {
  writer.u16(message.id);
  writer.u16(
    (message.response ? FLAG_QR : 0) | (message.authoritative ? FLAG_AA : 0) |
      (truncated ? FLAG_TC : 0),
  );
  for (const count of counts) writer.u16(count);
}

/**
 * Encodes a message as one packet, names compressed (RFC 6762 §18.14; the
 * NSEC next domain is left uncompressed). There is no size limit other than
 * the 65535 entries per section; use {@linkcode encodeMessages} to fit an MTU.
 *
 * @example
 * ```ts ignore
 * const packet = encodeMessage({ ...emptyMessage(false), questions: [
 *   { name: "_http._tcp.local", type: "PTR", unicastResponse: true },
 * ] });
 * ```
 *
 * @throws {RangeError} when `id` or a section size is out of range.
 * @throws {InvalidRecordError} when a question or record has a malformed field.
 */
export function encodeMessage(message: MdnsMessage): Uint8Array {
  checkMessage(message);
  const writer = new Writer();
  writeHeader(writer, message, message.truncated, [
    message.questions.length,
    message.answers.length,
    message.authorities.length,
    message.additionals.length,
  ]);
  for (const question of message.questions) writeQuestion(writer, question);
  for (const list of [message.answers, message.authorities, message.additionals]) {
    for (const record of list) writeRecord(writer, record);
  }
  return writer.result();
}

/** One packet being filled by {@linkcode encodeMessages}. */
class PacketBuilder {
  readonly writer = new Writer();
  readonly counts = [0, 0, 0, 0];

  constructor(message: MdnsMessage) {
    writeHeader(this.writer, message, false, this.counts);
  }

  /** Appends an entry to section `section` if the packet stays within `maxBytes`. */
  tryAdd(section: number, write: (writer: Writer) => void, maxBytes: number): boolean {
    const mark = this.writer.mark();
    write(this.writer);
    if (this.writer.length > maxBytes) {
      this.writer.reset(mark);
      return false;
    }
    this.counts[section]++;
    return true;
  }

  finish(message: MdnsMessage, truncated: boolean): Uint8Array {
    const packet = this.writer.result();
    const flags = (message.response ? FLAG_QR : 0) | (message.authoritative ? FLAG_AA : 0) |
      (truncated ? FLAG_TC : 0);
    const view = new DataView(packet.buffer);
    view.setUint16(2, flags);
    this.counts.forEach((count, i) => view.setUint16(4 + 2 * i, count));
    return packet;
  }
}

function tooBig(what: string, name: string, maxBytes: number): RangeError {
  return new RangeError(
    `Cannot encode an mDNS message in packets of at most ${maxBytes} bytes as the ${what} of ` +
      `${JSON.stringify(name)} does not fit in a packet of its own`,
  );
}

/**
 * Encodes a message as one or more packets of at most `maxBytes` bytes each
 * (RFC 6762 §7.2, §17).
 *
 * Questions, answers and authorities are placed in order, a new packet being
 * started when the next one does not fit. In a query, every packet but the
 * last has the TC bit set, so that responders wait for the known answers that
 * follow (RFC 6762 §7.2); the last one keeps `message.truncated`. In a
 * response, additional records are optional: each goes into the first packet
 * that still has room for it and is dropped when none has. In a query they
 * are placed like the other records.
 *
 * @example
 * ```ts ignore
 * for (const packet of encodeMessages(response, DEFAULT_MAX_PACKET_BYTES)) {
 *   await transport.send(packet);
 * }
 * ```
 *
 * @throws {RangeError} when `maxBytes` is not an integer in 12..65535, or a
 * question, answer or authority does not fit alone in a packet.
 * @throws {InvalidRecordError} when a question or record has a malformed field.
 */
export function encodeMessages(message: MdnsMessage, maxBytes: number): Uint8Array[] {
  if (!Number.isInteger(maxBytes) || maxBytes < HEADER_BYTES || maxBytes > 0xffff) {
    throw new RangeError(
      `Cannot encode an mDNS message as 'maxBytes' must be an integer in ${HEADER_BYTES}..65535: ` +
        `current value is ${maxBytes}`,
    );
  }
  checkMessage(message);
  const packets = [new PacketBuilder(message)];
  const place = (section: number, what: string, name: string, write: (w: Writer) => void) => {
    if (packets.at(-1)!.tryAdd(section, write, maxBytes)) return;
    const fresh = new PacketBuilder(message);
    if (!fresh.tryAdd(section, write, maxBytes)) throw tooBig(what, name, maxBytes);
    packets.push(fresh);
  };
  for (const question of message.questions) {
    place(0, "question", question.name, (w) => writeQuestion(w, question));
  }
  for (const record of message.answers) {
    place(1, `${record.type} answer`, record.name, (w) => writeRecord(w, record));
  }
  for (const record of message.authorities) {
    place(2, `${record.type} authority`, record.name, (w) => writeRecord(w, record));
  }
  for (const record of message.additionals) {
    const write = (w: Writer) => writeRecord(w, record);
    if (!message.response) {
      place(3, `${record.type} additional`, record.name, write);
      continue;
    }
    // Validate even a record that ends up dropped, so that bad input is never silent.
    recordDataBytes(record);
    checkTtl(record);
    packets.find((packet) => packet.tryAdd(3, write, maxBytes));
  }
  return packets.map((packet, i) =>
    packet.finish(
      message,
      i < packets.length - 1 ? !message.response : message.truncated,
    )
  );
}
