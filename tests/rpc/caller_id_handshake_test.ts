import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GetIdResponseSchema } from "../../rpc/proto/gen/caller_id_pb.ts";
import { CallerId, InvalidCallerIdError } from "../../rpc/caller_id.ts";
import {
  extractIdFromCall,
  extractIdFromFirstMessage,
  getIdHandler,
} from "../../rpc/caller_id_handshake.ts";
import {
  type GrpcCallContext,
  GrpcStatus,
  type GrpcStatusCode,
  GrpcStatusError,
} from "../../rpc/grpc_types.ts";
import { ProtoDecodeError } from "../../rpc/proto_decode_error.ts";

const CANONICAL = "0b5a8f1e-3c2d-4e7f-9a10-6b2c3d4e5f60";
const OTHER = "11111111-2222-4333-8444-555555555555";
const CONTEXT = {} as GrpcCallContext;

/** Asserts that `fn` throws a GrpcStatusError with exactly this code and details. */
function assertStatus(fn: () => unknown, code: GrpcStatusCode, details: string): GrpcStatusError {
  const error = assertThrows(fn, GrpcStatusError);
  assertEquals([error.code, error.details], [code, details]);
  return error;
}

/** Asserts that `fn` rejects with a GrpcStatusError with exactly this code and details. */
async function assertRejectsStatus(
  fn: () => Promise<unknown>,
  code: GrpcStatusCode,
  details: string,
): Promise<GrpcStatusError> {
  const error = await assertRejects(fn, GrpcStatusError);
  assertEquals([error.code, error.details], [code, details]);
  return error;
}

interface Request {
  id?: { id?: unknown } | undefined;
  n: number;
}

/** A client stream that records how far it was read and whether it was closed. */
function stream<T>(items: T[], options: { failAt?: number; error?: unknown } = {}) {
  const state = { pulled: 0, closed: false };
  async function* generate(): AsyncGenerator<T> {
    try {
      for (let i = 0; i < items.length; i++) {
        if (i === options.failAt) throw options.error;
        state.pulled++;
        yield items[i];
      }
      if (options.failAt === items.length) throw options.error;
    } finally {
      state.closed = true;
    }
  }
  return { iterable: generate(), state };
}

function request(n: number, id: unknown = CANONICAL): Request {
  return { id: { id }, n };
}

Deno.test("getIdHandler", async (t) => {
  await t.step("answers a fresh caller id as { id: { id: uuid } }", async () => {
    const response = await getIdHandler()({}, CONTEXT);
    const text = response.id?.id ?? "";
    assert(CallerId.tryParse(text)?.toString() === text, text);
  });

  await t.step("answers a message that encodes as tsercom.GetIdResponse", async () => {
    const id = CallerId.parse(CANONICAL);
    const response = await getIdHandler({ createId: () => id })({}, CONTEXT);
    const decoded = fromBinary(
      GetIdResponseSchema,
      toBinary(GetIdResponseSchema, response as never),
    );
    assertEquals(decoded.id?.id, CANONICAL);
  });

  await t.step("issues a different id on every call", async () => {
    const handler = getIdHandler();
    const ids = new Set<string | undefined>();
    for (let i = 0; i < 100; i++) ids.add((await handler({}, CONTEXT)).id?.id);
    assertEquals(ids.size, 100);
  });

  await t.step("tells onIdCreated each id it sends", async () => {
    const created: CallerId[] = [];
    const handler = getIdHandler({ onIdCreated: (id) => created.push(id) });
    const first = await handler({}, CONTEXT);
    const second = await handler({}, CONTEXT);
    assertEquals(created.map(String), [first.id?.id, second.id?.id]);
  });

  await t.step("fails the call, sending no id, when onIdCreated throws", () => {
    const handler = getIdHandler({
      onIdCreated: () => {
        throw new Error("registry full");
      },
    });
    assertThrows(() => handler({}, CONTEXT), Error, "registry full");
  });

  await t.step("rejects options that are not functions", () => {
    assertThrows(
      () => getIdHandler({ onIdCreated: 5 as never }),
      TypeError,
      "'onIdCreated' must be a function: current value is 5",
    );
    assertThrows(() => getIdHandler({ createId: "x" as never }), TypeError, "'createId'");
  });

  await t.step("refuses to send what createId made when it is not a CallerId", () => {
    const handler = getIdHandler({ createId: () => CANONICAL as never });
    assertThrows(() => handler({}, CONTEXT), TypeError, "'createId' must return a CallerId");
  });
});

