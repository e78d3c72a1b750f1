/**
 * Codecs that reuse their buffer (`MessageCodec.reusesBuffer`) over a real
 * GrpcServicePublisher on 127.0.0.1 and a GrpcChannel: every message of every
 * kind of call arrives exactly, although `serialize` returns a view of one
 * buffer that its next call overwrites, while grpc-js queues writes behind
 * the one in flight. A codec that reuses its buffer without saying so shows
 * the corruption the flag prevents; a deferred `serialize` that throws ends
 * the call with INTERNAL and is reported to the error sink.
 */

// node:assert directly: tests/_assert.ts does not type-check once grpc-js
// brings @types/node into the graph.
import assert from "node:assert/strict";
import { connectChannel } from "../../rpc/channel_factory.ts";
import type { GrpcChannel } from "../../rpc/grpc_channel.ts";
import { GrpcServicePublisher } from "../../rpc/grpc_service_publisher.ts";
import {
  type GrpcMethod,
  type GrpcMethodKind,
  GrpcStatus,
  GrpcStatusError,
  type MessageCodec,
} from "../../rpc/grpc_types.ts";

const HOST = "127.0.0.1";
const SERVICE = "test.Reuse";
const COUNT = 2_000;

const encoder = new TextEncoder();
const fatal = new TextDecoder("utf-8", { fatal: true });

/** A codec of strings whose `serialize` records each value it encodes. */
type RecordingCodec = MessageCodec<string> & { readonly serialized: string[] };

/**
 * A UTF-8 string codec that encodes every message into one shared buffer
 * (64 KiB, grown when a message needs more) and returns a view of it, as a
 * codec of large messages does to avoid an allocation per message.
 *
 * @param declares Whether it sets `reusesBuffer` (a codec that does not is
 *   the negative control).
 * @param failOnCall The 1-based `serialize` call that throws instead, if any.
 */
function reusingCodec(declares: boolean, failOnCall?: number): RecordingCodec & {
  readonly failure: Error;
} {
  let buffer = new Uint8Array(64 * 1024);
  const serialized: string[] = [];
  const failure = new Error("serialize failed on purpose");
  return {
    serialized,
    failure,
    serialize(value: string): Uint8Array {
      serialized.push(value);
      if (serialized.length === failOnCall) throw failure;
      if (buffer.byteLength < value.length * 3) {
        buffer = new Uint8Array(Math.max(value.length * 3, buffer.byteLength * 2));
      }
      const { written } = encoder.encodeInto(value, buffer);
      return buffer.subarray(0, written);
    },
    deserialize: (bytes: Uint8Array) => fatal.decode(bytes),
    ...(declares ? { reusesBuffer: true } : {}),
  };
}

/** A plain codec: a fresh buffer per message. */
const text: MessageCodec<string> = {
  serialize: (value) => encoder.encode(value),
  deserialize: (bytes) => fatal.decode(bytes),
};

/** Message `i`: 1,000 to 20,000 characters, its index and a hash of it repeated throughout. */
function message(i: number): string {
  const size = 1_000 + (i * 7_919) % 19_001;
  const unit = `<${i}:${(((i + 1) * 2_654_435_761) >>> 0).toString(36)}>`;
  return unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
}

const MESSAGES: readonly string[] = Array.from({ length: COUNT }, (_, i) => message(i));

/** The server's answer to a request (bidi and unary): the request, prefixed. */
const reply = (request: string) => `re:${request}`;

/** The client-streaming summary: count, total length and FNV-1a of every message in order. */
function summarize(messages: Iterable<string>): string {
  let count = 0;
  let length = 0;
  let hash = 0x811c9dc5;
  for (const value of messages) {
    count++;
    length += value.length;
    for (let k = 0; k < value.length; k++) {
      hash = Math.imul(hash ^ value.charCodeAt(k), 0x01000193) >>> 0;
    }
    hash = Math.imul(hash ^ 0x1f, 0x01000193) >>> 0; // message separator
  }
  return `${count}:${length}:${hash.toString(16)}`;
}

function method<K extends GrpcMethodKind>(
  name: string,
  kind: K,
  request: MessageCodec<string>,
  response: MessageCodec<string>,
): GrpcMethod<string, string> & { kind: K } {
  return { name, path: `/${SERVICE}/${name}`, kind, request, response };
}

/** One codec, one buffer, for both sides of every well-behaved method. */
const REUSING = reusingCodec(true);
/** Reuses its buffer without declaring it. */
const LEAKY = reusingCodec(false);
/** Declares its reuse; its third `serialize` throws. */
const EXPLODING = reusingCodec(true, 3);

const Reuse = {
  typeName: SERVICE,
  methods: {
    Split: method("Split", "server_streaming", REUSING, REUSING),
    Echo: method("Echo", "bidi_streaming", REUSING, REUSING),
    Reply: method("Reply", "unary", REUSING, REUSING),
    Join: method("Join", "client_streaming", REUSING, REUSING),
    LeakySplit: method("LeakySplit", "server_streaming", text, LEAKY),
    Explode: method("Explode", "server_streaming", text, EXPLODING),
  },
} as const;

interface Rig {
  publisher: GrpcServicePublisher;
  channel: GrpcChannel;
  /** What the error sink received. */
  errors: { error: unknown; method: string }[];
  /** The requests each Join call read, in order. */
  joined: string[][];
  /** Lets the Explode handler go on to its third message. */
  releaseExplode: () => void;
  /** Resolves when the Explode handler has finished. */
  exploded: Promise<void>;
}

/** A promise and its resolver. */
function latch(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => resolve = r);
  return { promise, resolve };
}

