/**
 * Tests of the client side of the gRPC layer: GrpcChannel and its four kinds
 * of call, createClient, checkHealth, connectChannel (happy eyeballs and the
 * four security modes) and the error classification helpers.
 *
 * The servers are plain grpc-js servers bound to loopback addresses only
 * (127.0.0.1, ::1), so that these tests do not depend on tsercom's own server.
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import nodeAssert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import {
  makeTestCertificates,
  openssl,
  type TestCertificates,
  type TestKeyPair,
} from "./_certs.ts";
import {
  ChannelConnectError,
  type ChannelSecurity,
  checkHealth,
  connectChannel,
  createClient,
  GrpcChannel,
  GrpcHealthService,
  type GrpcMethod,
  type GrpcMethodKind,
  GrpcServingStatus,
  GrpcStatus,
  type GrpcStatusCode,
  GrpcStatusError,
  grpcStatusOf,
  isServerUnavailableError,
  ManualScheduler,
  type MessageCodec,
  tryConnectChannel,
} from "../../rpc/mod.ts";

// node:assert directly: tests/_assert.ts does not type-check once grpc-js
// brings @types/node into the graph.
function assert(condition: unknown, message?: string): asserts condition {
  nodeAssert.ok(condition, message ?? "Assertion failed");
}

function assertEquals(actual: unknown, expected: unknown, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message ?? "Values differ");
}

/** Asserts that `promise` rejects with a GrpcStatusError of `code`; returns it. */
async function assertStatus(
  promise: Promise<unknown>,
  code: GrpcStatusCode,
  includes = "",
): Promise<GrpcStatusError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  assert(error instanceof GrpcStatusError, `Expected a GrpcStatusError, got ${String(error)}`);
  assertEquals(error.code, code, `Expected code ${code}, got ${error.message}`);
  assert(error.details.includes(includes), `Expected "${includes}" in: ${error.details}`);
  return error;
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const value of iterable) out.push(value);
  return out;
}

// ---------------------------------------------------------------------------
// The test service, on both sides: UTF-8 text messages (a fatal decoder, so
// bad bytes fail to decode).
// ---------------------------------------------------------------------------

const encoder = new TextEncoder();
const fatal = new TextDecoder("utf-8", { fatal: true });
const text: MessageCodec<string> = {
  serialize: (value) => encoder.encode(value),
  deserialize: (bytes) => fatal.decode(bytes),
};

function method<K extends GrpcMethodKind>(name: string, kind: K) {
  return { name, path: `/test.Echo/${name}`, kind, request: text, response: text } as const;
}

const Echo = {
  typeName: "test.Echo",
  methods: {
    Echo: method("Echo", "unary"),
    Headers: method("Headers", "unary"),
    Fail: method("Fail", "unary"),
    Slow: method("Slow", "unary"),
    Garbage: method("Garbage", "unary"),
    Count: method("Count", "server_streaming"),
    Forever: method("Forever", "server_streaming"),
    Join: method("Join", "client_streaming"),
    Shout: method("Shout", "bidi_streaming"),
  },
} as const;

const SIMULATED_ERROR = "This is a simulated error from TriggerError.";

function serverMethod(
  name: string,
  requestStream: boolean,
  responseStream: boolean,
  path = `/test.Echo/${name}`,
): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream,
    responseStream,
    requestSerialize: (value: Buffer) => value,
    requestDeserialize: (bytes: Buffer) => bytes,
    responseSerialize: (value: Buffer) => value,
    responseDeserialize: (bytes: Buffer) => bytes,
  };
}

const ECHO_DEFINITION: grpc.ServiceDefinition = {
  Echo: serverMethod("Echo", false, false),
  Headers: serverMethod("Headers", false, false),
  Fail: serverMethod("Fail", false, false),
  Slow: serverMethod("Slow", false, false),
  Garbage: serverMethod("Garbage", false, false),
  Count: serverMethod("Count", false, true),
  Forever: serverMethod("Forever", false, true),
  Join: serverMethod("Join", true, false),
  Shout: serverMethod("Shout", true, true),
};

const HEALTH_DEFINITION: grpc.ServiceDefinition = {
  Check: serverMethod("Check", false, false, "/grpc.health.v1.Health/Check"),
};

const str = (bytes: Buffer) => bytes.toString("utf8");
const buf = (value: string) => Buffer.from(value, "utf8");

/** What the test server sees, e.g. `"Forever cancelled"`, and a way to wait for it. */
class Events {
  readonly #waiters = new Map<string, (() => void)[]>();

  push(event: string): void {
    for (const wake of this.#waiters.get(event)?.splice(0) ?? []) wake();
  }

  /**
   * Resolves at the next `event` (ask before causing it). Rejects after 5 s
   * so that a missing event fails the test instead of hanging it.
   */
  next(event: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const guard = setTimeout(
        () => reject(new Error(`The server did not see "${event}" within 5 s`)),
        5_000,
      );
      const waiters = this.#waiters.get(event) ?? [];
      waiters.push(() => {
        clearTimeout(guard);
        resolve();
      });
      this.#waiters.set(event, waiters);
    });
  }
}

