/**
 * Sends random and mutated mDNS packets to `224.0.0.251:5353`, for
 * `discovery_robustness_test.ts`. Run it on a simulated host (a namespace of the harness): it
 * refuses to run (exit 3) anywhere else, so that its multicast stays inside.
 *
 * ```
 * deno run -A --unstable-net _fuzz_sender.ts --seed 1 --count 10000 \
 *   --probe-type _x._tcp.local --probe-instance "a._x._tcp.local"
 * ```
 *
 * Each packet `n` starts from a valid message built for its own marker names — instance
 * `fz<n>._fuzz._tcp.local` and host `fz<n>.local` — (a response, a query with known answers, a
 * probe), sometimes asking for the `--probe-*` names of the service under test, and is then
 * mutated: bits flipped, bytes overwritten, truncated, extended, section counts or 16-bit lengths
 * corrupted, compression pointers aimed anywhere (loops included), spliced with another packet;
 * or it is plain random garbage. A few are sent unchanged, as controls. Every packet is decoded
 * with the engine's own codec before it is sent, which tells which marker names a receiver could
 * have cached. Randomness comes from a seeded PRNG, so a run is reproducible.
 *
 * It prints one JSON line:
 * `{"sent","sendErrors","decodedOk","decodeFailed","failedOnly":[…],"controls":[…],"kinds":{…}}`
 * where `failedOnly` lists the marker names (name keys) that appeared only in packets that failed
 * to decode — no receiver may have cached any of them — and `controls` the instance names of the
 * unchanged responses (TTL 120 s), which a receiver should have cached.
 *
 * @module
 */

import { isIsolatedNetns } from "../netns/mod.ts";
import { decodeMessage, encodeMessage } from "../../discovery/mdns/_codec.ts";
import {
  emptyMessage,
  MDNS_GROUP_V4,
  MDNS_PORT,
  type MdnsMessage,
  type MdnsRecord,
  nameKey,
} from "../../discovery/mdns/_types.ts";

if (!(await isIsolatedNetns())) {
  console.error("_fuzz_sender: refusing to send multicast outside an isolated network namespace");
  Deno.exit(3);
}

function option(name: string, fallback: string): string {
  const at = Deno.args.indexOf(`--${name}`);
  return at >= 0 && at + 1 < Deno.args.length ? Deno.args[at + 1] : fallback;
}

const seed = Number(option("seed", "1"));
const count = Math.min(Number(option("count", "10000")), 100_000);
const probeType = option("probe-type", "_http._tcp.local");
const probeInstance = option("probe-instance", `x.${probeType}`);
const FUZZ_TYPE = "_fuzz._tcp.local";

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function prng(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(seed);
function int(n: number): number {
  return Math.floor(random() * n);
}
function pick<T>(list: readonly T[]): T {
  return list[int(list.length)];
}
function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = int(256);
  return bytes;
}

const TTLS = [0, 1, 120, 4500, 0x7fffffff];

