import { assert, assertEquals, assertThrows } from "../_assert.ts";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { CallerIdSchema } from "../../rpc/proto/gen/caller_id_pb.ts";
import {
  CallerId,
  InvalidCallerIdError,
  type InvalidCallerIdReason,
  MAX_CALLER_ID_LENGTH,
} from "../../rpc/caller_id.ts";

const CANONICAL = "0b5a8f1e-3c2d-4e7f-9a10-6b2c3d4e5f60";

Deno.test("CallerId", async (t) => {
  await t.step("random ids are version 4 UUIDs in canonical form", () => {
    const id = CallerId.random();
    assert(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id.toString()),
      id.toString(),
    );
  });

  await t.step("random ids differ from each other", () => {
    const ids = new Set(Array.from({ length: 1000 }, () => CallerId.random().toString()));
    assertEquals(ids.size, 1000);
  });

  await t.step("parses the canonical form and gives it back unchanged", () => {
    assertEquals(CallerId.parse(CANONICAL).toString(), CANONICAL);
  });

  await t.step("parses upper case and re-emits lower case", () => {
    assertEquals(CallerId.parse(CANONICAL.toUpperCase()).toString(), CANONICAL);
  });

  await t.step("parses the id field of a CallerId message", () => {
    const message = fromBinary(
      CallerIdSchema,
      toBinary(CallerIdSchema, CallerId.parse(CANONICAL).toProto() as never),
    );
    assertEquals(CallerId.parse(message).toString(), CANONICAL);
  });

  await t.step("toProto gives a message with the canonical string", () => {
    assertEquals(CallerId.parse(CANONICAL.toUpperCase()).toProto().id, CANONICAL);
  });

  await t.step("ids with the same UUID are equal whatever the case they came in", () => {
    assert(CallerId.parse(CANONICAL).equals(CallerId.parse(CANONICAL.toUpperCase())));
  });

  await t.step("ids with different UUIDs are not equal", () => {
    assert(!CallerId.random().equals(CallerId.random()));
  });

  await t.step("an id is never equal to a value of another type, even its own string", () => {
    const id = CallerId.parse(CANONICAL);
    assert(!id.equals(CANONICAL));
    assert(!id.equals({ id: CANONICAL }));
    assert(!id.equals(null));
  });

  await t.step("serialises to JSON as its string form", () => {
    assertEquals(JSON.stringify({ id: CallerId.parse(CANONICAL) }), `{"id":"${CANONICAL}"}`);
  });

  const cases: [string, unknown, InvalidCallerIdReason, string][] = [
    ["null", null, "missing", "a value must be given"],
    ["undefined", undefined, "missing", "a value must be given"],
    ["an empty string", "", "malformed", "must be a non-empty string"],
    ["an unset message field", { id: "" }, "malformed", "must be a non-empty string"],
    ["a message without an id", {}, "malformed", "must be a non-empty string"],
    ["a number in the id field", { id: 42 }, "malformed", "current value is number"],
    [
      "a string over 256 characters",
      "a".repeat(MAX_CALLER_ID_LENGTH + 1),
      "too-long",
      "at most 256",
    ],
    ["text that is not a UUID", "not-a-uuid", "not-uuid", 'current value is "not-a-uuid"'],
    ["a UUID with a non-hex digit", CANONICAL.replace("0b", "0g"), "not-uuid", "must be a UUID"],
    ["a UUID without hyphens", CANONICAL.replaceAll("-", ""), "not-uuid", "must be a UUID"],
    ["a UUID in braces", `{${CANONICAL}}`, "not-uuid", "must be a UUID"],
    ["a UUID with surrounding spaces", ` ${CANONICAL} `, "not-uuid", "must be a UUID"],
    ["a truncated UUID", CANONICAL.slice(0, 35), "not-uuid", "must be a UUID"],
  ];
  for (const [what, value, reason, message] of cases) {
    await t.step(`parse rejects ${what} with reason '${reason}'`, () => {
      const error = assertThrows(
        () => CallerId.parse(value as string),
        InvalidCallerIdError,
        message,
      );
      assertEquals(error.reason, reason);
    });
    await t.step(`tryParse returns null for ${what}`, () => {
      assertEquals(CallerId.tryParse(value as string), null);
    });
  }

  await t.step("a 256-character string is rejected as not a UUID rather than too long", () => {
    const error = assertThrows(
      () => CallerId.parse("a".repeat(MAX_CALLER_ID_LENGTH)),
      InvalidCallerIdError,
    );
    assertEquals(error.reason, "not-uuid");
  });
});