function echoHandlers(events: Events): grpc.UntypedServiceImplementation {
  return {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      callback(null, call.request);
    },
    Headers: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const token = call.metadata.get("x-token")[0];
      const blob = call.metadata.get("x-blob-bin")[0] as Buffer | undefined;
      callback(null, buf(JSON.stringify({ token, blob: blob ? [...blob] : null })));
    },
    Fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: SIMULATED_ERROR });
    },
    Slow: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      events.push("Slow started");
      const timer = setTimeout(() => callback(null, buf("late")), 2_000);
      call.on("cancelled", () => {
        clearTimeout(timer);
        events.push("Slow cancelled");
      });
    },
    Garbage: (
      _call: grpc.ServerUnaryCall<Buffer, Buffer>,
      callback: grpc.sendUnaryData<Buffer>,
    ) => {
      callback(null, Buffer.from([0xff, 0xfe, 0xfd]));
    },
    Count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const n = Number(str(call.request));
      for (let i = 0; i < n; i++) call.write(buf(String(i)));
      call.end();
    },
    Forever: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      call.write(buf("tick"));
      call.on("cancelled", () => events.push("Forever cancelled"));
    },
    Join: (
      call: grpc.ServerReadableStream<Buffer, Buffer>,
      callback: grpc.sendUnaryData<Buffer>,
    ) => {
      const parts: string[] = [];
      call.on("data", (chunk: Buffer) => parts.push(str(chunk)));
      call.on("end", () => callback(null, buf(parts.join(","))));
      call.on("cancelled", () => events.push("Join cancelled"));
    },
    Shout: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on("data", (chunk: Buffer) => call.write(buf(str(chunk).toUpperCase())));
      call.on("end", () => call.end());
      call.on("cancelled", () => events.push("Shout cancelled"));
    },
  };
}

/** Health answers: SERVING for the server as a whole and "up", NOT_SERVING for "down". */
const HEALTH: Record<string, number> = {
  "": GrpcServingStatus.SERVING,
  up: GrpcServingStatus.SERVING,
  down: GrpcServingStatus.NOT_SERVING,
};

const healthHandlers: grpc.UntypedServiceImplementation = {
  Check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
    const { Check } = GrpcHealthService.methods;
    const { service } = Check.request.deserialize(call.request);
    const status = HEALTH[service];
    if (status === undefined) {
      callback({ code: grpc.status.NOT_FOUND, details: "unknown service" });
      return;
    }
    callback(null, Buffer.from(Check.response.serialize({ status: status as 0 | 1 | 2 | 3 })));
  },
};

interface TestServer extends AsyncDisposable {
  readonly port: number;
  readonly events: Events;
  stop(): Promise<void>;
}

async function startServer(
  credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure(),
  host = "127.0.0.1",
): Promise<TestServer> {
  const events = new Events();
  const server = new grpc.Server();
  server.addService(ECHO_DEFINITION, echoHandlers(events));
  server.addService(HEALTH_DEFINITION, healthHandlers);
  const bindHost = host.includes(":") ? `[${host}]` : host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      `${bindHost}:0`,
      credentials,
      (error, bound) => error ? reject(error) : resolve(bound),
    );
  });
  let stopped = false;
  const stop = () => {
    if (stopped) return Promise.resolve();
    stopped = true;
    server.forceShutdown();
    return Promise.resolve();
  };
  return { port, events, stop, [Symbol.asyncDispose]: stop };
}

/**
 * TLS server credentials. The server is always given a CA for client
 * certificates: with none, grpc-js loads `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`
 * when it is set, and Deno's TLS server then sends a certificate request
 * naming every root, which clients reject as too large.
 */
function serverTls(
  certs: TestCertificates,
  leaf: TestKeyPair,
  requireClientCert = false,
): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(
    Buffer.from(certs.ca.cert),
    [{ cert_chain: Buffer.from(leaf.cert), private_key: Buffer.from(leaf.key) }],
    requireClientCert,
  );
}

// ---------------------------------------------------------------------------
// Extra certificates: tests/rpc/_certs.ts makes the CAs and the main leaves;
// pinning needs a few more.
// ---------------------------------------------------------------------------

interface PinningCertificates {
  /** Another server leaf of the same CA: CN pinned.wrong.example.com. */
  wrong: TestKeyPair;
  /** The server's next leaf: same CA and CN, one more SAN. */
  rotated: TestKeyPair;
  /** A self-signed server certificate (CA:FALSE), for pinning without a CA. */
  selfSigned: TestKeyPair;
}

const SERVER_EXTENSIONS = [
  "basicConstraints=critical,CA:FALSE",
  "keyUsage=critical,digitalSignature,keyEncipherment",
  "extendedKeyUsage=serverAuth",
];

