import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { create } from "@bufbuild/protobuf";
import nodeAssert from "node:assert/strict";
import { netnsTest } from "../netns/mod.ts";
import { CLIENT_COMMON_NAME, makeTestCertificates, type TestCertificates } from "./_certs.ts";
import { parsePeer } from "../../rpc/_parse_peer.ts";
import {
  GrpcBindError,
  type GrpcCallContext,
  type GrpcHandler,
  GrpcHandlerError,
  GrpcHealthService,
  type GrpcMethodKind,
  type GrpcServerTlsOptions,
  type GrpcService,
  GrpcServicePublisher,
  type GrpcServicePublisherOptions,
  GrpcServingStatus,
  GrpcStatus,
  GrpcStatusError,
  type HealthCheckResponse,
  type MessageCodec,
  ProtoDecodeError,
  serviceFromDescriptor,
} from "../../rpc/mod.ts";
import {
  type GetIdRequest,
  GetIdRequestSchema,
  type GetIdResponse,
  GetIdResponseSchema,
  IdService,
} from "../../rpc/proto/gen/caller_id_pb.ts";
import { TestConnectionService } from "../../rpc/proto/gen/common_pb.ts";
import { fromBinary, toBinary } from "@bufbuild/protobuf";

// Assertions straight from node:assert: tests/_assert.ts does not type-check
// once grpc-js brings @types/node into the graph.
function assert(condition: unknown, message?: string): asserts condition {
  nodeAssert.ok(condition, message ?? "Assertion failed");
}

function assertEquals(actual: unknown, expected: unknown, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message ?? "Values differ");
}

function assertThrows<E extends Error>(
  fn: () => unknown,
  ErrorClass: abstract new (...args: never[]) => E,
  includes = "",
): E {
  try {
    fn();
  } catch (error) {
    assert(error instanceof ErrorClass, `Expected ${ErrorClass.name}, got ${String(error)}`);
    assert(error.message.includes(includes), `Expected "${includes}" in: ${error.message}`);
    return error;
  }
  throw new Error(`Expected ${ErrorClass.name} to be thrown`);
}

// ---------------------------------------------------------------------------
// A test service: UTF-8 text messages (a fatal decoder, so bad bytes fail).
// ---------------------------------------------------------------------------

const encoder = new TextEncoder();
const fatal = new TextDecoder("utf-8", { fatal: true });
const text: MessageCodec<string> = {
  serialize: (value) => encoder.encode(value),
  deserialize: (bytes) => fatal.decode(bytes),
};

function method(name: string, kind: GrpcMethodKind) {
  return { name, path: `/test.Echo/${name}`, kind, request: text, response: text };
}

const Echo: GrpcService = {
  typeName: "test.Echo",
  methods: {
    Unary: method("Unary", "unary"),
    WhoAmI: method("WhoAmI", "unary"),
    Split: method("Split", "server_streaming"),
    Join: method("Join", "client_streaming"),
    Shout: method("Shout", "bidi_streaming"),
    Fail: method("Fail", "unary"),
    FailStream: method("FailStream", "server_streaming"),
    Wait: method("Wait", "unary"),
    NotAStream: method("NotAStream", "server_streaming"),
  },
};

/** A promise to resolve from outside. */
function latch<T = undefined>() {
  let resolve!: (value?: T) => void;
  const promise = new Promise<T | undefined>((r) => resolve = r);
  return { promise, resolve };
}

/** A `Wait` call the test controls: it starts, then waits for release or abort. */
interface Wait {
  started: ReturnType<typeof latch>;
  release: ReturnType<typeof latch>;
  aborted?: unknown;
}

/** The Echo handlers, with hooks the tests observe. */
function echoHandlers() {
  const waits: Wait[] = [];
  const nextWait = (): Wait => {
    const entry: Wait = { started: latch(), release: latch() };
    waits.push(entry);
    return entry;
  };
  const handlers: Record<string, GrpcHandler> = {
    Unary: (request: string) => `echo:${request}`,
    WhoAmI: (_request: string, context: GrpcCallContext) =>
      JSON.stringify({
        address: context.peer.address,
        port: typeof context.peer.port,
        test: context.metadata["x-test"] ?? null,
        bin: context.metadata["x-data-bin"] ?? null,
        cn: context.clientCommonName ?? null,
      }),
    Split: async function* (request: string) {
      for (const part of request.split(",")) yield part;
    },
    Join: async (requests: AsyncIterable<string>) => {
      const parts: string[] = [];
      for await (const part of requests) parts.push(part);
      return parts.join("+");
    },
    Shout: async function* (requests: AsyncIterable<string>) {
      for await (const request of requests) yield request.toUpperCase();
    },
    Fail: (request: string) => {
      if (request === "status") {
        throw new GrpcStatusError(GrpcStatus.FAILED_PRECONDITION, "not now");
      }
      throw new Error(`boom ${request}`);
    },
    FailStream: async function* (request: string) {
      yield "first";
      throw new Error(`stream boom ${request}`);
    },
    NotAStream: (request: string) => request as unknown as AsyncIterable<string>,
    Wait: async (request: string, context: GrpcCallContext) => {
      const entry = waits[waits.length - 1] ?? nextWait();
      entry.started.resolve();
      const aborted = new Promise<never>((_, reject) => {
        if (context.signal.aborted) reject(context.signal.reason);
        context.signal.addEventListener("abort", () => {
          entry.aborted = context.signal.reason;
          reject(context.signal.reason);
        }, { once: true });
      });
      await Promise.race([entry.release.promise, aborted]);
      return `waited:${request}`;
    },
  };
  return { handlers, nextWait, waits };
}

