import { assert, assertEquals, assertThrows } from "../_assert.ts";
import { CallerId } from "../../rpc/caller_id.ts";
import { CallerIdMap } from "../../rpc/caller_id_map.ts";

const A = CallerId.parse("0b5a8f1e-3c2d-4e7f-9a10-6b2c3d4e5f60");
const B = CallerId.parse("11111111-2222-4333-8444-555555555555");
const C = CallerId.parse("66666666-7777-4888-9999-aaaaaaaaaaaa");

Deno.test("CallerIdMap", async (t) => {
  await t.step("creates a caller's value once and returns the same value afterwards", () => {
    const map = new CallerIdMap<{ n: number }>();
    let created = 0;
    const make = () => ({ n: ++created });
    const first = map.getOrCreate(A, make);
    const second = map.getOrCreate(A, make);
    assertEquals([first === second, created, map.size], [true, 1, 1]);
  });

  await t.step("passes the caller id to the factory", () => {
    const map = new CallerIdMap<string>();
    assertEquals(map.getOrCreate(A, (id) => `value of ${id}`), `value of ${A}`);
  });

  await t.step("keys by UUID value, so an equal id from another parse finds the value", () => {
    const map = new CallerIdMap<number>();
    map.getOrCreate(A, () => 1);
    assertEquals(map.get(CallerId.parse(A.toString().toUpperCase())), 1);
  });

  await t.step("keeps a value per caller", () => {
    const map = new CallerIdMap<string>();
    map.getOrCreate(A, () => "a");
    map.getOrCreate(B, () => "b");
    assertEquals([map.get(A), map.get(B), map.size], ["a", "b", 2]);
  });

  await t.step("stores nothing when the factory throws, and creates on a later call", () => {
    const map = new CallerIdMap<number>();
    assertThrows(
      () =>
        map.getOrCreate(A, () => {
          throw new Error("no");
        }),
      Error,
      "no",
    );
    assertEquals([map.has(A), map.size], [false, 0]);
    assertEquals(map.getOrCreate(A, () => 7), 7);
  });

  await t.step("refuses a factory that asks for the value it is creating", () => {
    const map = new CallerIdMap<number>();
    assertThrows(
      () => map.getOrCreate(A, () => map.getOrCreate(A, () => 1)),
      Error,
      "its creation must not ask for it",
    );
    assertEquals(map.size, 0);
  });

  await t.step("removes a caller's value with delete, so the next use creates anew", () => {
    const map = new CallerIdMap<number>();
    map.getOrCreate(A, () => 1);
    assertEquals([map.delete(A), map.delete(A), map.has(A), map.size], [true, false, false, 0]);
    assertEquals(map.getOrCreate(A, () => 2), 2);
  });

  await t.step("empties with clear", () => {
    const map = new CallerIdMap<number>();
    map.getOrCreate(A, () => 1);
    map.getOrCreate(B, () => 2);
    map.clear();
    assertEquals([map.size, [...map]], [0, []]);
  });

  await t.step("iterates entries, keys and values in creation order", () => {
    const map = new CallerIdMap<string>();
    map.getOrCreate(B, () => "b");
    map.getOrCreate(A, () => "a");
    assertEquals([...map.values()], ["b", "a"]);
    assertEquals([...map.keys()].map(String), [B, A].map(String));
    assertEquals([...map].map(([id, v]) => `${id}=${v}`), [`${B}=b`, `${A}=a`]);
  });

  await t.step("iterates a snapshot, so the map may change inside the loop", () => {
    const map = new CallerIdMap<string>();
    map.getOrCreate(A, () => "a");
    map.getOrCreate(B, () => "b");
    const seen: string[] = [];
    for (const [id, value] of map) {
      seen.push(value);
      map.delete(id);
      map.getOrCreate(C, () => "c");
    }
    assertEquals([seen, map.size], [["a", "b"], 1]);
  });

  await t.step("evicts the oldest entry beyond maxSize and passes it to onEvict", () => {
    const evicted: string[] = [];
    const map = new CallerIdMap<string>({
      maxSize: 2,
      onEvict: (id, value) => evicted.push(`${id}=${value}`),
    });
    map.getOrCreate(A, () => "a");
    map.getOrCreate(B, () => "b");
    map.getOrCreate(A, () => "again");
    assertEquals(evicted, []);
    assertEquals(map.getOrCreate(C, () => "c"), "c");
    assertEquals([evicted, map.size, map.has(A)], [[`${A}=a`], 2, false]);
  });

  await t.step("does not call onEvict for delete or clear", () => {
    const evicted: unknown[] = [];
    const map = new CallerIdMap<number>({ maxSize: 5, onEvict: (id) => evicted.push(id) });
    map.getOrCreate(A, () => 1);
    map.getOrCreate(B, () => 2);
    map.delete(A);
    map.clear();
    assertEquals(evicted, []);
  });

  await t.step("rejects options and ids that are not what they should be", () => {
    for (const maxSize of [0, -1, 1.5, NaN]) {
      assertThrows(
        () => new CallerIdMap({ maxSize }),
        RangeError,
        "'maxSize' must be an integer >= 1 or Infinity",
      );
    }
    assertThrows(() => new CallerIdMap({ onEvict: 3 as never }), TypeError, "'onEvict'");
    const map = new CallerIdMap<number>();
    assertThrows(() => map.get(A.toString() as never), TypeError, "'id' must be a CallerId");
    assertThrows(() => map.getOrCreate(A, 5 as never), TypeError, "'create' must be a function");
    assert(!map.has(A));
  });
});