async function makePinningCertificates(
  dir: string,
  ca: TestKeyPair,
): Promise<PinningCertificates> {
  await Deno.writeTextFile(`${dir}/pin-ca.pem`, ca.cert);
  await Deno.writeTextFile(`${dir}/pin-ca.key`, ca.key);
  const leaf = async (name: string, commonName: string, sans: string, serial: number) => {
    await Deno.writeTextFile(
      `${dir}/${name}.ext`,
      [...SERVER_EXTENSIONS, `subjectAltName=${sans}`].join("\n") + "\n",
    );
    await openssl(dir, [
      "req",
      "-new",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${commonName}`,
    ]);
    await openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "pin-ca.pem",
      "-CAkey",
      "pin-ca.key",
      "-set_serial",
      String(serial),
      "-days",
      "30",
      "-sha256",
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.pem`,
    ]);
    return {
      cert: await Deno.readTextFile(`${dir}/${name}.pem`),
      key: await Deno.readTextFile(`${dir}/${name}.key`),
    };
  };
  const [wrong, rotated] = await Promise.all([
    leaf("pin-wrong", "pinned.wrong.example.com", "DNS:pinned.wrong.example.com", 7001),
    leaf(
      "pin-rotated",
      "localhost",
      "DNS:localhost,IP:127.0.0.1,IP:::1,DNS:rotated.example.com",
      7002,
    ),
  ]);
  await openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "pin-self.key",
    "-out",
    "pin-self.pem",
    "-days",
    "30",
    "-subj",
    "/CN=localhost",
    ...SERVER_EXTENSIONS.flatMap((extension) => ["-addext", extension]),
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ]);
  const selfSigned = {
    cert: await Deno.readTextFile(`${dir}/pin-self.pem`),
    key: await Deno.readTextFile(`${dir}/pin-self.key`),
  };
  return { wrong, rotated, selfSigned };
}

let certificates: Promise<TestCertificates & PinningCertificates> | undefined;

/** The certificates, made once per test run. */
function certs(): Promise<TestCertificates & PinningCertificates> {
  certificates ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "tsercom-channel-certs-" });
    try {
      const base = await makeTestCertificates(dir);
      return { ...base, ...await makePinningCertificates(dir, base.ca) };
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  })();
  return certificates;
}

/** A TCP listener that accepts connections and never says a word. */
function silentServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connections: Deno.Conn[] = [];
  const accepted = listener.accept().then((conn) => {
    connections.push(conn);
    return conn;
  });
  return {
    port: (listener.addr as Deno.NetAddr).port,
    /** The first connection. */
    accepted,
    close() {
      listener.close();
      for (const conn of connections) {
        try {
          conn.close();
        } catch {
          // closed already
        }
      }
    },
  };
}

/** Resolves when the peer closes `conn` (a read returns end-of-file or fails). */
async function peerCloses(conn: Deno.Conn): Promise<void> {
  const chunk = new Uint8Array(1024);
  for (;;) {
    try {
      if (await conn.read(chunk) === null) return;
    } catch {
      return;
    }
  }
}

/** A port on 127.0.0.1 that refuses connections (bound, then released). */
function refusedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

// ---------------------------------------------------------------------------
// GrpcChannel: the four kinds of call over plaintext
// ---------------------------------------------------------------------------