interface Started {
  publisher: GrpcServicePublisher;
  port: number;
  errors: [unknown, string][];
  echo: ReturnType<typeof echoHandlers>;
}

async function startEcho(options: GrpcServicePublisherOptions = {}): Promise<Started> {
  const errors: [unknown, string][] = [];
  const publisher = new GrpcServicePublisher({
    addresses: "127.0.0.1",
    onError: (error, method) => errors.push([error, method]),
    ...options,
  });
  const echo = echoHandlers();
  publisher.addService(Echo, echo.handlers);
  const { port } = await publisher.start();
  return { publisher, port, errors, echo };
}

// ---------------------------------------------------------------------------
// A raw grpc-js client (the tsercom channel is not used here).
// ---------------------------------------------------------------------------

type Bytes = string | Uint8Array;
const toBytes = (value: Bytes) =>
  Buffer.from(typeof value === "string" ? encoder.encode(value) : value);
const fromBytes = (buffer: Buffer) => new TextDecoder().decode(buffer);

function connect(
  port: number,
  options: { host?: string; credentials?: grpc.ChannelCredentials } = {},
): grpc.Client {
  const { host = "127.0.0.1", credentials = grpc.credentials.createInsecure() } = options;
  const target = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return new grpc.Client(target, credentials, {
    "grpc.ssl_target_name_override": "localhost",
    "grpc.default_authority": "localhost",
  });
}

interface CallError {
  code: number;
  details: string;
}

function asCallError(error: unknown): CallError {
  const { code, details } = error as grpc.ServiceError;
  return { code, details };
}

function unary(
  client: grpc.Client,
  name: string,
  request: Bytes,
  options: { metadata?: grpc.Metadata; deadlineMs?: number; path?: string } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      options.path ?? `/test.Echo/${name}`,
      toBytes,
      fromBytes,
      request,
      options.metadata ?? new grpc.Metadata(),
      { deadline: Date.now() + (options.deadlineMs ?? 5_000) },
      (error, value) => error ? reject(asCallError(error)) : resolve(value!),
    );
  });
}

/** Runs a unary call that must fail, and returns its status. */
async function failing(promise: Promise<unknown>): Promise<CallError> {
  try {
    const value = await promise;
    throw new Error(`Expected the call to fail, it answered ${JSON.stringify(value)}`);
  } catch (error) {
    if (error instanceof Error) throw error;
    return error as CallError;
  }
}

function serverStream(client: grpc.Client, name: string, request: Bytes): Promise<{
  messages: string[];
  error?: CallError;
}> {
  return new Promise((resolve) => {
    const messages: string[] = [];
    const call = client.makeServerStreamRequest(
      `/test.Echo/${name}`,
      toBytes,
      fromBytes,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + 5_000 },
    );
    call.on("data", (message: string) => messages.push(message));
    call.on("error", (error) => resolve({ messages, error: asCallError(error) }));
    call.on("end", () => resolve({ messages }));
  });
}

function clientStream(client: grpc.Client, name: string, requests: Bytes[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const call = client.makeClientStreamRequest(
      `/test.Echo/${name}`,
      toBytes,
      fromBytes,
      new grpc.Metadata(),
      { deadline: Date.now() + 5_000 },
      (error, value) => error ? reject(asCallError(error)) : resolve(value!),
    );
    for (const request of requests) call.write(request);
    call.end();
  });
}

function bidi(client: grpc.Client, name: string, requests: Bytes[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const messages: string[] = [];
    const call = client.makeBidiStreamRequest(
      `/test.Echo/${name}`,
      toBytes,
      fromBytes,
      new grpc.Metadata(),
      { deadline: Date.now() + 5_000 },
    );
    call.on("data", (message: string) => messages.push(message));
    call.on("error", (error) => reject(asCallError(error)));
    call.on("end", () => resolve(messages));
    for (const request of requests) call.write(request);
    call.end();
  });
}

const { Check, Watch } = GrpcHealthService.methods;

function check(client: grpc.Client, service: string): Promise<HealthCheckResponse> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      Check.path,
      (value: { service: string }) => Buffer.from(Check.request.serialize(value)),
      (bytes: Buffer) => Check.response.deserialize(bytes),
      { service },
      new grpc.Metadata(),
      { deadline: Date.now() + 2_000 },
      (error, value) => error ? reject(asCallError(error)) : resolve(value!),
    );
  });
}

// ---------------------------------------------------------------------------
// Pure parts
// ---------------------------------------------------------------------------