/** The valid message packet `n` starts from, and its marker names (instance, host). */
function base(n: number): { message: MdnsMessage; names: string[] } {
  const instance = `fz${n}.${FUZZ_TYPE}`;
  const host = `fz${n}.local`;
  const names = [instance, host];
  const kind = int(3);
  const ttl = () => pick(TTLS);
  const records = (): MdnsRecord[] => [
    { name: FUZZ_TYPE, type: "PTR", ttl: ttl(), flush: false, data: instance },
    {
      name: instance,
      type: "SRV",
      ttl: ttl(),
      flush: random() < 0.5,
      data: { priority: 0, weight: 0, port: 1 + int(65535), target: host },
    },
    {
      name: instance,
      type: "TXT",
      ttl: ttl(),
      flush: random() < 0.5,
      data: [new TextEncoder().encode(`id=${n}`), randomBytes(int(20))],
    },
    {
      name: host,
      type: "A",
      ttl: ttl(),
      flush: random() < 0.5,
      data: `198.18.${int(256)}.${int(256)}`,
    },
    { name: host, type: "AAAA", ttl: ttl(), flush: true, data: "fe80::1" },
    {
      name: instance,
      type: "NSEC",
      ttl: ttl(),
      flush: true,
      data: { nextDomain: instance, types: ["SRV", "TXT"] },
    },
  ];
  if (kind === 0) {
    const message = emptyMessage(true);
    const all = records();
    message.answers = all.slice(0, 2 + int(3));
    message.additionals = all.slice(message.answers.length);
    return { message, names };
  }
  if (kind === 1) {
    const message = emptyMessage(false);
    message.truncated = random() < 0.2;
    const asked = [
      FUZZ_TYPE,
      instance,
      host,
      probeType,
      probeInstance,
      "_services._dns-sd._udp.local",
    ];
    for (let i = 0, k = 1 + int(4); i < k; i++) {
      message.questions.push({
        name: pick(asked),
        type: pick(["PTR", "SRV", "TXT", "A", "AAAA", "ANY"] as const),
        unicastResponse: random() < 0.3,
      });
    }
    message.answers = records().slice(0, int(3));
    return { message, names };
  }
  const message = emptyMessage(false);
  message.questions = [{ name: instance, type: "ANY", unicastResponse: true }];
  message.authorities = records().slice(1, 3);
  return { message, names };
}

/** A response for packet `n` with every TTL 120 s: a control, sent unchanged. */
function steady(n: number): { message: MdnsMessage; names: string[] } {
  const { names } = base(n);
  const [instance, host] = names;
  const message = emptyMessage(true);
  message.answers = [
    { name: FUZZ_TYPE, type: "PTR", ttl: 120, flush: false, data: instance },
    {
      name: instance,
      type: "SRV",
      ttl: 120,
      flush: true,
      data: { priority: 0, weight: 0, port: 4000, target: host },
    },
    { name: instance, type: "TXT", ttl: 120, flush: true, data: [new Uint8Array(0)] },
    { name: host, type: "A", ttl: 120, flush: true, data: "198.18.0.200" },
  ];
  return { message, names };
}

type Mutation = (packet: Uint8Array, other: Uint8Array) => Uint8Array;

const MUTATIONS: Record<string, Mutation> = {
  flipBits(packet) {
    const out = packet.slice();
    for (let i = 0, k = 1 + int(8); i < k; i++) out[int(out.length)] ^= 1 << int(8);
    return out;
  },
  setBytes(packet) {
    const out = packet.slice();
    for (let i = 0, k = 1 + int(4); i < k; i++) {
      out[int(out.length)] = pick([0, 0xff, 0xc0, 0x3f, 0x40, 0x80, int(256)]);
    }
    return out;
  },
  truncate(packet) {
    return packet.slice(0, int(packet.length));
  },
  extend(packet) {
    const extra = randomBytes(1 + int(random() < 0.05 ? 4000 : 64));
    const out = new Uint8Array(packet.length + extra.length);
    out.set(packet);
    out.set(extra, packet.length);
    return out;
  },
  counts(packet) {
    const out = packet.slice();
    const view = new DataView(out.buffer);
    const at = 4 + 2 * int(4);
    const now = view.getUint16(at);
    view.setUint16(at, pick([now + 1, now - 1, 0, 0xffff, int(65536), now * 2]) & 0xffff);
    return out;
  },
  length16(packet) {
    // Some 16-bit field (an RDLENGTH, a type, a class, part of a TTL) gets a little off.
    const out = packet.slice();
    if (out.length < 14) return out;
    const view = new DataView(out.buffer);
    const at = 12 + int(out.length - 13);
    view.setUint16(at, (view.getUint16(at) + pick([1, -1, 2, -2, 3, 256, -256])) & 0xffff);
    return out;
  },
  pointer(packet) {
    // A compression pointer somewhere: to itself (a loop), forward, past the end, or anywhere.
    const out = packet.slice();
    if (out.length < 14) return out;
    const at = 12 + int(out.length - 13);
    const target = pick([at, at + 2, out.length + int(100), int(out.length), 12]) & 0x3fff;
    out[at] = 0xc0 | (target >> 8);
    out[at + 1] = target & 0xff;
    return out;
  },
  header(packet) {
    // Random flags: opcodes, rcodes, QR/TC flipped.
    const out = packet.slice();
    out[2] = int(256);
    out[3] = int(256);
    return out;
  },
  splice(packet, other) {
    const head = packet.slice(0, int(packet.length + 1));
    const tail = other.slice(int(other.length + 1));
    const out = new Uint8Array(head.length + tail.length);
    out.set(head);
    out.set(tail, head.length);
    return out;
  },
  garbage() {
    return randomBytes(int(random() < 0.02 ? 9000 : 1500));
  },
  garbageWithHeader(packet) {
    const out = randomBytes(12 + int(600));
    out.set(packet.subarray(0, 12));
    return out;
  },
};
const MUTATION_NAMES = Object.keys(MUTATIONS);

