import { assert, assertEquals, assertThrows } from "../_assert.ts";
import {
  allocate,
  bitsPerElement,
  bitsView,
  bytesOf,
  bytesPerElement,
  type DType,
  DTYPES,
  filled,
  isDType,
  parseDType,
  toElement,
  UnsupportedDTypeError,
  viewBytes,
} from "../../tensor/dtype.ts";

const CLASSES: Record<DType, string> = {
  bool: "Uint8Array",
  int8: "Int8Array",
  uint8: "Uint8Array",
  int16: "Int16Array",
  int32: "Int32Array",
  int64: "BigInt64Array",
  float16: "Float16Array",
  float32: "Float32Array",
  float64: "Float64Array",
};
const SIZES: Record<DType, number> = {
  bool: 1,
  int8: 1,
  uint8: 1,
  int16: 2,
  int32: 4,
  int64: 8,
  float16: 2,
  float32: 4,
  float64: 8,
};

Deno.test("dtypes", async (t) => {
  await t.step("there are exactly the nine dtypes of the wire format", () => {
    assertEquals([...DTYPES].sort(), Object.keys(CLASSES).sort());
  });

  for (const dtype of DTYPES) {
    await t.step(`${dtype} is held in a ${CLASSES[dtype]} of ${SIZES[dtype]}-byte elements`, () => {
      const array = allocate(dtype, 3);
      assertEquals(array.constructor.name, CLASSES[dtype]);
      assertEquals(array.length, 3);
      assertEquals(bytesPerElement(dtype), SIZES[dtype]);
    });
  }

  await t.step("dtype names parse case-insensitively", () => {
    assertEquals(parseDType("Float32"), "float32");
    assertEquals(parseDType("INT64"), "int64");
    assert(isDType("bool"));
    assert(!isDType("Bool"));
  });

  await t.step("unknown dtype names are rejected with a typed error", () => {
    for (const name of ["complex64", "", "float", "torch.float32"]) {
      const error = assertThrows(
        () => parseDType(name),
        UnsupportedDTypeError,
        "Unsupported dtype",
      );
      assertEquals(error.dtype, name);
    }
  });

  await t.step("filled arrays hold the value converted to the dtype", () => {
    assertEquals(Array.from(filled("float32", 2, 1.5)), [1.5, 1.5]);
    assertEquals(Array.from(filled("int64", 2, -3.7)), [-3n, -3n]);
    assertEquals(Array.from(filled("int64", 1, 9007199254740993n)), [9007199254740993n]);
    assertEquals(Array.from(filled("bool", 2, 0.5)), [1, 1]);
    assertEquals(Array.from(filled("int16", 2, 0)), [0, 0]);
  });

  await t.step("a non-finite value cannot become an int64", () => {
    assertThrows(() => toElement("int64", Number.NaN), RangeError, "must be finite");
  });

  await t.step("aligned bytes are viewed in place, without a copy", () => {
    const bytes = new Uint8Array(16);
    const view = viewBytes("float32", bytes.subarray(4, 12));
    assertEquals(view.length, 2);
    assert(view.buffer === bytes.buffer);
  });

  await t.step("unaligned bytes are copied into a fresh array", () => {
    const source = new Float32Array([1.5, -2]);
    const bytes = new Uint8Array(9);
    bytes.set(new Uint8Array(source.buffer), 1);
    const view = viewBytes("float32", bytes.subarray(1));
    assertEquals(Array.from(view), [1.5, -2]);
    assert(view.buffer !== bytes.buffer);
  });

  await t.step("a byte length that is not whole elements is rejected", () => {
    assertThrows(
      () => viewBytes("float32", new Uint8Array(7)),
      RangeError,
      "buffer size must be a multiple of element size 4",
    );
  });

  await t.step("bytesOf views an array's own bytes", () => {
    const values = new Int16Array([1, -1]);
    assertEquals(Array.from(bytesOf(values.subarray(1))), [0xff, 0xff]);
  });

  await t.step("the bits view tells NaN from NaN as equal and -0 from +0 as different", () => {
    const a = new Float32Array([Number.NaN, 0, 1]);
    const b = new Float32Array([Number.NaN, -0, 1]);
    const [x, y] = [bitsView(a), bitsView(b)];
    assertEquals([x[0] === y[0], x[1] === y[1], x[2] === y[2]], [true, false, true]);
  });

  await t.step("the bits view of 64-bit dtypes has two entries per element", () => {
    const values = new Float64Array([1, 2]);
    assertEquals(bitsPerElement(values), 2);
    assertEquals(bitsView(values).length, 4);
    assertEquals(bitsPerElement(new Float16Array(1)), 1);
    assertEquals(bitsView(new BigInt64Array([5n])).length, 2);
  });
});