Deno.test("parsePeer reads grpcio and grpc-js peer strings", async (t) => {
  await t.step("grpcio IPv4, IPv6 (plain and percent-encoded) and Unix forms", () => {
    assertEquals(parsePeer("ipv4:1.2.3.4:5678"), { address: "1.2.3.4", port: 5678 });
    assertEquals(parsePeer("ipv6:[::1]:5678"), { address: "::1", port: 5678 });
    assertEquals(parsePeer("ipv6:%5B::1%5D:50051"), { address: "::1", port: 50051 });
    assertEquals(parsePeer("unix:/tmp/socket"), { address: "localhost", port: undefined });
    assertEquals(parsePeer("unix-abstract:name"), { address: "localhost", port: undefined });
  });
  await t.step("grpc-js forms, with IPv6 unbracketed or bracketed", () => {
    assertEquals(parsePeer("127.0.0.1:41886"), { address: "127.0.0.1", port: 41886 });
    assertEquals(parsePeer("::1:53372"), { address: "::1", port: 53372 });
    assertEquals(parsePeer("fe80::1:2:80"), { address: "fe80::1:2", port: 80 });
    assertEquals(parsePeer("[2001:db8::7]:443"), { address: "2001:db8::7", port: 443 });
    assertEquals(parsePeer("1:2:3:4:5:6:7:8:9000"), { address: "1:2:3:4:5:6:7:8", port: 9000 });
  });
  await t.step("IPv4-mapped IPv6 addresses are unwrapped", () => {
    assertEquals(parsePeer("::ffff:127.0.0.1:5678"), { address: "127.0.0.1", port: 5678 });
    assertEquals(parsePeer("ipv6:[::FFFF:10.0.0.2]:80"), { address: "10.0.0.2", port: 80 });
  });
  await t.step("an address without a port has an undefined port", () => {
    assertEquals(parsePeer("10.1.2.3"), { address: "10.1.2.3", port: undefined });
    assertEquals(parsePeer("2001:db8::1"), { address: "2001:db8::1", port: undefined });
    assertEquals(parsePeer("[::1]"), { address: "::1", port: undefined });
  });
  await t.step("anything else is undefined", () => {
    for (const bad of ["", "unknown", "ipv4:[::1]:5", "1.2.3.4:99999", "host:80", "1.2.3:80"]) {
      assertEquals(parsePeer(bad), undefined, bad);
    }
  });
});

Deno.test("GrpcHealthService encodes the health messages as protobuf does", async (t) => {
  await t.step("a request carries the service name in field 1", () => {
    const bytes = Check.request.serialize({ service: "tsercom.IdService" });
    assertEquals([...bytes.subarray(0, 2)], [0x0a, 17]);
    assertEquals(Check.request.deserialize(bytes), { service: "tsercom.IdService" });
    assertEquals(Check.request.serialize({ service: "" }).length, 0);
    assertEquals(Check.request.deserialize(new Uint8Array(0)), { service: "" });
  });
  await t.step("a response carries the status in field 1", () => {
    assertEquals([...Check.response.serialize({ status: GrpcServingStatus.NOT_SERVING })], [8, 2]);
    assertEquals(Check.response.deserialize(Uint8Array.of(8, 1)), { status: 1 });
    assertEquals(Check.response.deserialize(new Uint8Array(0)), { status: 0 });
  });
  await t.step("unknown fields are skipped", () => {
    // field 2 varint 7, field 3 fixed32, field 1 = "a"
    const bytes = Uint8Array.of(0x10, 7, 0x1d, 1, 2, 3, 4, 0x0a, 1, 0x61);
    assertEquals(Check.request.deserialize(bytes), { service: "a" });
  });
  await t.step("malformed bytes throw a ProtoDecodeError", () => {
    for (const bad of [[0x0a, 5, 0x61], [0x0a, 2, 0xff, 0xfe], [0x0f], [0x80]]) {
      assertThrows(() => Check.request.deserialize(Uint8Array.from(bad)), ProtoDecodeError);
    }
  });
});

Deno.test("serviceFromDescriptor builds services from protoc-gen-es descriptors", async (t) => {
  await t.step("IdService has its unary GetId with protobuf codecs", () => {
    const service = serviceFromDescriptor(IdService);
    assertEquals(service.typeName, "tsercom.IdService");
    assertEquals(Object.keys(service.methods), ["GetId"]);
    const getId = service.methods.GetId;
    assertEquals([getId.name, getId.path, getId.kind], [
      "GetId",
      "/tsercom.IdService/GetId",
      "unary",
    ]);
    const bytes = getId.response.serialize({ id: { id: "abc" } });
    assertEquals(fromBinary(GetIdResponseSchema, bytes).id?.id, "abc");
    const decoded = getId.response.deserialize(bytes) as GetIdResponse;
    assertEquals(decoded.id?.id, "abc");
  });
  await t.step("TestConnectionService has its TestConnection method", () => {
    const service = serviceFromDescriptor(TestConnectionService);
    assertEquals(
      service.methods.TestConnection.path,
      "/tsercom.TestConnectionService/TestConnection",
    );
  });
  await t.step("bytes that are not the message make deserialize throw", () => {
    const getId = serviceFromDescriptor(IdService).methods.GetId;
    assertThrows(() => getId.response.deserialize(Uint8Array.of(0x0a, 9, 1)), ProtoDecodeError);
  });
  await t.step("something that is not a descriptor is a TypeError", () => {
    assertThrows(() => serviceFromDescriptor({ typeName: "", methods: [] }), TypeError, "typeName");
    assertThrows(
      () =>
        serviceFromDescriptor({
          typeName: "x.Y",
          methods: [{ name: "Z", methodKind: "sideways", input: {}, output: {} }],
        }),
      TypeError,
      "methodKind",
    );
    assertThrows(
      () =>
        serviceFromDescriptor({
          typeName: "x.Y",
          methods: [{ name: "Z", methodKind: "unary", input: {}, output: {} }],
        }),
      TypeError,
      "generated message schema",
    );
  });
});