function namesOf(message: MdnsMessage): string[] {
  const names: string[] = message.questions.map((question) => question.name);
  for (const record of [...message.answers, ...message.authorities, ...message.additionals]) {
    names.push(record.name);
    if (record.type === "PTR") names.push(record.data);
    if (record.type === "SRV") names.push(record.data.target);
    if (record.type === "NSEC") names.push(record.data.nextDomain);
  }
  return names;
}

const mdnsSocket = Deno.listenDatagram({
  transport: "udp",
  hostname: "0.0.0.0",
  port: MDNS_PORT,
  reuseAddress: true,
  loopback: false,
});
// Queries from a port other than 5353 are legacy unicast queries (RFC 6762 §6.7).
const otherSocket = Deno.listenDatagram({
  transport: "udp",
  hostname: "0.0.0.0",
  port: 0,
  loopback: false,
});
const group: Deno.NetAddr = { transport: "udp", hostname: MDNS_GROUP_V4, port: MDNS_PORT };

const okNames = new Set<string>();
const failedNames = new Set<string>();
const controls: string[] = [];
const kinds: Record<string, number> = {};
let previous = encodeMessage(base(0).message);
let sent = 0;
let sendErrors = 0;
let decodedOk = 0;
let decodeFailed = 0;
try {
  for (let n = 1; n <= count; n++) {
    const control = random() < 0.03;
    const start = control ? steady(n) : base(n);
    const valid = encodeMessage(start.message);
    const mutation = control ? "none" : pick(MUTATION_NAMES);
    const packet = control ? valid : MUTATIONS[mutation](valid, previous);
    previous = valid;
    kinds[mutation] = (kinds[mutation] ?? 0) + 1;
    let decoded: MdnsMessage | undefined;
    try {
      decoded = decodeMessage(packet);
    } catch {
      decoded = undefined;
    }
    if (decoded === undefined) {
      decodeFailed++;
      for (const name of start.names) failedNames.add(nameKey(name));
    } else {
      decodedOk++;
      for (const name of namesOf(decoded)) okNames.add(nameKey(name));
      if (control) controls.push(start.names[0]);
    }
    try {
      await (random() < 0.1 && !control ? otherSocket : mdnsSocket).send(packet, group);
      sent++;
    } catch {
      sendErrors++;
    }
    // Bounded pace (about 5,000 packets a second), so that few are lost in receive buffers.
    if (n % 25 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }
} finally {
  mdnsSocket.close();
  otherSocket.close();
}
const failedOnly = [...failedNames].filter((name) => !okNames.has(name));
console.log(
  JSON.stringify({ sent, sendErrors, decodedOk, decodeFailed, failedOnly, controls, kinds }),
);