Deno.test("GrpcChannel makes every kind of call to a plaintext server", async (t) => {
  await using server = await startServer();
  await using channel = new GrpcChannel("127.0.0.1", server.port);
  const { methods } = Echo;

  await t.step("a new channel has not dialled yet", () => {
    assertEquals(channel.target, `127.0.0.1:${server.port}`);
    assertEquals(channel.connectivity, "idle");
  });

  await t.step("waitForReady connects and the channel becomes ready", async () => {
    await channel.waitForReady(5_000);
    assertEquals(channel.connectivity, "ready");
  });

  await t.step("a unary call returns the server's response", async () => {
    assertEquals(await channel.unary(methods.Echo, "hello"), "hello");
  });

  await t.step("metadata reaches the server, binary values as bytes", async () => {
    const answer = await channel.unary(methods.Headers, "", {
      metadata: { "x-token": "secret", "x-blob-bin": btoa("\x01\x02\xff") },
    });
    assertEquals(JSON.parse(answer), { token: "secret", blob: [1, 2, 255] });
  });

  await t.step("a server error arrives with its code and details", async () => {
    await assertStatus(
      channel.unary(methods.Fail, "x"),
      GrpcStatus.INVALID_ARGUMENT,
      "simulated error from TriggerError",
    );
  });

  await t.step("a deadline that passes fails the call with DEADLINE_EXCEEDED", async () => {
    const cancelled = server.events.next("Slow cancelled");
    const error = await assertStatus(
      channel.unary(methods.Slow, "x", { deadlineMs: 200 }),
      GrpcStatus.DEADLINE_EXCEEDED,
    );
    assert(isServerUnavailableError(error));
    assert(!isServerUnavailableError(error, { deadlineExceeded: false }));
    await cancelled; // the server's call ended too
  });

  await t.step("a response that does not decode fails with INTERNAL", async () => {
    const error = await assertStatus(
      channel.unary(methods.Garbage, "x"),
      GrpcStatus.INTERNAL,
      "Cannot decode a response of /test.Echo/Garbage",
    );
    assert(error.cause instanceof TypeError, "the decoder's error is the cause");
  });

  await t.step("a server-streaming call yields every response in order", async () => {
    assertEquals(await collect(channel.serverStream(methods.Count, "5")), [
      "0",
      "1",
      "2",
      "3",
      "4",
    ]);
    assertEquals(await collect(channel.serverStream(methods.Count, "0")), []);
  });

  await t.step("a server stream of many responses arrives whole, with flow control", async () => {
    const all = await collect(channel.serverStream(methods.Count, "500"));
    assertEquals(all.length, 500);
    assertEquals(all[499], "499");
  });

  await t.step("leaving a server stream early cancels the call on the server", async () => {
    const cancelled = server.events.next("Forever cancelled");
    for await (const tick of channel.serverStream(methods.Forever, "")) {
      assertEquals(tick, "tick");
      break;
    }
    await cancelled;
  });

  await t.step("a client-streaming call sends every request and returns the answer", async () => {
    async function* parts() {
      yield "a";
      yield "b";
      yield "c";
    }
    assertEquals(await channel.clientStream(methods.Join, parts()), "a,b,c");
    assertEquals(await channel.clientStream(methods.Join, ["x", "y"]), "x,y");
    assertEquals(await channel.clientStream(methods.Join, []), "");
  });

  await t.step("a bidirectional call answers each request", async () => {
    async function* words() {
      yield "one";
      yield "two";
      yield "three";
    }
    assertEquals(await collect(channel.bidiStream(methods.Shout, words())), [
      "ONE",
      "TWO",
      "THREE",
    ]);
  });

  await t.step("a bidirectional call can interleave requests and responses", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* requests() {
      yield "ping";
      await gate; // the second request waits for the first answer
      yield "pong";
    }
    const answers: string[] = [];
    for await (const answer of channel.bidiStream(methods.Shout, requests())) {
      answers.push(answer);
      if (answers.length === 1) release();
    }
    assertEquals(answers, ["PING", "PONG"]);
  });

  await t.step("a failing request stream cancels the call and its error is re-thrown", async () => {
    const failure = new Error("sensor unplugged");
    async function* failing() {
      yield "a";
      throw failure;
    }
    const joinCancelled = server.events.next("Join cancelled");
    await nodeAssert.rejects(channel.clientStream(methods.Join, failing()), (e) => e === failure);
    await joinCancelled;
    const shoutCancelled = server.events.next("Shout cancelled");
    const shout = collect(channel.bidiStream(methods.Shout, failing()));
    await nodeAssert.rejects(shout, (e) => e === failure);
    await shoutCancelled;
  });

  await t.step("aborting the signal cancels a unary call with CANCELLED", async () => {
    const controller = new AbortController();
    const started = server.events.next("Slow started");
    const cancelled = server.events.next("Slow cancelled");
    const call = channel.unary(methods.Slow, "x", { signal: controller.signal });
    await started;
    const reason = new Error("user gave up");
    controller.abort(reason);
    const error = await assertStatus(call, GrpcStatus.CANCELLED, "abort signal");
    assert(error.cause === reason, "the signal's reason is the cause");
    await cancelled;
  });

  await t.step("aborting the signal cancels a stream with CANCELLED", async () => {
    const controller = new AbortController();
    const received: string[] = [];
    const reading = (async () => {
      for await (
        const tick of channel.serverStream(methods.Forever, "", { signal: controller.signal })
      ) {
        received.push(tick);
        controller.abort();
      }
    })();
    await assertStatus(reading, GrpcStatus.CANCELLED);
    assertEquals(received, ["tick"]);
  });

  await t.step("a signal aborted already fails the call before it starts", async () => {
    const signal = AbortSignal.abort(new Error("too late"));
    await assertStatus(
      channel.unary(methods.Echo, "x", { signal }),
      GrpcStatus.CANCELLED,
      "before it started",
    );
    await assertStatus(
      collect(channel.serverStream(methods.Count, "1", { signal })),
      GrpcStatus.CANCELLED,
    );
  });

  await t.step("a method of another kind is refused at once", () => {
    nodeAssert.throws(
      () => channel.unary(methods.Count as unknown as GrpcMethod<string, string>, "x"),
      (e) => e instanceof TypeError && e.message.includes("server_streaming"),
    );
    nodeAssert.throws(
      () => channel.unary(methods.Echo, "x", { deadlineMs: -1 }),
      (e) => e instanceof RangeError && e.message.includes("deadlineMs"),
    );
    nodeAssert.throws(
      () => channel.unary(methods.Echo, "x", { metadata: { "Bad Key": "v" } }),
      (e) => e instanceof TypeError && e.message.includes("Bad Key"),
    );
  });

  await t.step("a request the codec cannot encode fails with the codec's error", async () => {
    const failure = new Error("cannot encode");
    const broken = {
      ...methods.Echo,
      request: {
        ...text,
        serialize: () => {
          throw failure;
        },
      },
    };
    await nodeAssert.rejects(channel.unary(broken, "x"), (e) => e === failure);
  });
});

