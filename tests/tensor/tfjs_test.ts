import { assert, assertEquals, assertThrows } from "../_assert.ts";
import * as tf from "@tensorflow/tfjs";
import { fromTfjs, fromTfjsAsync, toTfjs } from "../../tensor/tfjs.ts";

await tf.setBackend("cpu");

Deno.test("the tfjs adapter", async (t) => {
  await t.step("reads a float32 tensor's values and shape as a copy", () => {
    const tensor = tf.tensor([[1.5, 2], [3, 4]], [2, 2], "float32");
    const data = fromTfjs(tensor);
    assertEquals(data.dtype, "float32");
    assertEquals(data.shape, [2, 2]);
    assert(data.values instanceof Float32Array);
    assertEquals(Array.from(data.values), [1.5, 2, 3, 4]);
    tensor.dispose();
    assertEquals(Array.from(data.values), [1.5, 2, 3, 4]);
  });

  await t.step("reads int32 and bool tensors in their own dtypes", async () => {
    const ints = tf.tensor([-7, 2147483647], [2], "int32");
    const bools = tf.tensor([1, 0, 1], [3], "bool");
    const intData = await fromTfjsAsync(ints);
    const boolData = fromTfjs(bools);
    assert(intData.values instanceof Int32Array);
    assertEquals(Array.from(intData.values), [-7, 2147483647]);
    assertEquals([boolData.dtype, Array.from(boolData.values)], ["bool", [1, 0, 1]]);
    tf.dispose([ints, bools]);
  });

  await t.step("rejects tfjs dtypes a stream cannot carry", () => {
    const strings = tf.tensor(["a"], [1], "string");
    assertThrows(() => fromTfjs(strings), TypeError, "must be float32, int32 or bool");
    strings.dispose();
  });

  await t.step("makes float32 and int32 tensors with the given shape", () => {
    const f = toTfjs(new Float32Array([1, 2, 3, 4, 5, 6]), { shape: [2, 3] });
    const i = toTfjs(new Int32Array([1, -2]));
    assertEquals([f.dtype, f.shape, Array.from(f.dataSync())], ["float32", [2, 3], [
      1,
      2,
      3,
      4,
      5,
      6,
    ]]);
    assertEquals([i.dtype, i.shape, Array.from(i.dataSync())], ["int32", [2], [1, -2]]);
    tf.dispose([f, i]);
  });

  await t.step("converts small integer dtypes exactly to int32", () => {
    const x = toTfjs(new Int16Array([-32768, 32767]));
    const y = toTfjs(new Uint8Array([255, 0]));
    assertEquals([x.dtype, Array.from(x.dataSync())], ["int32", [-32768, 32767]]);
    assertEquals([y.dtype, Array.from(y.dataSync())], ["int32", [255, 0]]);
    tf.dispose([x, y]);
  });

  await t.step("makes a bool tensor from a Uint8Array when told the dtype is bool", () => {
    const b = toTfjs(new Uint8Array([0, 2, 1]), { dtype: "bool" });
    assertEquals([b.dtype, Array.from(b.dataSync())], ["bool", [0, 1, 1]]);
    b.dispose();
  });

  await t.step("converts float16 exactly and float64 to the nearest float32", () => {
    const h = toTfjs(new Float16Array([0.5, 65504]));
    const d = toTfjs(new Float64Array([0.1]));
    assertEquals(Array.from(h.dataSync()), [0.5, 65504]);
    assertEquals(Array.from(d.dataSync()), [Math.fround(0.1)]);
    tf.dispose([h, d]);
  });

  await t.step("converts int64 to int32 when every value fits, and refuses otherwise", () => {
    const ok = toTfjs(new BigInt64Array([-5n, 2147483647n]));
    assertEquals(Array.from(ok.dataSync()), [-5, 2147483647]);
    ok.dispose();
    assertThrows(
      () => toTfjs(new BigInt64Array([0n, 2147483648n])),
      RangeError,
      "value 2147483648 at index 1 does not",
    );
  });

  await t.step("rejects a shape that does not match the number of values", () => {
    assertThrows(() => toTfjs(new Float32Array(5), { shape: [2, 2] }), RangeError, "product is 5");
    assertThrows(
      () => toTfjs(new Float32Array(4), { shape: [-2, -2] }),
      RangeError,
      "non-negative",
    );
  });
});

Deno.test("no tensor module but the adapter imports tfjs", async () => {
  const dir = new URL("../../tensor/", import.meta.url);
  const importers: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !entry.name.endsWith(".ts") || entry.name === "tfjs.ts") continue;
    const text = await Deno.readTextFile(new URL(entry.name, dir));
    if (/from\s+["'][^"']*tensorflow/.test(text) || text.includes("./tfjs.ts")) {
      importers.push(entry.name);
    }
  }
  assertEquals(importers, []);
});