// ---------------------------------------------------------------------------
// Options and registration
// ---------------------------------------------------------------------------

Deno.test("GrpcServicePublisher checks its options and handlers up front", async (t) => {
  await t.step("a bad port, address or error sink is refused", () => {
    assertThrows(() => new GrpcServicePublisher({ port: 70_000 }), RangeError, "70000");
    assertThrows(() => new GrpcServicePublisher({ addresses: [] }), TypeError, "addresses");
    assertThrows(() => new GrpcServicePublisher({ addresses: [""] }), TypeError, "address");
    assertThrows(
      () => new GrpcServicePublisher({ onError: 1 as unknown as () => void }),
      TypeError,
      "onError",
    );
  });
  await t.step("every method needs a handler, and only methods get one", () => {
    const publisher = new GrpcServicePublisher();
    const { handlers } = echoHandlers();
    const { Unary: _, ...missing } = handlers;
    const error = assertThrows(
      () => publisher.addService(Echo, missing),
      GrpcHandlerError,
      "Unary",
    );
    assertEquals([error.typeName, error.method], ["test.Echo", "Unary"]);
    assertThrows(
      () => publisher.addService(Echo, { ...handlers, Unray: () => "" }),
      GrpcHandlerError,
      "Unray",
    );
    assertThrows(
      () => publisher.addService(Echo, { ...handlers, Unary: "x" as unknown as GrpcHandler }),
      GrpcHandlerError,
      "handler function",
    );
  });
  await t.step("a handler that cannot be of its method's kind is refused", () => {
    const publisher = new GrpcServicePublisher();
    const { handlers } = echoHandlers();
    assertThrows(
      () => publisher.addService(Echo, { ...handlers, Unary: async function* () {} }),
      GrpcHandlerError,
      "one response",
    );
    assertThrows(
      // deno-lint-ignore require-await
      () => publisher.addService(Echo, { ...handlers, Split: async () => "x" }),
      GrpcHandlerError,
      "AsyncIterable",
    );
  });
  await t.step("a service is added once, and the health service is built in", () => {
    const publisher = new GrpcServicePublisher();
    publisher.addService(Echo, echoHandlers().handlers);
    assertThrows(
      () => publisher.addService(Echo, echoHandlers().handlers),
      GrpcHandlerError,
      "once",
    );
    assertThrows(
      () => publisher.addService(GrpcHealthService, { Check: () => ({}), Watch: () => [] }),
      GrpcHandlerError,
      "health",
    );
  });
  await t.step("services cannot be added after start, nor start twice", async () => {
    const { publisher } = await startEcho();
    try {
      assertThrows(() => publisher.addService(Echo, {}), Error, "must not have been started");
      let error: unknown;
      await publisher.start().catch((e) => error = e);
      assert(error instanceof Error && error.message.includes("starts once"), String(error));
    } finally {
      await publisher.stop();
    }
  });
});

// ---------------------------------------------------------------------------
// Binding
// ---------------------------------------------------------------------------

Deno.test("GrpcServicePublisher binds its addresses on one port", async (t) => {
  await t.step("port 0 picks a free port, reported by start and by port", async () => {
    await using publisher = new GrpcServicePublisher({ addresses: "127.0.0.1" });
    assertEquals(publisher.port, undefined);
    const { port } = await publisher.start();
    assert(port > 0 && port < 65_536, String(port));
    assertEquals(publisher.port, port);
    assertEquals(publisher.addresses, ["127.0.0.1"]);
    assert(publisher.running);
  });
  await t.step("an IPv6 address binds in brackets and serves IPv6 clients", async () => {
    const { publisher, port } = await startEcho({ addresses: ["[::1]"] });
    const client = connect(port, { host: "::1" });
    try {
      assertEquals(publisher.addresses, ["::1"]);
      const who = JSON.parse(await unary(client, "WhoAmI", ""));
      assertEquals(who.address, "::1");
      assertEquals(who.port, "number");
    } finally {
      client.close();
      await publisher.stop();
    }
  });
  await t.step("every address gets the port the first one got", async () => {
    const { publisher, port } = await startEcho({ addresses: ["127.0.0.1", "::1"] });
    const v4 = connect(port);
    const v6 = connect(port, { host: "::1" });
    try {
      assertEquals(publisher.addresses, ["127.0.0.1", "::1"]);
      assertEquals(await unary(v4, "Unary", "four"), "echo:four");
      assertEquals(await unary(v6, "Unary", "six"), "echo:six");
    } finally {
      v4.close();
      v6.close();
      await publisher.stop();
    }
  });
  await t.step("an address that cannot be bound is skipped when another binds", async () => {
    await using publisher = new GrpcServicePublisher({ addresses: ["192.0.2.1", "127.0.0.1"] });
    const { port } = await publisher.start();
    assert(port > 0);
    assertEquals(publisher.addresses, ["127.0.0.1"]);
  });
  await t.step("a port in use fails start with a GrpcBindError", async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const publisher = new GrpcServicePublisher({
      addresses: "127.0.0.1",
      port: listener.addr.port,
    });
    let error: unknown;
    await publisher.start().catch((e) => error = e);
    assert(error instanceof GrpcBindError, String(error));
    assertEquals(error.failures.map((f) => [f.address, f.port]), [[
      "127.0.0.1",
      listener.addr.port,
    ]]);
    assert(error.message.includes("address already in use"), error.message);
    assertEquals(publisher.running, false);
    await publisher.stop();
  });
  await t.step(
    "an address that is not this machine's fails start with a GrpcBindError",
    async () => {
      const publisher = new GrpcServicePublisher({ addresses: "192.0.2.1" });
      let error: unknown;
      await publisher.start().catch((e) => error = e);
      assert(error instanceof GrpcBindError, String(error));
      assertEquals(error.failures.length, 1);
      assert(error.message.includes("192.0.2.1:0"), error.message);
    },
  );
});