Deno.test("GrpcChannel.close cancels running calls and refuses new ones", async () => {
  await using server = await startServer();
  const channel = new GrpcChannel("127.0.0.1", server.port);
  const cancelled = server.events.next("Forever cancelled");
  const slow = channel.unary(Echo.methods.Slow, "x");
  const stream = channel.serverStream(Echo.methods.Forever, "")[Symbol.asyncIterator]();
  assertEquals((await stream.next()).value, "tick");
  const next = stream.next();
  channel.close();
  await assertStatus(slow, GrpcStatus.CANCELLED, "was closed");
  await assertStatus(next, GrpcStatus.CANCELLED, "was closed");
  assertEquals(channel.connectivity, "shutdown");
  await assertStatus(channel.unary(Echo.methods.Echo, "x"), GrpcStatus.UNAVAILABLE, "is closed");
  await assertStatus(channel.waitForReady(1_000), GrpcStatus.UNAVAILABLE, "is closed");
  channel.close(); // closing twice does nothing
  await cancelled;
});

Deno.test("GrpcChannel reaches a server on the IPv6 loopback address", async () => {
  await using server = await startServer(undefined, "::1");
  await using channel = new GrpcChannel("::1", server.port);
  assertEquals(channel.target, `[::1]:${server.port}`);
  assertEquals(await channel.unary(Echo.methods.Echo, "six"), "six");
  await using bracketed = new GrpcChannel("[::1]", server.port);
  assertEquals(bracketed.address, "::1");
  assertEquals(await bracketed.unary(Echo.methods.Echo, "bracketed"), "bracketed");
});

Deno.test("GrpcChannel rejects malformed arguments with clear errors", async (t) => {
  await t.step("the port must be in 1..65535", () => {
    nodeAssert.throws(
      () => new GrpcChannel("127.0.0.1", 70_000),
      (e) => e instanceof RangeError && e.message.includes("current value is 70000"),
    );
  });
  await t.step("the address must not carry a port", () => {
    nodeAssert.throws(
      () => new GrpcChannel("127.0.0.1:80", 80),
      (e) => e instanceof TypeError && e.message.includes("without a port"),
    );
  });
  await t.step("the security mode must be one of the four", () => {
    nodeAssert.throws(
      () =>
        new GrpcChannel("127.0.0.1", 80, {
          security: { mode: "tls" } as unknown as ChannelSecurity,
        }),
      (e) => e instanceof TypeError && e.message.includes(`"server-ca"`),
    );
  });
  await t.step("a certificate that does not parse is refused", () => {
    nodeAssert.throws(
      () =>
        new GrpcChannel("127.0.0.1", 80, {
          security: { mode: "server-ca", ca: "not a certificate" },
        }),
      (e) => e instanceof TypeError && e.message.includes("'security.ca'"),
    );
  });
  await t.step("a private key that is not the certificate's is refused", async () => {
    const c = await certs();
    nodeAssert.throws(
      () =>
        new GrpcChannel("127.0.0.1", 80, {
          security: { mode: "mutual", certificate: c.client.cert, privateKey: c.server.key },
        }),
      (e) => e instanceof TypeError && e.message.includes("'security.privateKey'"),
    );
  });
  await t.step("a pinned certificate must be exactly one", async () => {
    const c = await certs();
    nodeAssert.throws(
      () =>
        new GrpcChannel("127.0.0.1", 80, {
          security: { mode: "pinned", certificate: c.server.cert + c.client.cert },
        }),
      (e) => e instanceof TypeError && e.message.includes("exactly one certificate"),
    );
  });
});

// ---------------------------------------------------------------------------
// createClient and checkHealth
// ---------------------------------------------------------------------------

Deno.test("createClient makes one function per method, of the method's kind", async (t) => {
  await using server = await startServer();
  await using channel = new GrpcChannel("127.0.0.1", server.port);
  const client = createClient(channel, Echo);

  await t.step("the functions are named in camelCase", () => {
    assertEquals(Object.keys(client).sort(), [
      "count",
      "echo",
      "fail",
      "forever",
      "garbage",
      "headers",
      "join",
      "shout",
      "slow",
    ]);
  });

  await t.step("each function makes its method's kind of call", async () => {
    assertEquals(await client.echo("hi"), "hi");
    assertEquals(await collect(client.count("2")), ["0", "1"]);
    assertEquals(await client.join(["p", "q"]), "p,q");
    assertEquals(await collect(client.shout(["a"])), ["A"]);
    await assertStatus(client.fail("x"), GrpcStatus.INVALID_ARGUMENT);
  });

  await t.step("two methods that would share a name are refused", () => {
    const clash = {
      typeName: "test.Clash",
      methods: { Ping: Echo.methods.Echo, ping: Echo.methods.Echo },
    };
    nodeAssert.throws(
      () => createClient(channel, clash),
      (e) => e instanceof TypeError && e.message.includes("'ping'"),
    );
  });
});

