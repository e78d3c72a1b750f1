import fc from "fast-check";
import { Buffer } from "node:buffer";
import { assert, assertEquals, assertThrows } from "../_assert.ts";
import {
  decodeMessage,
  type DecodeStats,
  DEFAULT_MAX_PACKET_BYTES,
  encodeMessage,
  encodeMessages,
  MdnsDecodeError,
} from "../../discovery/mdns/_codec.ts";
import {
  InvalidRecordError,
  joinLabels,
  RECORD_TYPES_BY_CODE,
  recordKey,
  splitName,
} from "../../discovery/mdns/_records.ts";
import {
  emptyMessage,
  type MdnsMessage,
  type MdnsQuestion,
  type MdnsRecord,
  type QuestionType,
  type RecordType,
} from "../../discovery/mdns/_types.ts";

/**
 * The part of dns-packet's API these tests use as an independent implementation to check the
 * codec against. A static import would bring `@types/dns-packet` into the type check, and with
 * it an `@types/node` (26.x) whose `node:assert` typings reject `tests/_assert.ts`; so the package
 * is imported through a specifier the checker does not follow, and the few signatures needed
 * are declared here.
 */
interface DnsPacket {
  AUTHORITATIVE_ANSWER: number;
  encode(packet: Record<string, unknown>): Buffer;
  decode(packet: Buffer): {
    id: number;
    flag_aa: boolean;
    questions: Record<string, unknown>[];
    answers: Record<string, unknown>[];
    additionals: Record<string, unknown>[];
  };
}
const DNS_PACKET = "dns-packet";
const dnsPacket = (await import(DNS_PACKET)).default as DnsPacket;

const SEED = 0x6d646e73;
const text = new TextEncoder();

/** Bytes from a list of numbers and strings (each string as its UTF-8 bytes). */
function bytes(...parts: (number | string | number[])[]): Uint8Array {
  const out: number[] = [];
  for (const part of parts) {
    if (typeof part === "number") out.push(part);
    else if (typeof part === "string") out.push(...text.encode(part));
    else out.push(...part);
  }
  return Uint8Array.from(out);
}

/** A name in uncompressed wire form. */
function wireName(...labels: string[]): number[] {
  return [...labels.flatMap((label) => [text.encode(label).length, ...text.encode(label)]), 0];
}

function message(fields: Partial<MdnsMessage>): MdnsMessage {
  return { ...emptyMessage(fields.response ?? false), ...fields };
}

const instance = "Living Room\\.v2._tsercom._tcp.local";

const everyRecord: MdnsRecord[] = [
  { name: "host.local", type: "A", ttl: 120, flush: true, data: "192.168.1.10" },
  { name: "host.local", type: "AAAA", ttl: 120, flush: true, data: "fe80::1:2" },
  { name: "_tsercom._tcp.local", type: "PTR", ttl: 4500, flush: false, data: instance },
  {
    name: instance,
    type: "SRV",
    ttl: 120,
    flush: true,
    data: { priority: 1, weight: 2, port: 65535, target: "host.local" },
  },
  {
    name: instance,
    type: "TXT",
    ttl: 4500,
    flush: true,
    data: [text.encode("name=Küche"), new Uint8Array([0, 255, 61]), new Uint8Array(0)],
  },
  {
    name: "host.local",
    type: "NSEC",
    ttl: 120,
    flush: true,
    data: { nextDomain: "host.local", types: ["A", "AAAA"] },
  },
];