netnsTest(
  "GrpcServicePublisher with no addresses serves IPv4 and IPv6 on one port",
  async () => {
    const { publisher, port } = await startEcho({ addresses: undefined });
    const v4 = connect(port);
    const v6 = connect(port, { host: "::1" });
    try {
      assert(publisher.addresses.includes("::"), String(publisher.addresses));
      assertEquals(await unary(v4, "Unary", "four"), "echo:four");
      assertEquals(await unary(v6, "Unary", "six"), "echo:six");
    } finally {
      v4.close();
      v6.close();
      await publisher.stop();
    }
  },
  { file: import.meta.url, timeout: 20_000 },
);

// ---------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------

Deno.test("GrpcServicePublisher runs every kind of handler", async (t) => {
  const { publisher, port, errors } = await startEcho();
  const client = connect(port);
  try {
    await t.step("unary", async () => {
      assertEquals(await unary(client, "Unary", "hi"), "echo:hi");
    });
    await t.step("unary handlers see the peer and the metadata", async () => {
      const metadata = new grpc.Metadata();
      metadata.set("x-test", "yes");
      metadata.set("x-data-bin", Buffer.from([1, 2, 3]));
      const who = JSON.parse(await unary(client, "WhoAmI", "", { metadata }));
      assertEquals(who, {
        address: "127.0.0.1",
        port: "number",
        test: "yes",
        bin: "AQID",
        cn: null,
      });
    });
    await t.step("server streaming", async () => {
      assertEquals(await serverStream(client, "Split", "a,b,c"), { messages: ["a", "b", "c"] });
    });
    await t.step("client streaming", async () => {
      assertEquals(await clientStream(client, "Join", ["x", "y", "z"]), "x+y+z");
      assertEquals(await clientStream(client, "Join", []), "");
    });
    await t.step("bidirectional streaming", async () => {
      assertEquals(await bidi(client, "Shout", ["a", "bc"]), ["A", "BC"]);
    });
    await t.step("a long stream keeps its order through flow control", async () => {
      const parts = Array.from({ length: 2_000 }, (_, k) => `${k}`.padStart(40, "."));
      assertEquals(await bidi(client, "Shout", parts), parts);
    });
    await t.step("no failure was reported", () => assertEquals(errors, []));
  } finally {
    client.close();
    await publisher.stop();
  }
});

Deno.test("GrpcServicePublisher serves services built from descriptors", async (t) => {
  const errors: unknown[] = [];
  await using publisher = new GrpcServicePublisher({
    addresses: "127.0.0.1",
    onError: (error) => errors.push(error),
  });
  publisher.addService(serviceFromDescriptor(IdService), {
    GetId: (_request: GetIdRequest) => ({ id: { id: "0b8a3b2e-5c1f-4a4e-9a53-2f4c9e1f6d7a" } }),
  });
  const { port } = await publisher.start();
  const client = connect(port);
  try {
    await t.step("a generated request is answered with a generated response", async () => {
      const bytes = await new Promise<Buffer>((resolve, reject) => {
        client.makeUnaryRequest(
          "/tsercom.IdService/GetId",
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from(toBinary(GetIdRequestSchema, create(GetIdRequestSchema))),
          new grpc.Metadata(),
          (error, value) => error ? reject(error) : resolve(value!),
        );
      });
      assertEquals(
        fromBinary(GetIdResponseSchema, bytes).id?.id,
        "0b8a3b2e-5c1f-4a4e-9a53-2f4c9e1f6d7a",
      );
    });
    await t.step("garbage request bytes are answered INVALID_ARGUMENT, not reported", async () => {
      const error = await failing(
        unary(client, "", Uint8Array.of(0x0a, 0x7f, 0x01), { path: "/tsercom.IdService/GetId" }),
      );
      assertEquals(error.code, GrpcStatus.INVALID_ARGUMENT);
      assert(error.details.includes("tsercom.GetIdRequest"), error.details);
      assertEquals(errors, []);
    });
  } finally {
    client.close();
  }
});

