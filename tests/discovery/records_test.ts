import { assert, assertEquals, assertThrows } from "../_assert.ts";
import {
  compareBytes,
  compareProbeRecords,
  escapeLabel,
  formatIpv6,
  InvalidRecordError,
  ipv4Bytes,
  ipv6Bytes,
  joinLabels,
  nameWireBytes,
  recordDataBytes,
  recordKey,
  sameRecordData,
  splitName,
} from "../../discovery/mdns/_records.ts";
import type { MdnsRecord } from "../../discovery/mdns/_types.ts";

const text = new TextEncoder();

function a(name: string, data: string, ttl = 120): MdnsRecord {
  return { name, type: "A", ttl, flush: true, data };
}

function srv(name: string, port: number, target: string): MdnsRecord {
  return {
    name,
    type: "SRV",
    ttl: 120,
    flush: true,
    data: { priority: 0, weight: 0, port, target },
  };
}

function txt(name: string, ...strings: string[]): MdnsRecord {
  return { name, type: "TXT", ttl: 4500, flush: true, data: strings.map((s) => text.encode(s)) };
}

Deno.test("recordDataBytes gives the canonical RDATA of each type", async (t) => {
  await t.step("A: the 4 address bytes", () => {
    assertEquals([...recordDataBytes(a("h.local", "169.254.99.200"))], [169, 254, 99, 200]);
  });

  await t.step("AAAA: the 16 address bytes, whatever the text form", () => {
    const record: MdnsRecord = { name: "h", type: "AAAA", ttl: 1, flush: true, data: "FE80::A:1" };
    assertEquals(
      [...recordDataBytes(record)],
      [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0, 1],
    );
  });

  await t.step("PTR: the uncompressed name, in the case given", () => {
    const record: MdnsRecord = {
      name: "_x._tcp.local",
      type: "PTR",
      ttl: 1,
      flush: false,
      data: "My._x._tcp.local",
    };
    assertEquals(
      recordDataBytes(record),
      Uint8Array.from([2, 77, 121, 2, 95, 120, 4, 95, 116, 99, 112, 5, 108, 111, 99, 97, 108, 0]),
    );
  });

  await t.step("SRV: priority, weight, port, then the target", () => {
    const record: MdnsRecord = {
      name: "i.local",
      type: "SRV",
      ttl: 1,
      flush: true,
      data: { priority: 1, weight: 2, port: 8080, target: "h.local" },
    };
    assertEquals([...recordDataBytes(record)], [
      0,
      1,
      0,
      2,
      0x1f,
      0x90,
      1,
      104,
      5,
      108,
      111,
      99,
      97,
      108,
      0,
    ]);
  });

  await t.step("TXT: length-prefixed strings; none at all is one empty string", () => {
    assertEquals([...recordDataBytes(txt("i", "a=1", ""))], [3, 97, 61, 49, 0]);
    assertEquals([...recordDataBytes(txt("i"))], [0]);
  });

  await t.step("NSEC: the next domain, then window 0 with the types' bits", () => {
    const record: MdnsRecord = {
      name: "h.local",
      type: "NSEC",
      ttl: 120,
      flush: true,
      data: { nextDomain: "h.local", types: ["SRV", "A", "AAAA", "A"] },
    };
    assertEquals(
      [...recordDataBytes(record)],
      [1, 104, 5, 108, 111, 99, 97, 108, 0, 0, 5, 0x40, 0, 0, 0x08, 0x40],
    );
  });

  await t.step("NSEC without types has an empty bitmap", () => {
    const record: MdnsRecord = {
      name: "h",
      type: "NSEC",
      ttl: 1,
      flush: true,
      data: { nextDomain: "h", types: [] },
    };
    assertEquals([...recordDataBytes(record)], [1, 104, 0]);
  });

  await t.step("malformed data is an InvalidRecordError that says what was wrong", () => {
    assertThrows(() => recordDataBytes(a("h", "1.2.3")), InvalidRecordError, '"1.2.3"');
    assertThrows(() => recordDataBytes(a("h", "01.2.3.4")), InvalidRecordError, "dotted IPv4");
    assertThrows(() => recordDataBytes(srv("i", -1, "h")), InvalidRecordError, "'port'");
    assertThrows(
      () =>
        recordDataBytes({
          name: "h",
          type: "NSEC",
          ttl: 1,
          flush: true,
          data: { nextDomain: "h", types: ["MX" as "A"] },
        }),
      InvalidRecordError,
      "current value is MX",
    );
    assertThrows(
      () =>
        recordDataBytes({
          name: "h",
          type: "TXT",
          ttl: 1,
          flush: true,
          data: [new Uint8Array(256)],
        }),
      InvalidRecordError,
      "256 bytes long",
    );
  });
});