async function startRig(): Promise<Rig> {
  const errors: Rig["errors"] = [];
  const joined: string[][] = [];
  const release = latch();
  const finished = latch();
  const publisher = new GrpcServicePublisher({
    addresses: HOST,
    port: 0,
    onError: (error, method) => errors.push({ error, method }),
  });
  publisher.addService(Reuse, {
    Split: async function* (request: string) {
      for (let i = 0; i < Number(request); i++) yield MESSAGES[i];
    },
    Echo: async function* (requests: AsyncIterable<string>) {
      for await (const request of requests) yield reply(request);
    },
    Reply: (request: string) => reply(request),
    Join: async (requests: AsyncIterable<string>) => {
      const seen: string[] = [];
      for await (const request of requests) seen.push(request);
      joined.push(seen);
      return summarize(seen);
    },
    LeakySplit: async function* (request: string) {
      for (let i = 0; i < Number(request); i++) yield MESSAGES[i];
    },
    Explode: async function* () {
      try {
        for (let i = 0; i < 4; i++) {
          // The client has read the first two before the third fails: grpc-js
          // drops the responses its client has not read yet when it receives
          // a non-OK status.
          if (i === 2) await release.promise;
          yield MESSAGES[i];
        }
      } finally {
        finished.resolve();
      }
    },
  });
  const { port } = await publisher.start();
  const channel = await connectChannel(HOST, port);
  return {
    publisher,
    channel,
    errors,
    joined,
    releaseExplode: release.resolve,
    exploded: finished.promise,
  };
}

/** Reads a stream to its end or its failure. */
async function drain<T>(stream: AsyncIterable<T>): Promise<{ values: T[]; error?: unknown }> {
  const values: T[] = [];
  try {
    for await (const value of stream) values.push(value);
  } catch (error) {
    return { values, error };
  }
  return { values };
}

/** The indices at which `actual` differs from `expected`. */
function differing(actual: readonly string[], expected: readonly string[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.max(actual.length, expected.length); i++) {
    if (actual[i] !== expected[i]) out.push(i);
  }
  return out;
}

Deno.test("a codec that reuses its buffer sends every message intact", async (t) => {
  const rig = await startRig();
  const { channel } = rig;
  try {
    await t.step(
      "a server stream of 2,000 distinct large messages arrives exactly, in order",
      async () => {
        const { values, error } = await drain(
          channel.serverStream(Reuse.methods.Split, String(COUNT)),
        );
        assert.equal(error, undefined);
        assert.deepEqual(differing(values, MESSAGES), []);
        assert.equal(values.length, COUNT);
      },
    );

    await t.step(
      "a bidi call echoes 2,000 distinct large requests sent through the same codec exactly",
      async () => {
        const { values, error } = await drain(channel.bidiStream(Reuse.methods.Echo, MESSAGES));
        assert.equal(error, undefined);
        assert.deepEqual(differing(values, MESSAGES.map(reply)), []);
        assert.equal(values.length, COUNT);
      },
    );

    await t.step(
      "200 concurrent unary calls each get the answer to their own request",
      async () => {
        const requests = MESSAGES.slice(0, 200);
        const answers = await Promise.all(
          requests.map((request) => channel.unary(Reuse.methods.Reply, request)),
        );
        assert.deepEqual(differing(answers, requests.map(reply)), []);
      },
    );

    await t.step(
      "a client stream of 2,000 distinct large requests reaches the server exactly",
      async () => {
        const summary = await channel.clientStream(Reuse.methods.Join, MESSAGES);
        assert.equal(summary, summarize(MESSAGES));
        assert.equal(rig.joined.length, 1);
        assert.deepEqual(differing(rig.joined[0], MESSAGES), []);
      },
    );

    await t.step("no failure was reported to the error sink", () => {
      assert.deepEqual(rig.errors, []);
    });

    await t.step(
      "the same codec without reusesBuffer corrupts a server stream (the control)",
      async () => {
        const { values, error } = await drain(
          channel.serverStream(Reuse.methods.LeakySplit, String(COUNT)),
        );
        assert.equal(error, undefined);
        assert.equal(values.length, COUNT);
        const corrupted = differing(values, MESSAGES);
        assert.ok(corrupted.length > 0, "Expected at least one corrupted message");
        // Each corrupted message kept its length: its bytes are another message's.
        for (const i of corrupted) assert.equal(values[i].length, MESSAGES[i].length);
      },
    );

    await t.step(
      "a deferred serialize that throws ends the call with INTERNAL and is reported once",
      async () => {
        const values: string[] = [];
        let error: unknown;
        try {
          for await (const value of channel.serverStream(Reuse.methods.Explode, "go")) {
            values.push(value);
            if (values.length === 2) rig.releaseExplode();
          }
        } catch (e) {
          error = e;
        }
        assert.deepEqual(differing(values, MESSAGES.slice(0, 2)), []);
        assert.ok(error instanceof GrpcStatusError, `Expected a GrpcStatusError, got ${error}`);
        assert.equal(error.code, GrpcStatus.INTERNAL, error.message);
        // grpc-js's own answer to a throwing serializer (the handler adapter
        // would have answered "Exception: …"): the throw happened as grpc-js
        // framed the message.
        assert.ok(error.details.startsWith("Error serializing response"), error.details);
        // Serialized only as grpc-js framed them: the fourth message never was.
        assert.deepEqual(differing(EXPLODING.serialized, MESSAGES.slice(0, 3)), []);
        await rig.exploded;
        assert.equal(rig.errors.length, 1);
        assert.equal(rig.errors[0].error, EXPLODING.failure);
        assert.equal(rig.errors[0].method, "/test.Reuse/Explode");
      },
    );
  } finally {
    // Close the channel before the server stops (see README, known limitations).
    rig.releaseExplode();
    channel.close();
    await rig.publisher.stop({ graceMs: 0 });
  }
});