Deno.test("encodeMessage and decodeMessage round-trip every record type", async (t) => {
  await t.step("each type in each section, with and without the cache-flush bit", () => {
    for (const record of everyRecord) {
      for (const flush of [false, true]) {
        const r = { ...record, flush } as MdnsRecord;
        const m = message({ response: true, answers: [r], authorities: [r], additionals: [r] });
        assertEquals(decodeMessage(encodeMessage(m)), m);
      }
    }
  });

  await t.step("every question type, with and without the QU bit", () => {
    const types: QuestionType[] = ["A", "AAAA", "PTR", "SRV", "TXT", "NSEC", "ANY"];
    const questions: MdnsQuestion[] = types.flatMap((type) => [
      { name: "x.local", type, unicastResponse: false },
      { name: "x.local", type, unicastResponse: true },
    ]);
    const m = message({ questions });
    assertEquals(decodeMessage(encodeMessage(m)), m);
  });

  await t.step("the header's id and QR, AA and TC flags survive", () => {
    for (
      const [response, authoritative, truncated] of [[true, true, false], [false, false, true]]
    ) {
      const m = message({ id: 0xbeef, response, authoritative, truncated });
      assertEquals(decodeMessage(encodeMessage(m)), m);
    }
  });

  await t.step("the QU and cache-flush bits are the top bit of the class field", () => {
    const query = encodeMessage(message({
      questions: [{ name: "a.local", type: "A", unicastResponse: true }],
    }));
    assertEquals([...query.subarray(-4)], [0, 1, 0x80, 1]);
    const answer = encodeMessage(message({ response: true, answers: [everyRecord[0]] }));
    // After the 12-byte header and the 12 bytes of "host.local": type A, class IN + flush.
    assertEquals([...answer.subarray(24, 28)], [0, 1, 0x80, 1]);
  });

  await t.step("TTL 0 (a goodbye) and the largest TTL survive", () => {
    for (const ttl of [0, 0x7fffffff]) {
      const m = message({ response: true, answers: [{ ...everyRecord[0], ttl }] });
      assertEquals(decodeMessage(encodeMessage(m)).answers[0].ttl, ttl);
    }
  });

  await t.step("a TXT record without strings is sent as one empty string (RFC 6763 §6.1)", () => {
    const record: MdnsRecord = { name: "i.local", type: "TXT", ttl: 1, flush: true, data: [] };
    const packet = encodeMessage(message({ response: true, answers: [record] }));
    assertEquals([...packet.subarray(-3)], [0, 1, 0]);
    assertEquals(decodeMessage(packet).answers[0].data, [new Uint8Array(0)]);
  });

  await t.step("decoded TXT strings are copies, not views of the packet", () => {
    const packet = encodeMessage(message({ response: true, answers: [everyRecord[4]] }));
    const strings = decodeMessage(packet).answers[0].data as Uint8Array[];
    packet.fill(0);
    assertEquals(new TextDecoder().decode(strings[0]), "name=Küche");
    assert(strings.every((s) => s.constructor === Uint8Array && s.byteOffset === 0));
  });

  await t.step("IPv6 addresses come back in RFC 5952 form", () => {
    const record: MdnsRecord = {
      name: "h.local",
      type: "AAAA",
      ttl: 1,
      flush: true,
      data: "2001:DB8:0:0:0:0:2:1",
    };
    const decoded = decodeMessage(encodeMessage(message({ response: true, answers: [record] })));
    assertEquals(decoded.answers[0].data, "2001:db8::2:1");
  });

  await t.step("a dot inside a label travels as part of that label", () => {
    const packet = encodeMessage(message({ response: true, answers: [everyRecord[2]] }));
    const decoded = dnsPacket.decode(Buffer.from(packet));
    // dns-packet cannot show the dot, but the wire has 3 labels after the instance label.
    assertEquals(
      (decoded.answers![0] as { data: string }).data,
      "Living Room.v2._tsercom._tcp.local",
    );
    assertEquals(decodeMessage(packet).answers[0].data, instance);
    assertEquals(splitName(instance)[0], "Living Room.v2");
  });

  await t.step("names are compressed: a repeated suffix costs a 2-byte pointer", () => {
    const one = encodeMessage(message({ response: true, answers: [everyRecord[0]] }));
    const two = encodeMessage(message({
      response: true,
      answers: [everyRecord[0], { ...everyRecord[0], data: "192.168.1.11" } as MdnsRecord],
    }));
    assertEquals(two.length - one.length, 2 + 10 + 4);
  });

  await t.step("the root name is the empty string", () => {
    const m = message({ questions: [{ name: "", type: "ANY", unicastResponse: false }] });
    assertEquals(decodeMessage(encodeMessage(m)), m);
  });
});

Deno.test("the codec agrees with dns-packet", async (t) => {
  await t.step("dns-packet reads what encodeMessage writes", () => {
    const m = message({
      response: true,
      questions: [{ name: "q.local", type: "ANY", unicastResponse: false }],
      answers: everyRecord.filter((r) => r.type !== "PTR"),
    });
    const decoded = dnsPacket.decode(Buffer.from(encodeMessage(m)));
    assertEquals(decoded.flag_aa, true);
    assertEquals(decoded.questions, [{ name: "q.local", type: "ANY", class: "IN" }]);
    assertEquals(
      decoded.answers!.map((a) => {
        const { name, type, ttl, flush } = a as {
          name: string;
          type: string;
          ttl: number;
          flush: boolean;
        };
        return [name, type, ttl, flush];
      }),
      m.answers.map((r) => [r.name.replace(/\\\./g, "."), r.type, r.ttl, r.flush]),
    );
    const [a, aaaa, srv, txt, nsec] = decoded.answers!.map((r) => (r as { data: unknown }).data);
    assertEquals([a, aaaa], ["192.168.1.10", "fe80::1:2"]);
    assertEquals(srv, { priority: 1, weight: 2, port: 65535, target: "host.local" });
    assertEquals(
      (txt as Buffer[]).map((b) => [...b]),
      (everyRecord[4].data as Uint8Array[]).map((b) => [...b]),
    );
    assertEquals(nsec, { nextDomain: "host.local", rrtypes: ["A", "AAAA"] });
  });

  await t.step("decodeMessage reads what dns-packet writes", () => {
    const packet = dnsPacket.encode({
      type: "response",
      id: 7,
      flags: dnsPacket.AUTHORITATIVE_ANSWER,
      answers: [
        { name: "_x._tcp.local", type: "PTR", ttl: 4500, data: "i._x._tcp.local" },
        {
          name: "i._x._tcp.local",
          type: "SRV",
          ttl: 120,
          flush: true,
          data: { port: 9, target: "h.local" },
        },
        { name: "i._x._tcp.local", type: "TXT", ttl: 4500, flush: true, data: ["k=v"] },
        { name: "h.local", type: "AAAA", ttl: 120, flush: true, data: "::ffff:10.0.0.1" },
      ],
    });
    assertEquals(
      decodeMessage(new Uint8Array(packet)),
      message({
        id: 7,
        response: true,
        answers: [
          { name: "_x._tcp.local", type: "PTR", ttl: 4500, flush: false, data: "i._x._tcp.local" },
          {
            name: "i._x._tcp.local",
            type: "SRV",
            ttl: 120,
            flush: true,
            data: { priority: 0, weight: 0, port: 9, target: "h.local" },
          },
          {
            name: "i._x._tcp.local",
            type: "TXT",
            ttl: 4500,
            flush: true,
            data: [text.encode("k=v")],
          },
          { name: "h.local", type: "AAAA", ttl: 120, flush: true, data: "::ffff:a00:1" },
        ],
      }),
    );
  });
});