Deno.test("GrpcServicePublisher answers handler failures as spec §3.4 says, without B28", async (t) => {
  const { publisher, port, errors } = await startEcho();
  const client = connect(port);
  try {
    await t.step("a thrown GrpcStatusError is the answer and is not reported", async () => {
      const error = await failing(unary(client, "Fail", "status"));
      assertEquals(error, { code: GrpcStatus.FAILED_PRECONDITION, details: "not now" });
      assertEquals(errors, []);
    });
    await t.step("any other exception is INTERNAL 'Exception: …', reported once", async () => {
      const error = await failing(unary(client, "Fail", "crash"));
      assertEquals(error, { code: GrpcStatus.INTERNAL, details: "Exception: boom crash" });
      assertEquals(errors.length, 1);
      const [reported, method] = errors[0];
      assert(reported instanceof Error && reported.message === "boom crash");
      assertEquals(method, "/test.Echo/Fail");
    });
    await t.step("the server keeps serving after a crash", async () => {
      assertEquals(await unary(client, "Unary", "still"), "echo:still");
    });
    await t.step("a stream that throws ends INTERNAL after what it sent", async () => {
      const result = await serverStream(client, "FailStream", "x");
      assertEquals(result, {
        messages: ["first"],
        error: { code: GrpcStatus.INTERNAL, details: "Exception: stream boom x" },
      });
      assertEquals(errors.length, 2);
      assertEquals(errors[1][1], "/test.Echo/FailStream");
    });
    await t.step("a streaming handler that returns no stream is a reported crash", async () => {
      const result = await serverStream(client, "NotAStream", "x");
      const details = result.error?.details ?? "";
      assertEquals(result.error?.code, GrpcStatus.INTERNAL);
      assert(details.includes("must return an AsyncIterable"), details);
      assertEquals(errors.length, 3);
      assert(errors[2][0] instanceof TypeError);
    });
    await t.step(
      "garbage request bytes are INVALID_ARGUMENT for every kind, unreported",
      async () => {
        const garbage = Uint8Array.of(0xff, 0xfe);
        const one = await failing(unary(client, "Unary", garbage));
        assertEquals(one.code, GrpcStatus.INVALID_ARGUMENT);
        assert(
          one.details.startsWith("Cannot decode the request of /test.Echo/Unary"),
          one.details,
        );
        const stream = await serverStream(client, "Split", garbage);
        assertEquals(stream.error?.code, GrpcStatus.INVALID_ARGUMENT);
        const joined = await failing(clientStream(client, "Join", ["ok", garbage, "ok"]));
        assertEquals(joined.code, GrpcStatus.INVALID_ARGUMENT);
        const shouted = await failing(bidi(client, "Shout", ["ok", garbage]));
        assertEquals(shouted.code, GrpcStatus.INVALID_ARGUMENT);
        assertEquals(errors.length, 3);
      },
    );
    await t.step("an unknown method is UNIMPLEMENTED", async () => {
      const error = await failing(unary(client, "Nope", "x"));
      assertEquals(error.code, GrpcStatus.UNIMPLEMENTED);
    });
  } finally {
    client.close();
    await publisher.stop();
  }
});

Deno.test("GrpcServicePublisher survives an error sink that throws", async () => {
  await using publisher = new GrpcServicePublisher({
    addresses: "127.0.0.1",
    onError: () => {
      throw new Error("sink down");
    },
  });
  publisher.addService(Echo, echoHandlers().handlers);
  const { port } = await publisher.start();
  const client = connect(port);
  const originalError = console.error;
  const logged: unknown[][] = [];
  console.error = (...args: unknown[]) => logged.push(args);
  try {
    const error = await failing(unary(client, "Fail", "crash"));
    assertEquals(error.code, GrpcStatus.INTERNAL);
    assertEquals(await unary(client, "Unary", "alive"), "echo:alive");
    assert(logged.some((args) => String(args[0]).includes("error sink threw")));
  } finally {
    console.error = originalError;
    client.close();
  }
});

Deno.test("GrpcServicePublisher aborts a handler's signal on cancel and deadline", async (t) => {
  const { publisher, port, errors, echo } = await startEcho();
  const client = connect(port);
  try {
    await t.step("a deadline that passes aborts with DEADLINE_EXCEEDED", async () => {
      const wait = echo.nextWait();
      const error = await failing(unary(client, "Wait", "x", { deadlineMs: 200 }));
      assertEquals(error.code, GrpcStatus.DEADLINE_EXCEEDED);
      await wait.started.promise;
      while (wait.aborted === undefined) await new Promise((r) => setTimeout(r, 10));
      assert(wait.aborted instanceof GrpcStatusError);
      assertEquals(wait.aborted.code, GrpcStatus.DEADLINE_EXCEEDED);
    });
    await t.step("a client cancel aborts with CANCELLED", async () => {
      const wait = echo.nextWait();
      const done = latch<CallError>();
      const call = client.makeUnaryRequest(
        "/test.Echo/Wait",
        toBytes,
        fromBytes,
        "y",
        (error) => done.resolve(asCallError(error)),
      );
      await wait.started.promise;
      call.cancel();
      assertEquals((await done.promise)?.code, GrpcStatus.CANCELLED);
      while (wait.aborted === undefined) await new Promise((r) => setTimeout(r, 10));
      assert(wait.aborted instanceof GrpcStatusError);
      assertEquals(wait.aborted.code, GrpcStatus.CANCELLED);
    });
    await t.step("a handler that fails because it was aborted is not reported", () => {
      assertEquals(errors, []);
    });
  } finally {
    client.close();
    await publisher.stop();
  }
});

// ---------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------

