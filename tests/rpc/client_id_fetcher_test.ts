// node:assert directly: this test loads grpc-js, whose @types/node the
// shared ../_assert.ts helpers do not type-check against.
import nodeAssert from "node:assert/strict";
import { CallerId, InvalidCallerIdError } from "../../rpc/caller_id.ts";
import { ClientIdFetcher } from "../../rpc/client_id_fetcher.ts";
import { GrpcStatus, GrpcStatusError } from "../../rpc/grpc_types.ts";

function assert(condition: unknown): void {
  nodeAssert.ok(condition);
}

function assertEquals(actual: unknown, expected: unknown, message = "values differ"): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

async function assertRejects(
  fn: () => Promise<unknown>,
  ErrorClass: new (...args: never[]) => Error,
  includes = "",
): Promise<void> {
  await nodeAssert.rejects(
    fn,
    (error) => error instanceof ErrorClass && error.message.includes(includes),
  );
}

function assertThrows(
  fn: () => unknown,
  ErrorClass: new (...args: never[]) => Error,
  includes = "",
): void {
  nodeAssert.throws(fn, (error) => error instanceof ErrorClass && error.message.includes(includes));
}

const CANONICAL = "0b5a8f1e-3c2d-4e7f-9a10-6b2c3d4e5f60";

/** A GetId call whose answers the test gives by hand, one per call. */
function manualCall() {
  const calls: { signal: AbortSignal; resolve(v: unknown): void; reject(e: unknown): void }[] = [];
  const call = (signal: AbortSignal) =>
    new Promise<unknown>((resolve, reject) => calls.push({ signal, resolve, reject }));
  return { call, calls };
}

