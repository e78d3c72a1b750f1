/**
 * The caller-id handshake end to end over 127.0.0.1: a GrpcServicePublisher
 * serving tsercom.IdService/GetId and a client-streaming method that checks
 * the caller id of its first message; GrpcChannel clients fetching ids,
 * streaming, sending garbage and bad ids; a ReconnectingClient riding out a
 * server restart.
 */

// node:assert directly: this test loads grpc-js, whose @types/node the
// shared ../_assert.ts helpers do not type-check against.
import assert from "node:assert/strict";
import { CallerId } from "../../rpc/caller_id.ts";
import {
  extractIdFromFirstMessage,
  getIdHandler,
  type GetIdResponseFields,
  GrpcIdService,
} from "../../rpc/caller_id_handshake.ts";
import { connectChannel, tryConnectChannel } from "../../rpc/channel_factory.ts";
import { ClientIdFetcher } from "../../rpc/client_id_fetcher.ts";
import type { GrpcChannel } from "../../rpc/grpc_channel.ts";
import { GrpcServicePublisher } from "../../rpc/grpc_service_publisher.ts";
import {
  type GrpcCallContext,
  type GrpcMethod,
  type GrpcService,
  GrpcStatus,
  type GrpcStatusCode,
  GrpcStatusError,
} from "../../rpc/grpc_types.ts";
import { ReconnectingClient } from "../../rpc/reconnecting_client.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import { TcpProxy } from "./_tcp_proxy.ts";

const HOST = "127.0.0.1";

/** The GetIdResponse codec: a message whose `id` field is a tsercom.CallerId. */
const ID_MESSAGE = GrpcIdService.methods.GetId.response;

/**
 * `tsercom.test.Ingest/Ingest`: a client stream of `{ id: CallerId }`
 * messages; the answer names the caller.
 */
const Ingest: GrpcService & {
  methods: { Ingest: GrpcMethod<GetIdResponseFields, GetIdResponseFields> };
} = {
  typeName: "tsercom.test.Ingest",
  methods: {
    Ingest: {
      name: "Ingest",
      path: "/tsercom.test.Ingest/Ingest",
      kind: "client_streaming",
      request: ID_MESSAGE,
      response: ID_MESSAGE,
    },
  },
};

/** The same method seen by a client that sends raw bytes. */
const RAW_INGEST: GrpcMethod<Uint8Array, GetIdResponseFields> = {
  ...Ingest.methods.Ingest,
  request: { serialize: (bytes) => bytes, deserialize: (bytes) => bytes },
};

interface Server {
  publisher: GrpcServicePublisher;
  port: number;
  issued: CallerId[];
  /** What the Ingest handler read after the first message, per call. */
  rest: string[][];
  errors: unknown[];
}

async function startServer(port = 0): Promise<Server> {
  const issued: CallerId[] = [];
  const rest: string[][] = [];
  const errors: unknown[] = [];
  const publisher = new GrpcServicePublisher({
    addresses: HOST,
    port,
    onError: (error) => errors.push(error),
  });
  publisher.addService(GrpcIdService, {
    GetId: getIdHandler({ onIdCreated: (id) => issued.push(id) }),
  });
  publisher.addService(Ingest, {
    Ingest: async (requests: AsyncIterable<GetIdResponseFields>, context: GrpcCallContext) => {
      const { id, rest: more } = await extractIdFromFirstMessage(requests, {
        signal: context.signal,
      });
      const seen: string[] = [];
      for await (const message of more) seen.push(message.id?.id ?? "");
      rest.push(seen);
      return { id: { id: id.toString() } };
    },
  });
  const started = await publisher.start();
  return { publisher, port: started.port, issued, rest, errors };
}

async function assertStatus(
  promise: Promise<unknown>,
  code: GrpcStatusCode,
  details: string | RegExp,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert(error instanceof GrpcStatusError, String(error));
    assert.equal(error.code, code, error.message);
    if (typeof details === "string") assert.equal(error.details, details);
    else assert.match(error.details, details);
    return true;
  });
}

function message(id: string | undefined): GetIdResponseFields {
  return { id: id === undefined ? undefined : { id } };
}

