/**
 * Caller identity: a UUID that names one peer for as long as it lives.
 *
 * @module
 */

import { create } from "@bufbuild/protobuf";
import { CallerIdSchema } from "./proto/gen/caller_id_pb.ts";

/** The longest caller id string accepted from the network, in characters. */
export const MAX_CALLER_ID_LENGTH: number = 256;

/**
 * Why a value is not a caller id:
 * - `"missing"`: no value, or no message, at all;
 * - `"malformed"`: not a string, or an empty one (an unset proto field);
 * - `"too-long"`: longer than {@linkcode MAX_CALLER_ID_LENGTH} characters;
 * - `"not-uuid"`: a string that is not a UUID.
 */
export type InvalidCallerIdReason = "missing" | "malformed" | "too-long" | "not-uuid";

/** Thrown by {@linkcode CallerId.parse} for a value that is not a caller id. */
export class InvalidCallerIdError extends Error {
  /** Why the value was rejected. */
  readonly reason: InvalidCallerIdReason;

  /**
   * Creates the error.
   *
   * @param reason Why the value was rejected.
   * @param message What was wrong and what was expected.
   */
  constructor(reason: InvalidCallerIdReason, message: string) {
    super(message);
    this.name = "InvalidCallerIdError";
    this.reason = reason;
  }
}

/** The fields of a `tsercom.CallerId` message. */
export interface CallerIdFields {
  /** The caller id's string form. */
  id: string;
}

/**
 * A value that may hold a caller id: its string form, or a `tsercom.CallerId`
 * message (or anything with an `id` field) as it came from the network.
 */
export type CallerIdInput = string | { readonly id?: unknown } | null | undefined;

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The identity of one caller (a data source, a client) as a UUID.
 *
 * Caller ids are immutable values: compare them with
 * {@linkcode CallerId.equals}, or key maps by {@linkcode CallerId.toString},
 * which is always the canonical lower-case 36-character form.
 *
 * Parsing accepts the canonical hyphenated form in any letter case and any
 * UUID version (Python peers send version 4). It is stricter than the Python
 * library, which also accepted braces, `urn:uuid:` prefixes and stray hyphens.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CallerId } from "@tsercom/tsercom/rpc";
 *
 * const id = CallerId.random();
 * const same = CallerId.parse(id.toString().toUpperCase());
 * assert(id.equals(same));
 * assert(CallerId.tryParse("not a uuid") === null);
 * ```
 */
export class CallerId {
  readonly #value: string;

  private constructor(canonical: string) {
    this.#value = canonical;
  }

  /** Makes a fresh random caller id (UUID version 4). */
  static random(): CallerId {
    return new CallerId(crypto.randomUUID());
  }

  /**
   * Parses a caller id from its string form or from a `tsercom.CallerId`
   * message.
   *
   * @param value The string, or a message whose `id` field holds it.
   * @returns The caller id.
   * @throws {InvalidCallerIdError} When the value is missing, not a
   * non-empty string, longer than 256 characters, or not a UUID.
   */
  static parse(value: CallerIdInput): CallerId {
    const result = check(value);
    if (result instanceof InvalidCallerIdError) throw result;
    return new CallerId(result);
  }

  /**
   * Like {@linkcode CallerId.parse}, but returns `null` instead of throwing.
   *
   * @param value The string, or a message whose `id` field holds it.
   * @returns The caller id, or `null` when the value is not one.
   */
  static tryParse(value: CallerIdInput): CallerId | null {
    const result = check(value);
    return result instanceof InvalidCallerIdError ? null : new CallerId(result);
  }

  /**
   * Whether `other` is a caller id with the same UUID.
   *
   * @param other Any value; values that are not caller ids are never equal.
   */
  equals(other: unknown): boolean {
    return other instanceof CallerId && other.#value === this.#value;
  }

  /** The canonical lower-case hyphenated form, e.g. `0b5a8f1e-3c2d-4e7f-9a10-6b2c3d4e5f60`. */
  toString(): string {
    return this.#value;
  }

  /** The same as {@linkcode CallerId.toString}, so that JSON holds the string form. */
  toJSON(): string {
    return this.#value;
  }

  /** The `tsercom.CallerId` message carrying this id. */
  toProto(): CallerIdFields {
    return create(CallerIdSchema, { id: this.#value });
  }

  /** How the id shows in `Deno.inspect` and `console.log`. */
  [Symbol.for("Deno.customInspect")](): string {
    return `CallerId(${this.#value})`;
  }
}

/** Returns the canonical form, or the error saying why the value is not a caller id. */
function check(value: CallerIdInput): string | InvalidCallerIdError {
  if (value === null || value === undefined) {
    return new InvalidCallerIdError(
      "missing",
      `Cannot parse a caller id as a value must be given: current value is ${value}`,
    );
  }
  const text = typeof value === "string" ? value : (value as { readonly id?: unknown }).id;
  if (typeof text !== "string" || text.length === 0) {
    return new InvalidCallerIdError(
      "malformed",
      `Cannot parse a caller id as it must be a non-empty string: current value is ${
        describe(text)
      }`,
    );
  }
  if (text.length > MAX_CALLER_ID_LENGTH) {
    return new InvalidCallerIdError(
      "too-long",
      `Cannot parse a caller id as it must be at most ${MAX_CALLER_ID_LENGTH} characters: current length is ${text.length}`,
    );
  }
  if (!UUID_PATTERN.test(text)) {
    return new InvalidCallerIdError(
      "not-uuid",
      `Cannot parse a caller id as it must be a UUID like 0b5a8f1e-3c2d-4e7f-9a10-6b2c3d4e5f60: current value is ${
        JSON.stringify(text)
      }`,
    );
  }
  return text.toLowerCase();
}

function describe(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : typeof value;
}
