import { assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { CallerId } from "../../rpc/caller_id.ts";
import { CallerIdWaiter } from "../../rpc/caller_id_waiter.ts";

const A = CallerId.parse("0b5a8f1e-3c2d-4e7f-9a10-6b2c3d4e5f60");

Deno.test("CallerIdWaiter", async (t) => {
  await t.step("has no id at first", () => {
    const waiter = new CallerIdWaiter();
    assertEquals([waiter.hasId, waiter.id], [false, null]);
  });

  await t.step("wakes every waiter when the id is set", async () => {
    const waiter = new CallerIdWaiter();
    const waiting = [waiter.wait(), waiter.wait({ signal: new AbortController().signal })];
    waiter.set(A);
    const ids = await Promise.all(waiting);
    assertEquals([ids[0] === A, ids[1] === A, waiter.hasId, waiter.id === A], [
      true,
      true,
      true,
      true,
    ]);
  });

  await t.step("resolves at once once the id is set", async () => {
    const waiter = new CallerIdWaiter();
    waiter.set(A);
    assertEquals(await waiter.wait(), A);
  });

  await t.step("refuses a second set, even with the same id, and keeps the first", () => {
    const waiter = new CallerIdWaiter();
    waiter.set(A);
    assertThrows(() => waiter.set(A), Error, "it is already set");
    assertThrows(() => waiter.set(CallerId.random()), Error, "must be set only once");
    assertEquals(waiter.id, A);
  });

  await t.step("stops waiting with the signal's reason, while others keep waiting", async () => {
    const waiter = new CallerIdWaiter();
    const controller = new AbortController();
    const impatient = waiter.wait({ signal: controller.signal });
    const patient = waiter.wait();
    controller.abort(new Error("timed out"));
    await assertRejects(() => impatient, Error, "timed out");
    waiter.set(A);
    assertEquals(await patient, A);
  });

  await t.step("rejects at once with an aborted signal and no id", async () => {
    const waiter = new CallerIdWaiter();
    await assertRejects(
      () => waiter.wait({ signal: AbortSignal.abort(new Error("no")) }),
      Error,
      "no",
    );
  });

  await t.step("rejects an id that is not a CallerId and a signal that is not one", () => {
    const waiter = new CallerIdWaiter();
    assertThrows(() => waiter.set(A.toString() as never), TypeError, "'id' must be a CallerId");
    assertThrows(() => waiter.wait({ signal: {} as never }), TypeError, "'signal'");
    assertEquals(waiter.hasId, false);
  });
});