Deno.test("caller-id handshake over 127.0.0.1", async (t) => {
  const server = await startServer();
  const channel: GrpcChannel = await connectChannel(HOST, server.port);
  try {
    await t.step(
      "a fetcher gets the id the server issued, with one call for five callers",
      async () => {
        const fetcher = ClientIdFetcher.fromChannel(channel, { deadlineMs: 5_000 });
        const ids = await Promise.all(Array.from({ length: 5 }, () => fetcher.getId()));
        assert.equal(server.issued.length, 1);
        assert(ids.every((id) => id === ids[0]));
        assert(ids[0]?.equals(server.issued[0]));
        assert.equal(await fetcher.getId(), ids[0]);
        assert.equal(server.issued.length, 1);
      },
    );

    await t.step("each fetcher gets a different id", async () => {
      const first = await ClientIdFetcher.fromChannel(channel).getId();
      const second = await ClientIdFetcher.fromChannel(channel).getId();
      assert(first !== null && second !== null && !first.equals(second));
    });

    await t.step("a stream's first message names the caller and the rest is read", async () => {
      const id = CallerId.random();
      const response = await channel.clientStream(Ingest.methods.Ingest, [
        message(id.toString()),
        message("second"),
        message("third"),
      ]);
      assert.equal(response.id?.id, id.toString());
      assert.deepEqual(server.rest.at(-1), ["second", "third"]);
    });

    await t.step("a garbage first message is answered INVALID_ARGUMENT", async () => {
      const before = server.rest.length;
      // Field 1 announced as 100 bytes long, with 1 byte present.
      await assertStatus(
        channel.clientStream(RAW_INGEST, [new Uint8Array([0x0a, 0x64, 0x01])]),
        GrpcStatus.INVALID_ARGUMENT,
        /decode/i,
      );
      assert.equal(server.rest.length, before);
    });

    await t.step("the server keeps serving after the garbage", async () => {
      const id = CallerId.random();
      const response = await channel.clientStream(Ingest.methods.Ingest, [message(id.toString())]);
      assert.equal(response.id?.id, id.toString());
      assert.equal((await ClientIdFetcher.fromChannel(channel).getId())?.toString().length, 36);
    });

    await t.step("a first message with a bad caller id is answered INVALID_ARGUMENT", async () => {
      const cases: [GetIdResponseFields, string][] = [
        [message("not-a-uuid"), "Invalid CallerID received"],
        [message(""), "Malformed or missing CallerID string"],
        [message("x".repeat(300)), "CallerID string exceeds maximum length of 256."],
        [message(undefined), "Missing CallerID"],
      ];
      for (const [first, details] of cases) {
        await assertStatus(
          channel.clientStream(Ingest.methods.Ingest, [
            first,
            message(CallerId.random().toString()),
          ]),
          GrpcStatus.INVALID_ARGUMENT,
          details,
        );
      }
    });

    await t.step("a stream that ends before its first message is answered CANCELLED", async () => {
      await assertStatus(
        channel.clientStream(Ingest.methods.Ingest, []),
        GrpcStatus.CANCELLED,
        "First call never received!",
      );
    });

    await t.step("nothing was reported as a crash", () => {
      assert.deepEqual(server.errors, []);
    });
  } finally {
    channel.close();
    await server.publisher.stop({ graceMs: 0 });
  }
});

Deno.test("ReconnectingClient over 127.0.0.1 rides out a server restart", async (t) => {
  // The server vanishes without a GOAWAY (see tests/rpc/_tcp_proxy.ts): the
  // client talks to it through a proxy that is cut, then started again.
  const server = await startServer();
  let proxy = new TcpProxy(server.port);
  const port = proxy.port;
  const scheduler = new ManualScheduler();
  const gaveUp: [unknown, number][] = [];
  const client = new ReconnectingClient(
    (signal) => tryConnectChannel(HOST, port, { signal, attemptTimeoutMs: 5_000 }),
    {
      maxRetries: 2,
      backoff: { initialMs: 100, multiplier: 2, jitter: "none" },
      scheduler,
      onGiveUp: (error, attempts) => gaveUp.push([error, attempts]),
    },
  );
  /** Fires each backoff wait as soon as the client sets it, `count` times. */
  async function fireWaits(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      await scheduler.whenPending();
      scheduler.advanceToNext();
    }
  }
  try {
    await t.step("starts connected and fetches an id", async () => {
      assert.equal(await client.start(), true);
      const id = await ClientIdFetcher.fromChannel(client.current!).getId();
      assert(id?.equals(server.issued[0]));
    });

    let failure: unknown;
    await t.step("a call fails UNAVAILABLE once the server is gone", async () => {
      await proxy.cut();
      // A call racing the close fails INTERNAL (EPIPE): wait until the
      // channel has seen the connection drop (bounded: 2 s).
      for (let i = 0; i < 400 && client.current!.connectivity === "ready"; i++) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      failure = await client.current!.unary(GrpcIdService.methods.GetId, {}).catch((e) => e);
      assert(failure instanceof GrpcStatusError);
      assert.equal(failure.code, GrpcStatus.UNAVAILABLE);
    });

    await t.step("with the server down it tries twice and gives up", async () => {
      const outcome = client.onDisconnect(failure);
      await fireWaits(2);
      assert.equal(await outcome, "gave-up");
      assert.equal(gaveUp.length, 1);
      assert.equal(gaveUp[0][1], 2);
      assert.deepEqual(scheduler.delays, [100, 200]);
      assert.equal(client.current, null);
    });

    await t.step("after a restart on the same port it connects again", async () => {
      proxy = new TcpProxy(server.port, port);
      await client.stop();
      assert.equal(await client.start(), true);
      const id = await ClientIdFetcher.fromChannel(client.current!).getId();
      assert(id?.equals(server.issued.at(-1)));
      assert.equal(server.issued.length, 2);
    });

    await t.step("a disconnection while the server is up reconnects after one wait", async () => {
      const old = client.current!;
      const outcome = client.onDisconnect(
        new GrpcStatusError(GrpcStatus.UNAVAILABLE, "connection dropped"),
      );
      await fireWaits(1);
      assert.equal(await outcome, "connected");
      assert(client.current !== null && client.current !== old);
      assert.equal(old.closed, true);
      assert.equal(
        (await ClientIdFetcher.fromChannel(client.current).getId())?.toString().length,
        36,
      );
    });
  } finally {
    await client.stop();
    await proxy.cut();
    await server.publisher.stop({ graceMs: 0 });
  }
});