/**
 * An announcement as avahi sends it for `Demo._http._tcp.local` on `box.local:8080`: PTR
 * (shared), SRV, TXT and A (cache-flush), names compressed.
 */
const AVAHI_ANNOUNCEMENT = bytes(
  [0x00, 0x00, 0x84, 0x00, 0, 0, 0, 4, 0, 0, 0, 0], // id 0, QR|AA, 4 answers
  // @12 PTR _http._tcp.local -> Demo.<@12>
  wireName("_http", "_tcp", "local"), // @12 "_http" @18 "_tcp" @23 "local"
  [0, 12, 0, 1, 0, 0, 0x11, 0x94, 0, 7],
  [4, ..."Demo"].map((c) => typeof c === "string" ? c.charCodeAt(0) : c),
  [0xc0, 12], // @40 "Demo" + pointer
  // @47 SRV <@40> 0 0 8080 box.<@23>
  [0xc0, 40, 0, 33, 0x80, 1, 0, 0, 0, 120, 0, 12],
  [0, 0, 0, 0, 0x1f, 0x90, 3, ..."box"].map((c) => typeof c === "string" ? c.charCodeAt(0) : c),
  [0xc0, 23], // @65 "box" + pointer
  // @71 TXT <@40> "path=/"
  [0xc0, 40, 0, 16, 0x80, 1, 0, 0, 0x11, 0x94, 0, 7, 6],
  "path=/",
  // @90 A <@65> 192.168.1.10
  [0xc0, 65, 0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4, 192, 168, 1, 10],
);

/** A QU query for the PTR of `_http._tcp.local` with one known answer, an OPT and an HINFO. */
const QUERY_WITH_EXTRAS = bytes(
  [0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 2], // query, 1 question, 1 answer, 2 additionals
  wireName("_http", "_tcp", "local"), // @12
  [0, 12, 0x80, 1], // PTR, QU
  [0xc0, 12, 0, 12, 0, 1, 0, 0, 0x0e, 0x10, 0, 7, 4, ..."Demo"].map((c) =>
    typeof c === "string" ? c.charCodeAt(0) : c
  ),
  [0xc0, 12],
  [0, 0, 41, 0x05, 0xa0, 0, 0, 0x11, 0x94, 0, 0], // OPT, root name, empty RDATA
  [0xc0, 12, 0, 13, 0, 1, 0, 0, 0, 10, 0, 2, 0, 0], // HINFO, two empty strings
);

Deno.test("decodeMessage reads real-world packets built byte by byte", async (t) => {
  await t.step("an avahi-style announcement with compressed names", () => {
    assertEquals(AVAHI_ANNOUNCEMENT.length, 106);
    assertEquals(
      decodeMessage(AVAHI_ANNOUNCEMENT),
      message({
        response: true,
        answers: [
          {
            name: "_http._tcp.local",
            type: "PTR",
            ttl: 4500,
            flush: false,
            data: "Demo._http._tcp.local",
          },
          {
            name: "Demo._http._tcp.local",
            type: "SRV",
            ttl: 120,
            flush: true,
            data: { priority: 0, weight: 0, port: 8080, target: "box.local" },
          },
          {
            name: "Demo._http._tcp.local",
            type: "TXT",
            ttl: 4500,
            flush: true,
            data: [text.encode("path=/")],
          },
          { name: "box.local", type: "A", ttl: 120, flush: true, data: "192.168.1.10" },
        ],
      }),
    );
  });

  await t.step("our encoding of the same announcement is exactly avahi's bytes", () => {
    assertEquals(encodeMessage(decodeMessage(AVAHI_ANNOUNCEMENT)), AVAHI_ANNOUNCEMENT);
  });

  await t.step("a QU query keeps its known answer and skips OPT and HINFO, counting them", () => {
    const stats: DecodeStats = { skippedQuestions: 0, skippedRecords: 0 };
    assertEquals(
      decodeMessage(QUERY_WITH_EXTRAS, stats),
      message({
        questions: [{ name: "_http._tcp.local", type: "PTR", unicastResponse: true }],
        answers: [{
          name: "_http._tcp.local",
          type: "PTR",
          ttl: 3600,
          flush: false,
          data: "Demo._http._tcp.local",
        }],
      }),
    );
    assertEquals(stats, { skippedQuestions: 0, skippedRecords: 2 });
  });

  await t.step("a question of another class or type is skipped and counted", () => {
    const stats: DecodeStats = { skippedQuestions: 0, skippedRecords: 0 };
    const packet = bytes(
      [0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0],
      wireName("a", "local"),
      [0, 1, 0, 3], // A, class CH
      wireName("b", "local"),
      [0, 13, 0, 1], // HINFO, IN
      wireName("c", "local"),
      [0, 1, 0, 255], // A, class ANY: read as IN
    );
    assertEquals(decodeMessage(packet, stats).questions, [
      { name: "c.local", type: "A", unicastResponse: false },
    ]);
    assertEquals(stats, { skippedQuestions: 2, skippedRecords: 0 });
  });

  await t.step("a record of class CH is skipped", () => {
    const stats: DecodeStats = { skippedQuestions: 0, skippedRecords: 0 };
    const packet = bytes(
      [0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0],
      wireName("a", "local"),
      [0, 1, 0, 3, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4],
    );
    assertEquals(decodeMessage(packet, stats).answers, []);
    assertEquals(stats.skippedRecords, 1);
  });

  await t.step("a TTL with the top bit set reads as 0 (RFC 2181 §8)", () => {
    const packet = bytes(
      [0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0],
      wireName("a", "local"),
      [0, 1, 0, 1, 0x80, 0, 0, 1, 0, 4, 1, 2, 3, 4],
    );
    assertEquals(decodeMessage(packet).answers[0].ttl, 0);
  });

  await t.step("bytes after the last record are ignored", () => {
    const padded = bytes([...AVAHI_ANNOUNCEMENT], [0, 0, 0, 0]);
    assertEquals(decodeMessage(padded), decodeMessage(AVAHI_ANNOUNCEMENT));
  });

  await t.step("an NSEC bitmap keeps the known types only", () => {
    const packet = bytes(
      [0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0],
      wireName("h", "local"), // @12..20
      [0, 47, 0x80, 1, 0, 0, 0, 120, 0, 2 + 2 + 6 + 3],
      [0xc0, 12],
      [0, 6, 0x40, 0, 0, 0x08, 0x00, 0x80], // window 0: A, AAAA, and type 40 (unknown)
      [1, 1, 0x80], // window 1: type 256 (unknown)
    );
    assertEquals(decodeMessage(packet).answers[0].data, {
      nextDomain: "h.local",
      types: ["A", "AAAA"],
    });
  });
});