Deno.test("ClientIdFetcher", async (t) => {
  await t.step("fetches the id from the GetId response", async () => {
    const fetcher = new ClientIdFetcher(() => Promise.resolve({ id: { id: CANONICAL } }));
    assertEquals((await fetcher.getId())?.toString(), CANONICAL);
  });

  await t.step(
    "makes one call for five concurrent first callers and gives all the same id",
    async () => {
      const { call, calls } = manualCall();
      const fetcher = new ClientIdFetcher(call);
      const waiting = Array.from({ length: 5 }, () => fetcher.getId());
      assertEquals(calls.length, 1);
      calls[0].resolve({ id: { id: CANONICAL } });
      const ids = await Promise.all(waiting);
      assert(ids.every((id) => id !== null && id === ids[0]));
      assertEquals(calls.length, 1);
    },
  );

  await t.step("returns the cached object without calling again", async () => {
    let count = 0;
    const fetcher = new ClientIdFetcher(() => {
      count++;
      return Promise.resolve({ id: { id: CANONICAL } });
    });
    const first = await fetcher.getId();
    const second = await fetcher.getId();
    assertEquals([first === second, count, fetcher.id === first], [true, 1, true]);
  });

  await t.step("gives null for a failed call, reports it, and calls again next time", async () => {
    const errors: unknown[] = [];
    const failure = new GrpcStatusError(GrpcStatus.UNAVAILABLE, "down");
    let count = 0;
    const fetcher = new ClientIdFetcher(() => {
      count++;
      return count === 1 ? Promise.reject(failure) : Promise.resolve({ id: { id: CANONICAL } });
    }, { onError: (error) => errors.push(error) });
    assertEquals(await fetcher.getId(), null);
    assertEquals([fetcher.id, errors], [null, [failure]]);
    assertEquals((await fetcher.getId())?.toString(), CANONICAL);
    assertEquals(count, 2);
  });

  await t.step("gives null to every concurrent caller of a failed call", async () => {
    const { call, calls } = manualCall();
    const fetcher = new ClientIdFetcher(call);
    const waiting = Array.from({ length: 3 }, () => fetcher.getId());
    calls[0].reject(new Error("boom"));
    assertEquals(await Promise.all(waiting), [null, null, null]);
    assertEquals(calls.length, 1);
  });

  await t.step("gives null, uncached, for a call that throws synchronously", async () => {
    const fetcher = new ClientIdFetcher(() => {
      throw new Error("no channel");
    });
    assertEquals([await fetcher.getId(), fetcher.id], [null, null]);
  });

  await t.step("gives null, uncached, for an empty, missing or non-UUID id", async () => {
    for (const response of [{ id: { id: "" } }, { id: undefined }, {}, null, { id: { id: "x" } }]) {
      const errors: unknown[] = [];
      let count = 0;
      const fetcher = new ClientIdFetcher(() => {
        count++;
        return Promise.resolve(response);
      }, { onError: (error) => errors.push(error) });
      assertEquals(await fetcher.getId(), null);
      assertEquals(await fetcher.getId(), null);
      assertEquals(count, 2, JSON.stringify(response));
      assert(errors.every((error) => error instanceof InvalidCallerIdError));
      assertEquals(errors.length, 2);
    }
  });

  await t.step("keeps answering null when onError itself throws", async () => {
    const fetcher = new ClientIdFetcher(() => Promise.reject(new Error("down")), {
      onError: () => {
        throw new Error("logger broken");
      },
    });
    assertEquals(await fetcher.getId(), null);
  });

  await t.step("lets one caller stop waiting while the call goes on for the others", async () => {
    const { call, calls } = manualCall();
    const fetcher = new ClientIdFetcher(call);
    const controller = new AbortController();
    const impatient = fetcher.getId({ signal: controller.signal });
    const patient = fetcher.getId();
    controller.abort(new Error("enough"));
    await assertRejects(() => impatient, Error, "enough");
    assertEquals(calls[0].signal.aborted, false);
    calls[0].resolve({ id: { id: CANONICAL } });
    assertEquals((await patient)?.toString(), CANONICAL);
  });

  await t.step(
    "aborts the call once every caller has stopped waiting, then starts afresh",
    async () => {
      const { call, calls } = manualCall();
      const fetcher = new ClientIdFetcher(call);
      const controller = new AbortController();
      const waiting = fetcher.getId({ signal: controller.signal });
      controller.abort(new Error("enough"));
      await assertRejects(() => waiting, Error, "enough");
      assertEquals(calls[0].signal.aborted, true);
      const next = fetcher.getId();
      assertEquals(calls.length, 2);
      calls[1].resolve({ id: { id: CANONICAL } });
      assertEquals((await next)?.toString(), CANONICAL);
    },
  );

  await t.step("keeps the first id when an abandoned call answers after a newer one", async () => {
    const { call, calls } = manualCall();
    const fetcher = new ClientIdFetcher(call);
    const controller = new AbortController();
    const abandoned = fetcher.getId({ signal: controller.signal });
    controller.abort(new Error("enough"));
    await assertRejects(() => abandoned, Error);
    const next = fetcher.getId();
    calls[1].resolve({ id: { id: CANONICAL } });
    const id = await next;
    calls[0].resolve({ id: { id: CallerId.random().toString() } });
    await Promise.resolve();
    assertEquals(fetcher.id, id);
  });

  await t.step("rejects at once for an already aborted signal, without calling", async () => {
    const { call, calls } = manualCall();
    const fetcher = new ClientIdFetcher(call);
    await assertRejects(
      () => fetcher.getId({ signal: AbortSignal.abort(new Error("no")) }),
      Error,
      "no",
    );
    assertEquals(calls.length, 0);
  });

  await t.step("rejects arguments that are not what they should be", () => {
    assertThrows(
      () => new ClientIdFetcher(null as never),
      TypeError,
      "'call' must be a function: current value is null",
    );
    assertThrows(
      () => new ClientIdFetcher(() => Promise.resolve({}), { onError: 1 as never }),
      TypeError,
      "'onError'",
    );
    const fetcher = new ClientIdFetcher(() => Promise.resolve({}));
    assertThrows(() => fetcher.getId({ signal: "x" as never }), TypeError, "'signal'");
  });
});