Deno.test("names: labels, escapes and limits", async (t) => {
  await t.step("a dot and a backslash inside a label are escaped", () => {
    assertEquals(escapeLabel("Room 1.2 \\ east"), "Room 1\\.2 \\\\ east");
    assertEquals(splitName("Room 1\\.2 \\\\ east._x._tcp.local"), [
      "Room 1.2 \\ east",
      "_x",
      "_tcp",
      "local",
    ]);
    assertEquals(joinLabels(["a.b", "c"]), "a\\.b.c");
  });

  await t.step("the wire form has one length-prefixed label per raw label", () => {
    assertEquals([...nameWireBytes("a\\.b.c")], [3, 97, 46, 98, 1, 99, 0]);
    assertEquals([...nameWireBytes("")], [0]);
    assertEquals([...nameWireBytes("ü")], [2, 0xc3, 0xbc, 0]);
  });

  await t.step("a label of 63 bytes is the longest", () => {
    assertEquals(nameWireBytes("x".repeat(63)).length, 65);
    assertThrows(() => nameWireBytes("x".repeat(64)), InvalidRecordError, "at most 63 bytes");
  });

  await t.step("a name of 255 bytes in wire form is the longest", () => {
    const longest = ["x".repeat(63), "x".repeat(63), "x".repeat(63), "x".repeat(61)].join(".");
    assertEquals(nameWireBytes(longest).length, 255);
    assertThrows(() => nameWireBytes(`${longest}x`), InvalidRecordError, "at most 255 bytes");
  });

  await t.step("empty labels and a trailing lone backslash are rejected", () => {
    assertThrows(() => nameWireBytes("a..b"), InvalidRecordError, "empty label");
    assertThrows(() => nameWireBytes("a.b."), InvalidRecordError, "empty label");
    assertThrows(() => nameWireBytes("a\\"), InvalidRecordError, "lone backslash");
  });
});