/** The header of a response with one answer, followed by `rest`. */
function oneAnswer(...rest: (number | string | number[])[]): Uint8Array {
  return bytes([0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0], ...rest);
}

function assertDecodeError(packet: unknown, includes: string): void {
  assertThrows(() => decodeMessage(packet as Uint8Array), MdnsDecodeError, includes);
}

Deno.test("decodeMessage rejects each kind of malformed packet with MdnsDecodeError", async (t) => {
  const owner = wireName("a", "local");
  const cases: [string, Uint8Array, string][] = [
    ["an empty packet", new Uint8Array(0), "at least 12 bytes"],
    ["a packet shorter than the header", new Uint8Array(11), "at least 12 bytes"],
    ["an opcode other than 0", bytes([0, 0, 0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0]), "opcode and rcode"],
    [
      "an rcode other than 0",
      bytes([0, 0, 0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0]),
      "opcode and rcode",
    ],
    ["counts larger than the packet", bytes([0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0]), "counts"],
    [
      "a question cut short",
      bytes([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], [1, 97, 0, 0, 1]),
      "needs 2",
    ],
    [
      "a name that runs past the end",
      oneAnswer([20, 97, 98], [0, 0, 0, 0, 0, 0, 0, 0]),
      "past the end",
    ],
    [
      "a name without its final zero",
      oneAnswer([1, 97, 1, 98, 1, 99, 1, 100, 1, 101, 1, 102]),
      "runs past",
    ],
    [
      "a label of type 0x40",
      oneAnswer([0x41, 97], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
      "unknown label type",
    ],
    [
      "a label of type 0x80",
      oneAnswer([0x81, 97], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
      "unknown label type",
    ],
    [
      "a pointer to itself",
      oneAnswer([0xc0, 12], [0, 1, 0, 1, 0, 0, 0, 1, 0, 0]),
      "does not point back",
    ],
    [
      "a pointer forward",
      oneAnswer([0xc0, 14, 0], [0, 1, 0, 1, 0, 0, 0, 1, 0]),
      "does not point back",
    ],
    ["a cut pointer", oneAnswer([1, 97, 1, 98, 1, 99, 1, 100, 1, 101, 0xc0]), "cut pointer"],
    [
      "a name longer than 255 bytes",
      oneAnswer(
        ...Array.from({ length: 5 }, () => [63, ...new Array(63).fill(120)]),
        [0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4],
      ),
      "longer than 255",
    ],
    [
      "a label that is not UTF-8",
      oneAnswer([2, 0xc3, 0x28, 0], [0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]),
      "UTF-8",
    ],
    [
      "a record header cut short",
      oneAnswer(owner, [0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]).subarray(0, 30),
      "needs",
    ],
    [
      "RDATA longer than the packet",
      oneAnswer(owner, [0, 1, 0, 1, 0, 0, 0, 1, 0, 9, 1, 2, 3, 4]),
      "RDATA of answer 0",
    ],
    [
      "an A record of 3 bytes",
      oneAnswer(owner, [0, 1, 0, 1, 0, 0, 0, 1, 0, 3, 1, 2, 3, 0]),
      "must be 4 bytes",
    ],
    [
      "an A record of 5 bytes",
      oneAnswer(owner, [0, 1, 0, 1, 0, 0, 0, 1, 0, 5, 1, 2, 3, 4, 5]),
      "must be 4 bytes",
    ],
    [
      "an AAAA record of 4 bytes",
      oneAnswer(owner, [0, 28, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]),
      "must be 16 bytes",
    ],
    [
      "a PTR whose name ends before its RDATA",
      oneAnswer(owner, [0, 12, 0, 1, 0, 0, 0, 1, 0, 4, 1, 98, 0, 7]),
      "its name ends",
    ],
    [
      "a PTR whose name runs past its RDATA",
      oneAnswer(owner, [0, 12, 0, 1, 0, 0, 0, 1, 0, 2, 1, 98, 0]),
      "its name ends",
    ],
    [
      "an SRV record of 6 bytes",
      oneAnswer(owner, [0, 33, 0, 1, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 80]),
      "at least 7",
    ],
    [
      "a TXT string past its RDATA",
      oneAnswer(owner, [0, 16, 0, 1, 0, 0, 0, 1, 0, 3, 5, 97, 98]),
      "runs past the end of its RDATA",
    ],
    [
      "an NSEC window of 0 bytes",
      oneAnswer(owner, [0, 47, 0, 1, 0, 0, 0, 1, 0, 3, 0, 0, 0]),
      "type bitmap",
    ],
    [
      "an NSEC window of 33 bytes",
      oneAnswer(owner, [0, 47, 0, 1, 0, 0, 0, 1, 0, 36, 0, 0, 33, ...new Array(33).fill(0)]),
      "type bitmap",
    ],
    [
      "NSEC windows out of order",
      oneAnswer(owner, [0, 47, 0, 1, 0, 0, 0, 1, 0, 7, 0, 1, 1, 0x40, 0, 1, 0x40]),
      "type bitmap",
    ],
    [
      "an NSEC name past its RDATA",
      oneAnswer(owner, [0, 47, 0, 1, 0, 0, 0, 1, 0, 1, 1, 97, 0]),
      "shorter than its name",
    ],
    [
      "a packet cut inside its last record",
      AVAHI_ANNOUNCEMENT.subarray(0, 100),
      "needs",
    ],
  ];
  for (const [what, packet, includes] of cases) {
    await t.step(`${what} is rejected`, () => assertDecodeError(packet, includes));
  }

  await t.step("something other than a Uint8Array is rejected", () => {
    assertDecodeError("not bytes", "must be a Uint8Array");
    assertDecodeError(undefined, "must be a Uint8Array");
  });

  await t.step("the stats are left alone when a packet does not decode", () => {
    const stats: DecodeStats = { skippedQuestions: 0, skippedRecords: 0 };
    assertThrows(() => decodeMessage(QUERY_WITH_EXTRAS.subarray(0, -1), stats), MdnsDecodeError);
    assertEquals(stats, { skippedQuestions: 0, skippedRecords: 0 });
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests

const labelArb = fc.oneof(
  fc.stringMatching(/^[a-z0-9_-]{1,12}$/),
  fc.string({ minLength: 1, maxLength: 20, unit: "binary" }).filter((s) => {
    const length = text.encode(s).length;
    return length >= 1 && length <= 63 && s.isWellFormed();
  }),
);
const nameArb = fc.array(labelArb, { minLength: 1, maxLength: 4 }).map(joinLabels).filter((n) =>
  text.encode(n).length < 200
);
const ipv4Arb = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) =>
  o.join(".")
);
const ipv6Arb = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => {
  // Build RFC 5952 text through a decode of an encoded record, so it is canonical.
  const record: MdnsRecord = { name: "h", type: "AAAA", ttl: 0, flush: false, data: "::" };
  const packet = encodeMessage(message({ response: true, answers: [record] }));
  packet.set(b, packet.length - 16);
  return decodeMessage(packet).answers[0].data as string;
});
const recordTypes = [...RECORD_TYPES_BY_CODE.values()];
/** Records with an ordinary prototype, as the codec builds them (deep equality checks it). */
const PLAIN = { noNullPrototype: true } as const;
const recordArb: fc.Arbitrary<MdnsRecord> = fc.record({
  name: nameArb,
  ttl: fc.oneof(fc.constant(0), fc.nat(0x7fffffff)),
  flush: fc.boolean(),
}, PLAIN).chain((base) =>
  fc.oneof(
    ipv4Arb.map((data) => ({ ...base, type: "A", data }) as MdnsRecord),
    ipv6Arb.map((data) => ({ ...base, type: "AAAA", data }) as MdnsRecord),
    nameArb.map((data) => ({ ...base, type: "PTR", data }) as MdnsRecord),
    fc.record({
      priority: fc.nat(65535),
      weight: fc.nat(65535),
      port: fc.nat(65535),
      target: nameArb,
    }, PLAIN)
      .map((data) => ({ ...base, type: "SRV", data }) as MdnsRecord),
    fc.array(fc.uint8Array({ maxLength: 40 }), { minLength: 1, maxLength: 4 })
      .map((data) => ({ ...base, type: "TXT", data }) as MdnsRecord),
    fc.record({ nextDomain: nameArb, types: fc.subarray(recordTypes) }, PLAIN)
      .map((data) => ({ ...base, type: "NSEC", data }) as MdnsRecord),
  )
);
const questionArb: fc.Arbitrary<MdnsQuestion> = fc.record({
  name: nameArb,
  type: fc.constantFrom<QuestionType>(...recordTypes, "ANY"),
  unicastResponse: fc.boolean(),
}, PLAIN);
const messageArb: fc.Arbitrary<MdnsMessage> = fc.record({
  id: fc.nat(65535),
  response: fc.boolean(),
  authoritative: fc.boolean(),
  truncated: fc.boolean(),
  questions: fc.array(questionArb, { maxLength: 3 }),
  answers: fc.array(recordArb, { maxLength: 4 }),
  authorities: fc.array(recordArb, { maxLength: 2 }),
  additionals: fc.array(recordArb, { maxLength: 3 }),
}, PLAIN);

/** Sorts NSEC types into code order, as the bitmap carries no order. */
function normalized(m: MdnsMessage): MdnsMessage {
  const order = (type: RecordType) => recordTypes.indexOf(type);
  const fix = (r: MdnsRecord): MdnsRecord =>
    r.type === "NSEC"
      ? {
        ...r,
        data: { ...r.data, types: [...new Set(r.data.types)].sort((a, b) => order(a) - order(b)) },
      }
      : r;
  return {
    ...m,
    answers: m.answers.map(fix),
    authorities: m.authorities.map(fix),
    additionals: m.additionals.map(fix),
  };
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Throws unless `m` is a message of the shape `_types.ts` promises. */
function checkWellFormed(m: MdnsMessage): void {
  assert([m.response, m.authoritative, m.truncated].every((b) => typeof b === "boolean"));
  assert(Number.isInteger(m.id) && m.id >= 0 && m.id <= 0xffff);
  const checkName = (name: unknown) => {
    assert(typeof name === "string" && !name.endsWith(".") || name === "", `name ${name}`);
    // Every name must encode again within the limits.
    encodeMessage(
      message({ questions: [{ name: name as string, type: "A", unicastResponse: false }] }),
    );
  };
  for (const q of m.questions) {
    checkName(q.name);
    assert(["A", "AAAA", "PTR", "SRV", "TXT", "NSEC", "ANY"].includes(q.type));
    assert(typeof q.unicastResponse === "boolean");
  }
  for (const r of [...m.answers, ...m.authorities, ...m.additionals]) {
    checkName(r.name);
    assert(Number.isInteger(r.ttl) && r.ttl >= 0 && r.ttl <= 0x7fffffff);
    assert(typeof r.flush === "boolean");
    switch (r.type) {
      case "A":
        assert(IPV4.test(r.data) && r.data.split(".").every((o) => Number(o) <= 255), r.data);
        break;
      case "AAAA":
        assert(/^[0-9a-f:]+$/.test(r.data), r.data);
        break;
      case "PTR":
        checkName(r.data);
        break;
      case "SRV":
        checkName(r.data.target);
        for (const n of [r.data.priority, r.data.weight, r.data.port]) {
          assert(Number.isInteger(n) && n >= 0 && n <= 65535);
        }
        break;
      case "TXT":
        assert(r.data.every((s) => s instanceof Uint8Array && s.length <= 255));
        break;
      case "NSEC":
        checkName(r.data.nextDomain);
        assert(r.data.types.every((type) => recordTypes.includes(type)));
        break;
      default:
        throw new Error(`unexpected record type ${(r as { type: string }).type}`);
    }
  }
}

/** The property: decoding gives a well-formed message that survives a re-encode, or throws MdnsDecodeError. */
/** How many packets {@linkcode decodesOrRejects} saw decode and rejected, and records decoded. */
const outcomes = { decoded: 0, rejected: 0, records: 0 };

function decodesOrRejects(packet: Uint8Array): boolean {
  let decoded: MdnsMessage;
  try {
    decoded = decodeMessage(packet);
  } catch (error) {
    if (error instanceof MdnsDecodeError) {
      outcomes.rejected++;
      return true;
    }
    throw error;
  }
  outcomes.decoded++;
  outcomes.records += decoded.answers.length + decoded.authorities.length +
    decoded.additionals.length;
  checkWellFormed(decoded);
  assertEquals(decodeMessage(encodeMessage(decoded)), decoded);
  return true;
}

type Mutation =
  | { kind: "set"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; value: number }
  | { kind: "delete"; at: number }
  | { kind: "pointer"; at: number; value: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  // Setting one byte to a small value often leaves a packet valid (TTLs, ports, ids, counts,
  // address bytes, ASCII in labels), which drives the decoder through its accepting paths too.
  {
    arbitrary: fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.nat(0x7f) }),
    weight: 6,
  },
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.nat(255) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), value: fc.nat(255) }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("pointer" as const), at: fc.nat(), value: fc.nat(255) }),
);