Deno.test("extractIdFromCall", async (t) => {
  await t.step("returns the caller id carried in the message's id field", () => {
    assertEquals(extractIdFromCall(request(1)).toString(), CANONICAL);
  });

  await t.step("returns the canonical form of an upper-case id", () => {
    assertEquals(extractIdFromCall(request(1, CANONICAL.toUpperCase())).toString(), CANONICAL);
  });

  await t.step("reads a real decoded tsercom message", () => {
    const bytes = toBinary(
      GetIdResponseSchema,
      create(GetIdResponseSchema, { id: { id: CANONICAL } }),
    );
    assertEquals(extractIdFromCall(fromBinary(GetIdResponseSchema, bytes)).toString(), CANONICAL);
  });

  await t.step("uses a custom extractor returning a CallerId message", () => {
    const message = { caller: { id: CANONICAL } };
    const id = extractIdFromCall(message, { extractor: (m) => m.caller });
    assertEquals(id.toString(), CANONICAL);
  });

  await t.step("accepts a custom extractor returning the id string itself", () => {
    assertEquals(
      extractIdFromCall({ who: CANONICAL }, { extractor: (m) => m.who }).toString(),
      CANONICAL,
    );
  });

  await t.step("accepts the expected caller", () => {
    const expected = CallerId.parse(CANONICAL);
    assert(extractIdFromCall(request(1), { expected }).equals(expected));
  });

  await t.step("rejects a message without id field as INVALID_ARGUMENT Missing CallerID", () => {
    assertStatus(
      () => extractIdFromCall({ n: 1 }),
      GrpcStatus.INVALID_ARGUMENT,
      "Missing CallerID",
    );
  });

  await t.step(
    "rejects a decoded message whose CallerId field is unset as Missing CallerID",
    () => {
      const message = fromBinary(GetIdResponseSchema, new Uint8Array());
      assertStatus(
        () => extractIdFromCall(message),
        GrpcStatus.INVALID_ARGUMENT,
        "Missing CallerID",
      );
    },
  );

  await t.step("rejects a null or non-object message as Missing CallerID", () => {
    assertStatus(() => extractIdFromCall(null), GrpcStatus.INVALID_ARGUMENT, "Missing CallerID");
    assertStatus(() => extractIdFromCall(42), GrpcStatus.INVALID_ARGUMENT, "Missing CallerID");
  });

  await t.step("rejects an extractor result of null as Missing CallerID", () => {
    assertStatus(
      () => extractIdFromCall(request(1), { extractor: () => null }),
      GrpcStatus.INVALID_ARGUMENT,
      "Missing CallerID",
    );
  });

  await t.step("rejects a CallerId with an empty string as Malformed", () => {
    const error = assertStatus(
      () => extractIdFromCall(request(1, "")),
      GrpcStatus.INVALID_ARGUMENT,
      "Malformed or missing CallerID string",
    );
    assert(error.cause instanceof InvalidCallerIdError);
  });

  await t.step("rejects a decoded CallerId that is present but empty as Malformed", () => {
    // Field 1 (id) as an empty length-delimited CallerId message.
    const message = fromBinary(GetIdResponseSchema, new Uint8Array([0x0a, 0x00]));
    assertStatus(
      () => extractIdFromCall(message),
      GrpcStatus.INVALID_ARGUMENT,
      "Malformed or missing CallerID string",
    );
  });

  await t.step("rejects a CallerId whose id is not a string, or absent, as Malformed", () => {
    for (const id of [{ id: 5 }, {}, { id: null }, 17, true]) {
      assertStatus(
        () => extractIdFromCall({ id }),
        GrpcStatus.INVALID_ARGUMENT,
        "Malformed or missing CallerID string",
      );
    }
  });

  await t.step("rejects an id of 257 characters as exceeding the maximum length", () => {
    assertStatus(
      () => extractIdFromCall(request(1, "a".repeat(257))),
      GrpcStatus.INVALID_ARGUMENT,
      "CallerID string exceeds maximum length of 256.",
    );
  });

  await t.step("rejects an id of exactly 256 characters that is not a UUID as Invalid", () => {
    assertStatus(
      () => extractIdFromCall(request(1, "a".repeat(256))),
      GrpcStatus.INVALID_ARGUMENT,
      "Invalid CallerID received",
    );
  });

  await t.step("rejects a string that is not a UUID as Invalid", () => {
    for (const text of ["not-a-uuid", `{${CANONICAL}}`, `urn:uuid:${CANONICAL}`, ` ${CANONICAL}`]) {
      assertStatus(
        () => extractIdFromCall(request(1, text)),
        GrpcStatus.INVALID_ARGUMENT,
        "Invalid CallerID received",
      );
    }
  });

  await t.step("rejects a valid id that is not the expected caller as Invalid", () => {
    const error = assertStatus(
      () => extractIdFromCall(request(1, OTHER), { expected: CallerId.parse(CANONICAL) }),
      GrpcStatus.INVALID_ARGUMENT,
      "Invalid CallerID received",
    );
    assert(String((error.cause as Error).message).includes(OTHER));
  });

  await t.step("turns an extractor that throws into Missing CallerID with the cause kept", () => {
    const failure = new Error("no such field");
    const error = assertStatus(
      () =>
        extractIdFromCall(request(1), {
          extractor: () => {
            throw failure;
          },
        }),
      GrpcStatus.INVALID_ARGUMENT,
      "Missing CallerID",
    );
    assertEquals(error.cause, failure);
  });

  await t.step("passes on a status error thrown by the extractor unchanged", () => {
    const denied = new GrpcStatusError(GrpcStatus.PERMISSION_DENIED, "not you");
    const error = assertThrows(
      () =>
        extractIdFromCall(request(1), {
          extractor: () => {
            throw denied;
          },
        }),
      GrpcStatusError,
    );
    assertEquals(error, denied);
  });

  await t.step("rejects bad options with a TypeError", () => {
    assertThrows(
      () => extractIdFromCall(request(1), { extractor: "id" as never }),
      TypeError,
      "'extractor' must be a function",
    );
    assertThrows(
      () => extractIdFromCall(request(1), { expected: CANONICAL as never }),
      TypeError,
      "'expected' must be a CallerId",
    );
  });
});