Deno.test("GrpcServicePublisher serves grpc.health.v1.Health", async (t) => {
  const { publisher, port } = await startEcho();
  const client = connect(port);
  try {
    await t.step("the server and its services are SERVING after start", async () => {
      assertEquals(await check(client, ""), { status: GrpcServingStatus.SERVING });
      assertEquals(await check(client, "test.Echo"), { status: GrpcServingStatus.SERVING });
    });
    await t.step("a service set NOT_SERVING says so; the server is still SERVING", async () => {
      publisher.setServingStatus("test.Echo", GrpcServingStatus.NOT_SERVING);
      assertEquals(await check(client, "test.Echo"), { status: GrpcServingStatus.NOT_SERVING });
      assertEquals(await check(client, ""), { status: GrpcServingStatus.SERVING });
      assertEquals(publisher.servingStatus("test.Echo"), GrpcServingStatus.NOT_SERVING);
    });
    await t.step("an unknown service is NOT_FOUND", async () => {
      const error = await failing(check(client, "no.Such"));
      assertEquals(error.code, GrpcStatus.NOT_FOUND);
    });
    await t.step("a bad status is refused", () => {
      assertThrows(
        () => publisher.setServingStatus("", GrpcServingStatus.SERVICE_UNKNOWN),
        RangeError,
        "NOT_SERVING (2)",
      );
    });
    await t.step(
      "Watch streams the status, then each change, then NOT_SERVING at stop",
      async () => {
        const statuses: number[] = [];
        const changed: (() => void)[] = [];
        const ended = latch<CallError | undefined>();
        const call = client.makeServerStreamRequest(
          Watch.path,
          (value: { service: string }) => Buffer.from(Watch.request.serialize(value)),
          (bytes: Buffer) => Watch.response.deserialize(bytes),
          { service: "test.Echo" },
        );
        call.on("data", (response: HealthCheckResponse) => {
          statuses.push(response.status);
          changed.shift()?.();
        });
        call.on("error", (error) => ended.resolve(asCallError(error)));
        call.on("end", () => ended.resolve(undefined));
        const next = () => new Promise<void>((resolve) => changed.push(resolve));
        await next();
        assertEquals(statuses, [GrpcServingStatus.NOT_SERVING]);
        const serving = next();
        publisher.setServingStatus("test.Echo", GrpcServingStatus.SERVING);
        await serving;
        assertEquals(statuses, [GrpcServingStatus.NOT_SERVING, GrpcServingStatus.SERVING]);
        await publisher.stop({ graceMs: 2_000 });
        assertEquals(await ended.promise, undefined);
        assertEquals(statuses, [2, 1, 2]);
      },
    );
    await t.step("after stop every status is NOT_SERVING and calls are UNAVAILABLE", async () => {
      assertEquals(publisher.servingStatus(""), GrpcServingStatus.NOT_SERVING);
      assertEquals(publisher.servingStatus("test.Echo"), GrpcServingStatus.NOT_SERVING);
      const error = await failing(check(client, ""));
      assertEquals(error.code, GrpcStatus.UNAVAILABLE);
    });
  } finally {
    client.close();
    await publisher.stop();
  }
});

Deno.test("Watch on an unknown service answers SERVICE_UNKNOWN", async () => {
  const { publisher, port } = await startEcho();
  const client = connect(port);
  try {
    const first = await new Promise<HealthCheckResponse>((resolve, reject) => {
      const call = client.makeServerStreamRequest(
        Watch.path,
        (value: { service: string }) => Buffer.from(Watch.request.serialize(value)),
        (bytes: Buffer) => Watch.response.deserialize(bytes),
        { service: "no.Such" },
      );
      call.on("data", (response: HealthCheckResponse) => {
        resolve(response);
        call.cancel();
      });
      call.on("error", (error) => {
        if ((error as grpc.ServiceError).code !== GrpcStatus.CANCELLED) reject(error);
      });
    });
    assertEquals(first, { status: GrpcServingStatus.SERVICE_UNKNOWN });
  } finally {
    client.close();
    await publisher.stop();
  }
});

// ---------------------------------------------------------------------------
// Stopping
// ---------------------------------------------------------------------------

Deno.test("GrpcServicePublisher stops gracefully, then by force", async (t) => {
  await t.step("a call in flight finishes within the grace period", async () => {
    const { publisher, port, echo } = await startEcho();
    const client = connect(port);
    try {
      const wait = echo.nextWait();
      const answer = unary(client, "Wait", "inflight");
      await wait.started.promise;
      let stopped = false;
      const stopping = publisher.stop({ graceMs: 5_000 }).then(() => stopped = true);
      await new Promise((r) => setTimeout(r, 50));
      assertEquals(stopped, false);
      assertEquals(publisher.running, false);
      wait.release.resolve();
      assertEquals(await answer, "waited:inflight");
      await stopping;
      assertEquals(wait.aborted, undefined);
      const error = await failing(unary(client, "Unary", "late"));
      assertEquals(error.code, GrpcStatus.UNAVAILABLE);
    } finally {
      client.close();
      await publisher.stop();
    }
  });
  await t.step("a call still running after the grace period is cancelled", async () => {
    const { publisher, port, echo, errors } = await startEcho();
    const client = connect(port);
    try {
      const wait = echo.nextWait();
      const answer = failing(unary(client, "Wait", "forever"));
      await wait.started.promise;
      const began = Date.now();
      await publisher.stop({ graceMs: 100 });
      assert(Date.now() - began < 2_000);
      assertEquals(await answer, {
        code: GrpcStatus.UNAVAILABLE,
        details: "The server was stopped",
      });
      assert(wait.aborted instanceof GrpcStatusError, String(wait.aborted));
      assertEquals(errors, []);
    } finally {
      client.close();
    }
  });
  await t.step(
    "stop is idempotent, and a publisher never started just becomes stopped",
    async () => {
      const publisher = new GrpcServicePublisher({ addresses: "127.0.0.1" });
      await publisher.stop();
      await publisher.stop();
      let error: unknown;
      await publisher.start().catch((e) => error = e);
      assert(error instanceof Error && error.message.includes("stopped"), String(error));
      assertThrows(() => publisher.stop({ graceMs: -1 }), RangeError, "graceMs");
    },
  );
  await t.step("await using stops the server", async () => {
    let port: number;
    {
      await using publisher = new GrpcServicePublisher({ addresses: "127.0.0.1" });
      port = (await publisher.start()).port;
    }
    using listener = Deno.listen({ hostname: "127.0.0.1", port });
    assertEquals(listener.addr.port, port);
  });
});

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