function mutate(packet: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out = [...packet];
  for (const mutation of mutations) {
    const at = out.length === 0 ? 0 : mutation.at % out.length;
    switch (mutation.kind) {
      case "set":
        out[at] = mutation.value;
        break;
      case "truncate":
        out = out.slice(0, at);
        break;
      case "insert":
        out.splice(at, 0, mutation.value);
        break;
      case "delete":
        out.splice(at, 1);
        break;
      case "pointer":
        out[at] = 0xc0 | (mutation.value & 0x3f);
        if (at + 1 < out.length) out[at + 1] = mutation.value;
        break;
    }
  }
  return Uint8Array.from(out);
}

Deno.test("decodeMessage is total: a well-formed message or MdnsDecodeError", async (t) => {
  await t.step("6,000 random byte strings", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 600 }),
          // A plausible header makes the decoder go deeper than random bytes do.
          fc.tuple(
            fc.nat(65535),
            fc.constantFrom(0, 0x8400, 0x0200),
            fc.uint8Array({ maxLength: 300 }),
          )
            .map(([id, flags, rest]) =>
              bytes([
                id >> 8,
                id & 255,
                flags >> 8,
                flags & 255,
                0,
                rest.length % 4,
                0,
                rest.length % 5,
                0,
                rest.length % 2,
                0,
                rest.length % 3,
              ], [...rest])
            ),
        ),
        decodesOrRejects,
      ),
      { numRuns: 6_000, seed: SEED },
    );
  });

  await t.step("6,000 mutated valid packets", () => {
    fc.assert(
      fc.property(
        messageArb,
        fc.array(mutationArb, { minLength: 1, maxLength: 3 }),
        (m, mutations) => decodesOrRejects(mutate(encodeMessage(m), mutations)),
      ),
      { numRuns: 6_000, seed: SEED + 1 },
    );
  });

  await t.step("both outcomes occurred often, so the properties above were not vacuous", () => {
    assertEquals(outcomes.decoded + outcomes.rejected, 12_000);
    assert(
      outcomes.decoded > 500 && outcomes.rejected > 1_000 && outcomes.records > 1_000,
      JSON.stringify(outcomes),
    );
  });

  await t.step(
    "1,000 random valid messages round-trip exactly and read the same in dns-packet",
    () => {
      fc.assert(
        fc.property(messageArb, (m) => {
          const packet = encodeMessage(m);
          assertEquals(decodeMessage(packet), normalized(m));
          const theirs = dnsPacket.decode(Buffer.from(packet));
          assertEquals(
            [
              theirs.id,
              theirs.questions!.length,
              theirs.answers!.length,
              theirs.additionals!.length,
            ],
            [m.id, m.questions.length, m.answers.length, m.additionals.length],
          );
          return true;
        }),
        { numRuns: 1_000, seed: SEED + 2 },
      );
    },
  );
});