Deno.test("IP address forms", async (t) => {
  await t.step("IPv6 text is written back in RFC 5952 form", () => {
    const cases: [string, string][] = [
      ["2001:0DB8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1"],
      ["2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["::", "::"],
      ["::1", "::1"],
      ["fe80::", "fe80::"],
      ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
      ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
      ["::ffff:192.0.2.1", "::ffff:c000:201"],
    ];
    for (const [input, output] of cases) assertEquals(formatIpv6(ipv6Bytes(input)), output, input);
  });

  await t.step("malformed IPv6 text and zones are rejected", () => {
    for (
      const bad of [
        "",
        ":::",
        "1::2::3",
        "fe80::1%eth0",
        "1:2:3:4:5:6:7:8:9",
        "12345::",
        "::g",
        "1:2:3:4:5:6:7",
        "::1.2.3",
      ]
    ) {
      assertThrows(() => ipv6Bytes(bad), InvalidRecordError, "IPv6");
    }
  });

  await t.step("IPv4 needs four decimal octets without leading zeros", () => {
    assertEquals([...ipv4Bytes("0.0.0.0")], [0, 0, 0, 0]);
    assertEquals([...ipv4Bytes("255.255.255.255")], [255, 255, 255, 255]);
    for (const bad of ["256.0.0.1", "1.2.3", "1.2.3.4.5", "a.b.c.d", "1.2.3.04", " 1.2.3.4"]) {
      assertThrows(() => ipv4Bytes(bad), InvalidRecordError, "dotted IPv4");
    }
  });
});

Deno.test("record identity: sameRecordData and recordKey", async (t) => {
  await t.step("the owner name is compared without regard to case", () => {
    assert(sameRecordData(a("Host.Local", "10.0.0.1"), a("host.local", "10.0.0.1")));
    assertEquals(recordKey(a("Host.Local", "10.0.0.1")), recordKey(a("host.local", "10.0.0.1")));
  });

  await t.step("TTL and the cache-flush bit do not matter", () => {
    const goodbye = { ...a("h.local", "10.0.0.1", 0), flush: false };
    assert(sameRecordData(a("h.local", "10.0.0.1"), goodbye));
    assertEquals(recordKey(goodbye), "h.local|A|0a000001");
  });

  await t.step("RDATA is compared as raw bytes: a name in it keeps its case", () => {
    assert(!sameRecordData(srv("i", 1, "Host.local"), srv("i", 1, "host.local")));
    assert(recordKey(srv("i", 1, "Host.local")) !== recordKey(srv("i", 1, "host.local")));
  });

  await t.step("equal addresses in different text forms are the same record", () => {
    const one: MdnsRecord = { name: "h", type: "AAAA", ttl: 1, flush: true, data: "fe80::1" };
    const two: MdnsRecord = { ...one, data: "FE80:0:0:0:0:0:0:0001" };
    assert(sameRecordData(one, two));
    assertEquals(recordKey(one), recordKey(two));
  });

  await t.step("different types, names or data are different records", () => {
    const base = a("h.local", "10.0.0.1");
    const others: MdnsRecord[] = [
      a("h.local", "10.0.0.2"),
      a("g.local", "10.0.0.1"),
      { name: "h.local", type: "PTR", ttl: 1, flush: false, data: "x" },
      txt("h.local", "a"),
    ];
    for (const other of others) assert(!sameRecordData(base, other), JSON.stringify(other));
    const keys = new Set([base, ...others].map(recordKey));
    assertEquals(keys.size, 5);
  });

  await t.step(
    "an empty TXT record and one with one empty string are the same (RFC 6763 §6.1)",
    () => {
      assert(sameRecordData(txt("i"), txt("i", "")));
    },
  );
});

Deno.test("compareProbeRecords breaks simultaneous-probe ties as RFC 6762 §8.2 says", async (t) => {
  await t.step("§8.2's example: 169.254.99.200 is earlier than 169.254.200.50 and loses", () => {
    const ours = [a("cheshire.local", "169.254.99.200")];
    const theirs = [a("cheshire.local", "169.254.200.50")];
    assertEquals(compareProbeRecords(ours, theirs), -1);
    assertEquals(compareProbeRecords(theirs, ours), 1);
  });

  await t.step("identical sets tie, whatever the TTL, flush bit or order", () => {
    const ours = [a("h.local", "10.0.0.1"), a("h.local", "10.0.0.2")];
    const theirs = [{ ...a("h.local", "10.0.0.2", 10), flush: false }, a("h.local", "10.0.0.1")];
    assertEquals(compareProbeRecords(ours, theirs), 0);
    assertEquals(compareProbeRecords([], []), 0);
  });

  await t.step("the type decides before the data: A (1) is earlier than AAAA (28)", () => {
    const ours = [a("h.local", "255.255.255.255")];
    const theirs: MdnsRecord[] = [{
      name: "h.local",
      type: "AAAA",
      ttl: 120,
      flush: true,
      data: "::",
    }];
    assertEquals(compareProbeRecords(ours, theirs), -1);
  });

  await t.step("RDATA that is a prefix of the other is earlier", () => {
    assertEquals(compareProbeRecords([txt("i", "ab")], [txt("i", "ab", "c")]), -1);
  });

  await t.step("bytes compare as unsigned: 0x80 is later than 0x7f", () => {
    assertEquals(compareProbeRecords([a("h", "128.0.0.0")], [a("h", "127.255.255.255")]), 1);
  });

  await t.step(
    "§8.2.1: sets are sorted, then compared pairwise; the first difference decides",
    () => {
      // Sorted: TXT (16) before SRV (33). The TXT records are equal, so the SRV ports decide.
      const ours = [srv("i._x._tcp.local", 80, "h.local"), txt("i._x._tcp.local", "v=1")];
      const theirs = [txt("i._x._tcp.local", "v=1"), srv("i._x._tcp.local", 81, "h.local")];
      assertEquals(compareProbeRecords(ours, theirs), -1);
      assertEquals(compareProbeRecords(theirs, ours), 1);
    },
  );

  await t.step("§8.2.1: the set that runs out first, all else equal, loses", () => {
    const ours = [a("h.local", "10.0.0.1")];
    const theirs = [a("h.local", "10.0.0.1"), a("h.local", "10.0.0.2")];
    assertEquals(compareProbeRecords(ours, theirs), -1);
    assertEquals(compareProbeRecords(theirs, ours), 1);
    assertEquals(compareProbeRecords([], ours), -1);
  });

  await t.step("names inside RDATA compare raw and uncompressed: 'H' (0x48) is before 'h'", () => {
    assertEquals(compareProbeRecords([srv("i", 1, "Host.local")], [srv("i", 1, "host.local")]), -1);
  });

  await t.step("compareBytes orders bytes unsigned and a prefix first", () => {
    assert(compareBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 3)) < 0);
    assert(compareBytes(Uint8Array.of(0xff), Uint8Array.of(0x00, 0x01)) > 0);
    assert(compareBytes(Uint8Array.of(1), Uint8Array.of(1, 0)) < 0);
    assertEquals(compareBytes(Uint8Array.of(), Uint8Array.of()), 0);
  });
});