Deno.test("GrpcServicePublisher serves server TLS and mutual TLS", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "tsercom-certs-" });
  let certs: TestCertificates;
  try {
    certs = await makeTestCertificates(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const b = (pem: string) => Buffer.from(pem);
  const trusting = () => grpc.credentials.createSsl(b(certs.ca.cert));
  const withClient = (pair = certs.client) =>
    grpc.credentials.createSsl(b(certs.ca.cert), b(pair.key), b(pair.cert));

  await t.step("bad TLS material is refused when the publisher is made", () => {
    const { cert, key } = certs.server;
    const garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const make = (tls: GrpcServerTlsOptions) => () => new GrpcServicePublisher({ tls });
    assertThrows(make({ certChain: "nope", privateKey: key }), TypeError, "tls.certChain");
    assertThrows(make({ certChain: garbage, privateKey: key }), TypeError, "certificate 1");
    assertThrows(make({ certChain: cert, privateKey: garbage }), TypeError, "tls.privateKey");
    assertThrows(make({ certChain: cert, privateKey: certs.client.key }), TypeError, "another key");
    assertThrows(
      make({ certChain: cert, privateKey: key, clientCa: garbage }),
      TypeError,
      "clientCa",
    );
    assertThrows(
      make({ certChain: cert, privateKey: key, requireClientCertificate: true }),
      TypeError,
      "clientCa",
    );
    assertThrows(
      make({
        certChain: cert,
        privateKey: key,
        clientCa: certs.ca.cert,
        requireClientCertificate: false,
      }),
      TypeError,
      "optional client certificates",
    );
  });
  await t.step("server TLS: a client trusting the CA is served, with no common name", async () => {
    const { publisher, port } = await startEcho({
      tls: { certChain: certs.server.cert, privateKey: certs.server.key },
    });
    const client = connect(port, { credentials: trusting() });
    const plain = connect(port);
    try {
      const who = JSON.parse(await unary(client, "WhoAmI", ""));
      assertEquals([who.address, who.cn], ["127.0.0.1", null]);
      assertEquals(await check(client, ""), { status: GrpcServingStatus.SERVING });
      const error = await failing(unary(plain, "Unary", "x", { deadlineMs: 2_000 }));
      assertEquals(error.code, GrpcStatus.UNAVAILABLE);
    } finally {
      client.close();
      plain.close();
      await publisher.stop();
    }
  });
  await t.step("server TLS accepts bytes as well as strings", async () => {
    const { publisher, port } = await startEcho({
      tls: {
        certChain: encoder.encode(certs.server.cert),
        privateKey: encoder.encode(certs.server.key),
      },
    });
    const client = connect(port, { credentials: trusting() });
    try {
      assertEquals(await unary(client, "Unary", "bytes"), "echo:bytes");
    } finally {
      client.close();
      await publisher.stop();
    }
  });
  await t.step(
    "mutual TLS: a client certificate from the CA is served, with its common name",
    async () => {
      const { publisher, port } = await startEcho({
        tls: {
          certChain: certs.server.cert,
          privateKey: certs.server.key,
          clientCa: certs.ca.cert,
        },
      });
      const good = connect(port, { credentials: withClient() });
      const anonymous = connect(port, { credentials: trusting() });
      const stranger = connect(port, { credentials: withClient(certs.otherClient) });
      const again = connect(port, { credentials: withClient() });
      try {
        const who = JSON.parse(await unary(good, "WhoAmI", ""));
        assertEquals(who.cn, CLIENT_COMMON_NAME);
        const noCert = await failing(unary(anonymous, "Unary", "x", { deadlineMs: 2_000 }));
        assertEquals(noCert.code, GrpcStatus.UNAVAILABLE);
        const wrongCa = await failing(unary(stranger, "Unary", "x", { deadlineMs: 2_000 }));
        assertEquals(wrongCa.code, GrpcStatus.UNAVAILABLE);
        assertEquals(await unary(again, "Unary", "still"), "echo:still");
      } finally {
        for (const client of [good, anonymous, stranger, again]) client.close();
        await publisher.stop();
      }
    },
  );
  await t.step("an expired server certificate fails the client's handshake", async () => {
    const { publisher, port } = await startEcho({
      tls: { certChain: certs.expiredServer.cert, privateKey: certs.expiredServer.key },
    });
    const client = connect(port, { credentials: trusting() });
    try {
      const error = await failing(unary(client, "Unary", "x", { deadlineMs: 2_000 }));
      assertEquals(error.code, GrpcStatus.UNAVAILABLE);
    } finally {
      client.close();
      await publisher.stop();
    }
  });
});