// ---------------------------------------------------------------------------------------------
// Splitting

/** The records of `count` services: PTR, SRV, TXT and A each. */
function serviceRecords(count: number): MdnsRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const name = `Service number ${i}._tsercom._tcp.local`;
    const host = `host-${i}.local`;
    return [
      { name: "_tsercom._tcp.local", type: "PTR", ttl: 4500, flush: false, data: name },
      {
        name,
        type: "SRV",
        ttl: 120,
        flush: true,
        data: { priority: 0, weight: 0, port: 20_000 + i, target: host },
      },
      {
        name,
        type: "TXT",
        ttl: 4500,
        flush: true,
        data: [
          text.encode(`name=Service ${i}`),
          text.encode("published_on=2024-01-01 00:00:00.000000"),
        ],
      },
      { name: host, type: "A", ttl: 120, flush: true, data: `10.0.${i >> 8}.${i & 255}` },
    ] satisfies MdnsRecord[];
  }).flat();
}

Deno.test("encodeMessages splits a message into packets that fit", async (t) => {
  await t.step(
    "200 services' records go out in packets of at most 1472 bytes and decode back",
    () => {
      const records = serviceRecords(200);
      const m = message({ response: true, answers: records });
      const packets = encodeMessages(m, DEFAULT_MAX_PACKET_BYTES);
      assert(packets.length > 1, `${packets.length} packets`);
      assert(
        packets.every((p) => p.length <= DEFAULT_MAX_PACKET_BYTES),
        packets.map((p) => p.length).join(),
      );
      const decoded = packets.map((p) => decodeMessage(p));
      assertEquals(decoded.flatMap((d) => d.answers), records);
      assert(decoded.every((d) => d.response && d.authoritative && !d.truncated && d.id === 0));
      // Packets are filled: each but the last would not have room for the next record.
      const sizes = packets.slice(0, -1).map((p) => p.length);
      assert(sizes.every((size) => size > DEFAULT_MAX_PACKET_BYTES - 120), sizes.join());
    },
  );

  await t.step("a message that fits is one packet, identical to encodeMessage's", () => {
    const m = message({ response: true, answers: serviceRecords(2) });
    assertEquals(encodeMessages(m, DEFAULT_MAX_PACKET_BYTES), [encodeMessage(m)]);
  });

  await t.step(
    "response additionals fill the room left in any packet, and the rest is dropped",
    () => {
      const records = serviceRecords(40);
      const answers = records.filter((r) => r.type === "PTR");
      const additionals = records.filter((r) => r.type !== "PTR");
      const packets = encodeMessages(message({ response: true, answers, additionals }), 1000);
      const decoded = packets.map((p) => decodeMessage(p));
      assertEquals(decoded.flatMap((d) => d.answers), answers);
      assert(packets.every((p) => p.length <= 1000));
      const sent = decoded.flatMap((d) => d.additionals);
      assert(sent.length > 0 && sent.length < additionals.length, `${sent.length} additionals`);
      // What goes is a subsequence of what was given, in order.
      const given = additionals.map(recordKey);
      let k = 0;
      for (const key of sent.map(recordKey)) {
        while (k < given.length && given[k] !== key) k++;
        assert(k < given.length, `additional ${key} out of order`);
        k++;
      }
      // Additionals never add a packet.
      assertEquals(
        packets.length,
        encodeMessages(message({ response: true, answers }), 1000).length,
      );
    },
  );

  await t.step("an additional too big for any packet is dropped, not an error", () => {
    const big: MdnsRecord = {
      name: "big.local",
      type: "TXT",
      ttl: 1,
      flush: true,
      data: Array.from({ length: 8 }, () => new Uint8Array(200)),
    };
    const packets = encodeMessages(
      message({ response: true, answers: [everyRecord[0]], additionals: [big] }),
      512,
    );
    assertEquals(packets.map((p) => decodeMessage(p).additionals), [[]]);
  });

  await t.step("a query's known answers spread over packets with TC on all but the last", () => {
    const answers = serviceRecords(100).filter((r) => r.type === "PTR");
    const questions: MdnsQuestion[] = [{
      name: "_tsercom._tcp.local",
      type: "PTR",
      unicastResponse: false,
    }];
    const packets = encodeMessages(message({ questions, answers }), DEFAULT_MAX_PACKET_BYTES);
    const decoded = packets.map((p) => decodeMessage(p));
    assert(decoded.length >= 3, `${decoded.length} packets`);
    assertEquals(decoded.map((d) => d.truncated), [
      ...new Array(decoded.length - 1).fill(true),
      false,
    ]);
    assertEquals(decoded.map((d) => d.questions.length), [
      1,
      ...new Array(decoded.length - 1).fill(0),
    ]);
    assertEquals(decoded.flatMap((d) => d.answers), answers);
    assert(decoded.every((d) => !d.response));
  });

  await t.step(
    "a probe keeps its question and proposed records together in the first packet",
    () => {
      const records = serviceRecords(1);
      const probe = message({
        questions: [{ name: records[1].name, type: "ANY", unicastResponse: true }],
        authorities: records.slice(1, 3),
      });
      const packets = encodeMessages(probe, DEFAULT_MAX_PACKET_BYTES);
      assertEquals(packets.map((p) => decodeMessage(p)), [probe]);
    },
  );

  await t.step("a record that does not fit alone is a RangeError", () => {
    const big: MdnsRecord = {
      name: "big.local",
      type: "TXT",
      ttl: 1,
      flush: true,
      data: Array.from({ length: 8 }, () => new Uint8Array(200)),
    };
    assertThrows(
      () => encodeMessages(message({ response: true, answers: [big] }), DEFAULT_MAX_PACKET_BYTES),
      RangeError,
      `TXT answer of "big.local" does not fit in a packet of its own`,
    );
  });

  await t.step("maxBytes must be an integer in 12..65535", () => {
    for (const maxBytes of [11, 65536, 1000.5, NaN]) {
      assertThrows(() => encodeMessages(emptyMessage(true), maxBytes), RangeError, "'maxBytes'");
    }
    assertEquals(encodeMessages(emptyMessage(true), 12).map((p) => p.length), [12]);
  });
});