Deno.test("checkHealth is true exactly when the service is SERVING", async (t) => {
  await using server = await startServer();
  await using channel = new GrpcChannel("127.0.0.1", server.port);

  await t.step("the server as a whole and a serving service are healthy", async () => {
    assertEquals(await checkHealth(channel), true);
    assertEquals(await checkHealth(channel, "up"), true);
  });
  await t.step("a service that is NOT_SERVING is not healthy", async () => {
    assertEquals(await checkHealth(channel, "down"), false);
  });
  await t.step("an unknown service (NOT_FOUND) is not healthy", async () => {
    assertEquals(await checkHealth(channel, "nobody"), false);
  });
  await t.step("a stopped server is not healthy", async () => {
    await server.stop();
    assertEquals(await checkHealth(channel), false);
  });
  await t.step("nothing listening is not healthy", async () => {
    await using nowhere = new GrpcChannel("127.0.0.1", refusedPort());
    assertEquals(await checkHealth(nowhere), false);
  });
});

// ---------------------------------------------------------------------------
// connectChannel: several addresses
// ---------------------------------------------------------------------------

Deno.test("connectChannel tries several addresses at once", async (t) => {
  await using server = await startServer();

  await t.step("a dead first address does not stop the second from connecting", async () => {
    // Nothing listens on 127.0.0.2 at this port: the attempt is refused at once.
    await using channel = await connectChannel(["127.0.0.2", "127.0.0.1"], server.port);
    assertEquals(channel.target, `127.0.0.1:${server.port}`);
    assertEquals(await channel.unary(Echo.methods.Echo, "via second"), "via second");
  });

  await t.step(
    "a silent first address loses to the second, and its attempt is closed",
    async () => {
      // The silent peer is 127.0.0.1:P, the real server 127.0.0.3:P.
      const silent = silentServer();
      try {
        await using twin = await startServerOnPort(silent.port);
        const scheduler = new ManualScheduler();
        const connecting = connectChannel(["127.0.0.1", "127.0.0.3"], silent.port, {
          scheduler,
          staggerMs: 250,
        });
        const conn = await silent.accepted; // the first attempt is waiting for HTTP/2 settings
        assertEquals(scheduler.pending, 2, "the stagger timer and the first attempt's timeout");
        scheduler.advance(250); // the stagger starts the second address
        await using channel = await connecting;
        assertEquals(channel.target, `127.0.0.3:${silent.port}`);
        assertEquals(await channel.unary(Echo.methods.Echo, "twin"), "twin");
        await peerCloses(conn); // the loser's connection is closed
        assertEquals(scheduler.pending, 0, "no timer is left behind");
        assertEquals(twin.port, silent.port);
      } finally {
        silent.close();
      }
    },
  );

  await t.step("an attempt that is never ready times out with DEADLINE_EXCEEDED", async () => {
    const silent = silentServer();
    try {
      const scheduler = new ManualScheduler();
      const connecting = connectChannel("127.0.0.1", silent.port, {
        scheduler,
        attemptTimeoutMs: 1_000,
      });
      const conn = await silent.accepted;
      scheduler.advance(1_000);
      const error = await connecting.catch((e: unknown) => e);
      assert(error instanceof ChannelConnectError, String(error));
      assertEquals(error.failures.length, 1);
      assertEquals(error.failures[0].error.code, GrpcStatus.DEADLINE_EXCEEDED);
      await peerCloses(conn);
    } finally {
      silent.close();
    }
  });

  await t.step("when every address fails, the error lists each failure in order", async () => {
    const port = refusedPort();
    const error = await connectChannel(["127.0.0.2", "127.0.0.1", "::1"], port).catch((e) => e);
    assert(error instanceof ChannelConnectError, String(error));
    assertEquals(error.code, GrpcStatus.UNAVAILABLE);
    assertEquals(error.port, port);
    assertEquals(error.failures.map((f) => f.target), [
      `127.0.0.2:${port}`,
      `127.0.0.1:${port}`,
      `[::1]:${port}`,
    ]);
    for (const failure of error.failures) assertEquals(failure.error.code, GrpcStatus.UNAVAILABLE);
    assert(
      error.message.includes("ECONNREFUSED") || error.message.includes("refused"),
      error.message,
    );
    assert(isServerUnavailableError(error));
    assertEquals(grpcStatusOf(error), GrpcStatus.UNAVAILABLE);
    assertEquals(await tryConnectChannel("127.0.0.1", port), null);
  });

  await t.step("aborting the signal rejects with its reason", async () => {
    const silent = silentServer();
    try {
      const controller = new AbortController();
      const connecting = connectChannel("127.0.0.1", silent.port, { signal: controller.signal });
      const conn = await silent.accepted;
      const reason = new Error("stop");
      controller.abort(reason);
      await nodeAssert.rejects(connecting, (e) => e === reason);
      await peerCloses(conn);
    } finally {
      silent.close();
    }
  });

  await t.step("malformed arguments throw at once", () => {
    nodeAssert.throws(
      () => connectChannel([], 80),
      (e) => e instanceof TypeError && e.message.includes("'addresses'"),
    );
    nodeAssert.throws(
      () => connectChannel("127.0.0.1", 0),
      (e) => e instanceof RangeError && e.message.includes("'port'"),
    );
    nodeAssert.throws(
      () => connectChannel("127.0.0.1", 80, { attemptTimeoutMs: 0 }),
      (e) => e instanceof RangeError && e.message.includes("attemptTimeoutMs"),
    );
  });
});