Deno.test("extractIdFromFirstMessage", async (t) => {
  await t.step("returns the id and the first message after reading exactly one", async () => {
    const { iterable, state } = stream([request(1), request(2), request(3)]);
    const { id, first } = await extractIdFromFirstMessage(iterable);
    assertEquals([id.toString(), first.n, state.pulled, state.closed], [CANONICAL, 1, 1, false]);
  });

  await t.step("leaves the rest of the stream readable in order", async () => {
    const { iterable, state } = stream([request(1), request(2), { n: 3 }]);
    const { rest } = await extractIdFromFirstMessage(iterable);
    const seen: number[] = [];
    for await (const message of rest) seen.push(message.n);
    assertEquals([seen, state.closed], [[2, 3], true]);
  });

  await t.step("closes the stream when the loop over the rest breaks early", async () => {
    const { iterable, state } = stream([request(1), request(2), request(3)]);
    const { rest } = await extractIdFromFirstMessage(iterable);
    for await (const message of rest) {
      assertEquals(message.n, 2);
      break;
    }
    assertEquals([state.pulled, state.closed], [2, true]);
  });

  await t.step("works on a one-message stream, with an empty rest", async () => {
    const { iterable } = stream([request(1)]);
    const { rest } = await extractIdFromFirstMessage(iterable);
    const seen: Request[] = [];
    for await (const message of rest) seen.push(message);
    assertEquals(seen, []);
  });

  await t.step(
    "rejects a stream that ends first with CANCELLED First call never received!",
    async () => {
      const { iterable } = stream<Request>([]);
      await assertRejectsStatus(
        () => extractIdFromFirstMessage(iterable),
        GrpcStatus.CANCELLED,
        "First call never received!",
      );
    },
  );

  await t.step(
    "rejects a stream that fails first with CANCELLED Error processing first call!",
    async () => {
      const failure = new Error("connection reset");
      const { iterable } = stream<Request>([request(1)], { failAt: 0, error: failure });
      const error = await assertRejectsStatus(
        () => extractIdFromFirstMessage(iterable),
        GrpcStatus.CANCELLED,
        "Error processing first call!",
      );
      assertEquals(error.cause, failure);
    },
  );

  await t.step("rejects a first message that cannot be decoded with INVALID_ARGUMENT", async () => {
    const failure = new ProtoDecodeError("tsercom.TensorChunk", 3, new Error("premature EOF"));
    const { iterable } = stream<Request>([request(1)], { failAt: 0, error: failure });
    const error = await assertRejectsStatus(
      () => extractIdFromFirstMessage(iterable),
      GrpcStatus.INVALID_ARGUMENT,
      `Malformed first call: ${failure.message}`,
    );
    assertEquals(error.cause, failure);
  });

  await t.step("passes on an INVALID_ARGUMENT status error from the stream unchanged", async () => {
    const failure = new GrpcStatusError(GrpcStatus.INVALID_ARGUMENT, "bad bytes");
    const { iterable } = stream<Request>([request(1)], { failAt: 0, error: failure });
    const error = await assertRejects(() => extractIdFromFirstMessage(iterable), GrpcStatusError);
    assertEquals(error, failure);
  });

  await t.step("rejects a first message with a bad id and closes the stream", async () => {
    const cases: [unknown, string][] = [
      [undefined, "Missing CallerID"],
      [{ id: "" }, "Malformed or missing CallerID string"],
      [{ id: "x".repeat(300) }, "CallerID string exceeds maximum length of 256."],
      [{ id: "nope" }, "Invalid CallerID received"],
    ];
    for (const [id, details] of cases) {
      const { iterable, state } = stream<Request>([{ id, n: 1 } as Request, request(2)]);
      await assertRejectsStatus(
        () => extractIdFromFirstMessage(iterable),
        GrpcStatus.INVALID_ARGUMENT,
        details,
      );
      assertEquals([state.pulled, state.closed], [1, true]);
    }
  });

  await t.step("rejects a first message from another caller than expected", async () => {
    const { iterable } = stream([request(1, OTHER)]);
    await assertRejectsStatus(
      () => extractIdFromFirstMessage(iterable, { expected: CallerId.parse(CANONICAL) }),
      GrpcStatus.INVALID_ARGUMENT,
      "Invalid CallerID received",
    );
  });

  await t.step("uses a custom extractor", async () => {
    const { iterable } = stream([{ caller: CANONICAL, n: 1 }]);
    const { id } = await extractIdFromFirstMessage(iterable, { extractor: (m) => m.caller });
    assertEquals(id.toString(), CANONICAL);
  });

  await t.step("stops waiting with the signal's reason and closes the stream", async () => {
    let closed = false;
    const iterable: AsyncIterable<Request> = {
      [Symbol.asyncIterator]: () => ({
        next: () => new Promise<IteratorResult<Request>>(() => {}),
        return: () => {
          closed = true;
          return Promise.resolve({ done: true, value: undefined });
        },
      }),
    };
    const controller = new AbortController();
    const waiting = extractIdFromFirstMessage(iterable, { signal: controller.signal });
    const reason = new Error("call cancelled");
    controller.abort(reason);
    const error = await assertRejects(() => waiting, Error);
    assertEquals([error, closed], [reason, true]);
  });

  await t.step("rejects at once, reading nothing, when the signal is already aborted", async () => {
    const { iterable, state } = stream([request(1)]);
    const controller = new AbortController();
    controller.abort(new Error("gone"));
    await assertRejects(
      () => extractIdFromFirstMessage(iterable, { signal: controller.signal }),
      Error,
      "gone",
    );
    assertEquals(state.pulled, 0);
  });

  await t.step("throws a TypeError at once for a value that is not an AsyncIterable", () => {
    assertThrows(
      () => extractIdFromFirstMessage([request(1)] as never),
      TypeError,
      "'requests' must be an AsyncIterable",
    );
  });
});