Deno.test("encodeMessage rejects a message it cannot put on the wire", async (t) => {
  const record = everyRecord[0] as MdnsRecord & { type: "A" };
  const cases: [string, MdnsMessage, new (...args: never[]) => Error, string][] = [
    ["an id above 65535", message({ id: 65536 }), RangeError, "'id'"],
    [
      "a TTL above 2^31 - 1",
      message({ answers: [{ ...record, ttl: 2 ** 31 }] }),
      InvalidRecordError,
      "'ttl'",
    ],
    ["a negative TTL", message({ answers: [{ ...record, ttl: -1 }] }), InvalidRecordError, "'ttl'"],
    [
      "a bad IPv4 address",
      message({ answers: [{ ...record, data: "10.0.0.256" }] }),
      InvalidRecordError,
      "dotted IPv4",
    ],
    [
      "a bad IPv6 address",
      message({ answers: [{ ...record, type: "AAAA", data: "fe80::1%eth0" }] }),
      InvalidRecordError,
      "IPv6",
    ],
    [
      "an SRV port above 65535",
      message({
        answers: [
          {
            ...everyRecord[3],
            data: { priority: 0, weight: 0, port: 70000, target: "h.local" },
          } as MdnsRecord,
        ],
      }),
      InvalidRecordError,
      "'port'",
    ],
    [
      "a TXT string of 256 bytes",
      message({ answers: [{ ...everyRecord[4], data: [new Uint8Array(256)] } as MdnsRecord] }),
      InvalidRecordError,
      "at most 255 bytes",
    ],
    [
      "a label of 64 bytes",
      message({ answers: [{ ...record, name: `${"x".repeat(64)}.local` }] }),
      InvalidRecordError,
      "at most 63 bytes",
    ],
    [
      "a name of 256 bytes",
      message({ answers: [{ ...record, name: Array(64).fill("abc").join(".") }] }),
      InvalidRecordError,
      "at most 255 bytes",
    ],
    [
      "an empty label",
      message({ answers: [{ ...record, name: "a..local" }] }),
      InvalidRecordError,
      "empty label",
    ],
    [
      "an unknown question type",
      message({ questions: [{ name: "a", type: "MX" as QuestionType, unicastResponse: false }] }),
      InvalidRecordError,
      "its type must be one of",
    ],
    [
      "an unknown record type",
      message({ answers: [{ ...record, type: "MX" } as unknown as MdnsRecord] }),
      InvalidRecordError,
      "its type must be one of",
    ],
  ];
  for (const [what, m, ErrorClass, includes] of cases) {
    await t.step(`${what} is rejected`, () => {
      // deno-lint-ignore no-explicit-any
      assertThrows(() => encodeMessage(m), ErrorClass as any, includes);
    });
  }
});