/** An insecure test server on 127.0.0.3 at a given port. */
async function startServerOnPort(port: number): Promise<TestServer> {
  const events = new Events();
  const server = new grpc.Server();
  server.addService(ECHO_DEFINITION, echoHandlers(events));
  await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      `127.0.0.3:${port}`,
      grpc.ServerCredentials.createInsecure(),
      (error, bound) => error ? reject(error) : resolve(bound),
    );
  });
  const stop = () => {
    server.forceShutdown();
    return Promise.resolve();
  };
  return { port, events, stop, [Symbol.asyncDispose]: stop };
}

// ---------------------------------------------------------------------------
// connectChannel: the four security modes (spec/net.md §7.2, items 5-12)
// ---------------------------------------------------------------------------

/** Connects with `security` and makes one call; returns the answer, or the connect error. */
async function tryCall(
  port: number,
  security: ChannelSecurity,
): Promise<string | ChannelConnectError> {
  try {
    await using channel = await connectChannel("127.0.0.1", port, { security });
    return await channel.unary(Echo.methods.Echo, "secure");
  } catch (error) {
    if (error instanceof ChannelConnectError) return error;
    throw error;
  }
}

function assertRefused(result: string | ChannelConnectError, includes: string): void {
  assert(result instanceof ChannelConnectError, `Expected a ChannelConnectError, got ${result}`);
  assert(result.message.includes(includes), `Expected "${includes}" in: ${result.message}`);
}

Deno.test("connectChannel verifies servers as each security mode says", async (t) => {
  const c = await certs();
  await using tls = await startServer(serverTls(c, c.server));

  await t.step("server-ca: a server whose chain leads to the CA is trusted", async () => {
    assertEquals(
      await tryCall(tls.port, { mode: "server-ca", ca: c.ca.cert, serverName: "localhost" }),
      "secure",
    );
  });

  await t.step("server-ca: without a server name, the IP address dialled is verified", async () => {
    assertEquals(await tryCall(tls.port, { mode: "server-ca", ca: c.ca.cert }), "secure");
  });

  await t.step("server-ca: certificate bytes (PEM or DER) are accepted too", async () => {
    const der = new X509Certificate(c.ca.cert).raw;
    assertEquals(await tryCall(tls.port, { mode: "server-ca", ca: new Uint8Array(der) }), "secure");
    assertEquals(
      await tryCall(tls.port, { mode: "server-ca", ca: encoder.encode(c.ca.cert) }),
      "secure",
    );
  });

  await t.step("server-ca: a name the certificate does not carry is refused", async () => {
    assertRefused(
      await tryCall(tls.port, {
        mode: "server-ca",
        ca: c.ca.cert,
        serverName: "elsewhere.example.com",
      }),
      "elsewhere.example.com",
    );
  });

  await t.step("server-ca: an unrelated CA is not trusted", async () => {
    assertRefused(
      await tryCall(tls.port, { mode: "server-ca", ca: c.otherCa.cert, serverName: "localhost" }),
      "127.0.0.1",
    );
    assertEquals(
      await tryConnectChannel("127.0.0.1", tls.port, {
        security: { mode: "server-ca", ca: c.otherCa.cert, serverName: "localhost" },
      }),
      null,
    );
  });

  await t.step("server-ca: an expired server certificate is refused", async () => {
    await using expired = await startServer(serverTls(c, c.expiredServer));
    assertRefused(
      await tryCall(expired.port, { mode: "server-ca", ca: c.ca.cert, serverName: "localhost" }),
      "127.0.0.1",
    );
  });

  await t.step("insecure: a TLS server cannot be reached in plaintext", async () => {
    assertRefused(await tryCall(tls.port, { mode: "insecure" }), "127.0.0.1");
  });

  await t.step("pinned: the pinned certificate (with its CA) is trusted", async () => {
    assertEquals(
      await tryCall(tls.port, {
        mode: "pinned",
        certificate: c.server.cert,
        ca: c.ca.cert,
        serverName: "localhost",
      }),
      "secure",
    );
  });

  await t.step("pinned: a self-signed pinned certificate needs no CA", async () => {
    await using self = await startServer(serverTls(c, c.selfSigned));
    assertEquals(
      await tryCall(self.port, { mode: "pinned", certificate: c.selfSigned.cert }),
      "secure",
    );
  });

  await t.step("pinned: another leaf of the same CA is refused", async () => {
    assertRefused(
      await tryCall(tls.port, {
        mode: "pinned",
        certificate: c.wrong.cert,
        ca: c.ca.cert,
        serverName: "localhost",
      }),
      "is not the pinned one",
    );
  });

  await t.step("pinned: the server's next certificate after a rotation is refused", async () => {
    await using rotated = await startServer(serverTls(c, c.rotated));
    assertRefused(
      await tryCall(rotated.port, {
        mode: "pinned",
        certificate: c.server.cert,
        ca: c.ca.cert,
        serverName: "localhost",
      }),
      "is not the pinned one",
    );
    // ...while the CA alone still trusts it.
    assertEquals(await tryCall(rotated.port, { mode: "server-ca", ca: c.ca.cert }), "secure");
  });

  await t.step("pinned: a CA-signed pinned certificate without its CA is refused", async () => {
    assertRefused(
      await tryCall(tls.port, { mode: "pinned", certificate: c.server.cert }),
      "127.0.0.1",
    );
  });

  for (const requireClientCert of [false, true]) {
    await t.step(
      `mutual: without the server's CA, the server is not trusted (server requires a client certificate: ${requireClientCert})`,
      async () => {
        await using server = await startServer(serverTls(c, c.server, requireClientCert));
        assertRefused(
          await tryCall(server.port, {
            mode: "mutual",
            certificate: c.client.cert,
            privateKey: c.client.key,
            serverName: "localhost",
          }),
          "127.0.0.1",
        );
      },
    );
  }

  await t.step("mutual: with the CA, the client certificate is accepted", async () => {
    await using server = await startServer(serverTls(c, c.server, true));
    assertEquals(
      await tryCall(server.port, {
        mode: "mutual",
        certificate: c.client.cert,
        privateKey: c.client.key,
        ca: c.ca.cert,
        serverName: "localhost",
      }),
      "secure",
    );
  });

  await t.step("mutual: a CA that did not sign the server's certificate is refused", async () => {
    await using server = await startServer(serverTls(c, c.server, true));
    assertRefused(
      await tryCall(server.port, {
        mode: "mutual",
        certificate: c.client.cert,
        privateKey: c.client.key,
        ca: c.otherCa.cert,
        serverName: "localhost",
      }),
      "127.0.0.1",
    );
  });
});

// ---------------------------------------------------------------------------
// Error classification
// ---------------------------------------------------------------------------

Deno.test("grpcStatusOf and isServerUnavailableError classify errors", async (t) => {
  await t.step("a GrpcStatusError gives its code", () => {
    assertEquals(grpcStatusOf(new GrpcStatusError(GrpcStatus.ABORTED, "x")), GrpcStatus.ABORTED);
  });
  await t.step("an error object with a gRPC code and details gives its code", () => {
    assertEquals(grpcStatusOf({ code: 14, details: "down", metadata: {} }), GrpcStatus.UNAVAILABLE);
  });
  await t.step("anything else gives undefined", () => {
    for (
      const value of [
        new Error("x"),
        { code: 14 },
        { code: 0, details: "" },
        { code: 99, details: "" },
        null,
        "UNAVAILABLE",
      ]
    ) {
      assertEquals(grpcStatusOf(value), undefined);
    }
  });
  await t.step("UNAVAILABLE, DEADLINE_EXCEEDED and failed connections are 'unavailable'", () => {
    assert(isServerUnavailableError(new GrpcStatusError(GrpcStatus.UNAVAILABLE, "x")));
    assert(isServerUnavailableError(new GrpcStatusError(GrpcStatus.DEADLINE_EXCEEDED, "x")));
    assert(isServerUnavailableError(new ChannelConnectError(1, [])));
    assert(isServerUnavailableError({ code: 14, details: "Connection dropped" }));
  });
  await t.step("other codes and plain errors are not", () => {
    for (
      const code of [
        GrpcStatus.CANCELLED,
        GrpcStatus.INTERNAL,
        GrpcStatus.NOT_FOUND,
        GrpcStatus.UNKNOWN,
      ]
    ) {
      assert(!isServerUnavailableError(new GrpcStatusError(code, "x")));
    }
    assert(!isServerUnavailableError(new Error("unavailable")));
    assert(!isServerUnavailableError(undefined));
  });
});
