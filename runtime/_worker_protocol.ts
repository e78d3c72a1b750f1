/**
 * The wire protocol between a parent and the Worker that hosts a runtime
 * (private): versioned messages with correlation ids and their validation,
 * zero-copy encoding of typed-array buffers as transferables, error
 * serialization with a class registry, and credit-based flow control
 * (DESIGN.md, Decision 8; spec/runtime.md §16.3–16.6).
 *
 * - Every message is a plain object `{ v, type, id, ... }`: `v` is
 *   {@linkcode PROTOCOL_VERSION}, `type` tells the variant of
 *   {@linkcode Message}, `id` is a correlation id (a reply carries the `id`
 *   of the command it answers; other messages carry a fresh id from the
 *   sender's own sequence).
 * - {@linkcode validateMessage} turns whatever arrived into a typed message
 *   or throws a {@linkcode ProtocolError}; it never throws anything else, so a
 *   host can catch one error class and keep running.
 * - {@linkcode encodeForTransfer} lists the `ArrayBuffer`s inside a message so
 *   `postMessage(message, transfer)` moves them instead of copying them.
 * - {@linkcode serializeError} / {@linkcode deserializeError} carry errors
 *   across as `{ name, message, stack, ... }` and rebuild them as their
 *   original class when it is registered in an {@linkcode ErrorRegistry},
 *   else as a {@linkcode RemoteRuntimeError}.
 * - {@linkcode CreditWindow} bounds what a sender may have in flight: the
 *   receiver grants credits, the sender acquires them, and an explicit
 *   {@linkcode OverflowPolicy} decides what happens without credit.
 *
 * @module
 */

import { type OverflowPolicy, QueueClosedError, QueueOverflowError } from "../rpc/_async.ts";
import { show } from "../rpc/_show.ts";
import {
  createRuntimeConfig,
  type RuntimeConfig,
  type RuntimeConfigOptions,
} from "./runtime_config.ts";

export type { OverflowPolicy };
export { QueueClosedError, QueueOverflowError };

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/** The version of the protocol; a message of another version is refused. */
export const PROTOCOL_VERSION = 1;

/** What every message carries. */
export interface MessageBase<T extends string> {
  /** The protocol version: always {@linkcode PROTOCOL_VERSION}. */
  readonly v: typeof PROTOCOL_VERSION;
  /** The variant of the message. */
  readonly type: T;
  /**
   * The correlation id, a safe integer >= 0: a reply carries the id of the
   * command it answers; other messages carry a fresh id of their sender.
   */
  readonly id: number;
}

/** Parent → worker: load the initializer `exportName` of `moduleUrl`. */
export interface InitMessage extends MessageBase<"init"> {
  /** The module URL of the initializer (`import.meta.resolve(...)`). */
  readonly moduleUrl: string;
  /** The name under which the module exports the initializer. */
  readonly exportName: string;
  /** Structured-clonable parameters for the initializer, if any. */
  readonly params?: unknown;
  /**
   * The runtime's configuration (validated again by the worker); its
   * `dataCapacity` is the initial data credit, its `eventCapacity` the
   * worker's grant of event credit.
   */
  readonly config?: RuntimeConfig;
}

/** Worker → parent: the runtime of the `init` with the same id was created. */
export type ReadyMessage = MessageBase<"ready">;

/** Worker → parent: the `init` with the same id failed. */
export interface InitFailedMessage extends MessageBase<"init-failed"> {
  /** Why. */
  readonly error: SerializedError;
}

/** Parent → worker: start the runtime. */
export type StartMessage = MessageBase<"start">;

/** Worker → parent: the `start` with the same id succeeded. */
export type StartedMessage = MessageBase<"started">;

/** Worker → parent: the `start` with the same id failed. */
export interface StartFailedMessage extends MessageBase<"start-failed"> {
  /** Why. */
  readonly error: SerializedError;
}

/** Parent → worker: stop the runtime. */
export interface StopMessage extends MessageBase<"stop"> {
  /** The clonable reason, given to the runtime's `stop`. */
  readonly reason?: unknown;
}

/** Worker → parent: the `stop` with the same id finished, final data included. */
export interface StoppedMessage extends MessageBase<"stopped"> {
  /** The data channel's counters (see `WorkerDataStats`). */
  readonly stats?: Readonly<Record<string, number>>;
  /** The event routing counters (see `RuntimeEventStats`). */
  readonly events?: Readonly<Record<string, number>>;
  /** The runtime's stop error, when its `stop` threw. */
  readonly error?: SerializedError;
}

/** One event for the runtime. */
export interface EventItem {
  /** The event, as its codec encoded it. */
  readonly value: unknown;
  /** The caller the event is for, if any. */
  readonly callerId?: string;
  /** When it happened, in microseconds since the Unix epoch (a safe integer). */
  readonly timestamp?: number;
}

/** Parent → worker: a batch of events; each one consumes one event credit. */
export interface EventsMessage extends MessageBase<"events"> {
  /** The events, oldest first. */
  readonly items: readonly EventItem[];
}

/** One data item from the runtime. */
export interface DataItem {
  /** The data, as its codec encoded it (typed arrays are transferred). */
  readonly value: unknown;
  /** The caller the data is from, if any. */
  readonly callerId?: string;
  /** Its timestamp, in microseconds since the Unix epoch (a safe integer). */
  readonly timestamp: number;
}

/** Worker → parent: a batch of data; each item consumes one data credit. */
export interface DataMessage extends MessageBase<"data"> {
  /** The data items, oldest first. */
  readonly items: readonly DataItem[];
  /** Items the worker dropped for want of credit so far (cumulative). */
  readonly dropped?: number;
}

/** Which flow a credit message refills. */
export type CreditChannel = "events" | "data";

/** Either way: the receiver of `channel` grants `credits` more items. */
export interface CreditMessage extends MessageBase<"credit"> {
  /** The flow the credits are for. */
  readonly channel: CreditChannel;
  /** How many more items the sender may send (a safe integer >= 1). */
  readonly credits: number;
}

/** Either way: are you alive? */
export type HeartbeatMessage = MessageBase<"heartbeat">;

/** Either way: the answer to the `heartbeat` with the same id. */
export type HeartbeatAckMessage = MessageBase<"heartbeat-ack">;

/** Worker → parent: a background failure (or a message the worker refused). */
export interface ErrorMessage extends MessageBase<"error"> {
  /** The failure. */
  readonly error: SerializedError;
  /** Set when the worker is exiting (`Deno.exit()`, `self.close()`). */
  readonly exit?: { readonly code: number; readonly via: string };
}

/** Every message of the protocol, discriminated by `type`. */
export type Message =
  | InitMessage
  | ReadyMessage
  | InitFailedMessage
  | StartMessage
  | StartedMessage
  | StartFailedMessage
  | StopMessage
  | StoppedMessage
  | EventsMessage
  | DataMessage
  | CreditMessage
  | HeartbeatMessage
  | HeartbeatAckMessage
  | ErrorMessage;

/** The `type` of every {@linkcode Message}. */
export type MessageType = Message["type"];

/** The message types, in a fixed order. */
export const MESSAGE_TYPES: readonly MessageType[] = Object.freeze([
  "init",
  "ready",
  "init-failed",
  "start",
  "started",
  "start-failed",
  "stop",
  "stopped",
  "events",
  "data",
  "credit",
  "heartbeat",
  "heartbeat-ack",
  "error",
]);

/** The error {@linkcode validateMessage} throws for anything it refuses. */
export class ProtocolError extends Error {
  /** Where in the message the problem is, such as `"items[3].timestamp"` (`""`: the message). */
  readonly path: string;

  /**
   * Creates the error.
   *
   * @param path Where in the message the problem is.
   * @param message What was wrong and what was expected.
   */
  constructor(path: string, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.path = path;
  }
}

/**
 * Checks that `value` is a well-formed {@linkcode Message} of this protocol
 * version and returns it, typed. Fields that the protocol does not know are
 * ignored. It never throws anything but a {@linkcode ProtocolError}, even on
 * hostile input (cycles, throwing getters, absurd nesting), so a Worker can
 * refuse a bad message and keep running.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProtocolError, validateMessage } from "./_worker_protocol.ts";
 *
 * const message = validateMessage({ v: 1, type: "credit", id: 7, channel: "data", credits: 64 });
 * assert.equal(message.type, "credit");
 * assert.throws(() => validateMessage({ v: 2, type: "start", id: 1 }), ProtocolError);
 * ```
 *
 * @param value What arrived (a `MessageEvent`'s `data`).
 * @returns The same object, typed as a message.
 * @throws {ProtocolError} When `value` is not a valid message.
 */
export function validateMessage(value: unknown): Message {
  try {
    return checkMessage(value);
  } catch (error) {
    if (error instanceof ProtocolError) throw error;
    throw new ProtocolError(
      "",
      `Cannot accept the message as it must be readable: reading it threw: ${messageOf(error)}`,
    );
  }
}

function checkMessage(value: unknown): Message {
  if (!isRecord(value)) {
    fail("", "the message", "an object", value);
  }
  if (value.v !== PROTOCOL_VERSION) {
    fail("v", "'v'", `protocol version ${PROTOCOL_VERSION}`, value.v);
  }
  const type = value.type;
  if (typeof type !== "string" || !(MESSAGE_TYPES as readonly string[]).includes(type)) {
    fail("type", "'type'", `one of ${MESSAGE_TYPES.map((t) => `"${t}"`).join(", ")}`, type);
  }
  checkSafeInteger("id", value.id, 0);
  switch (type as MessageType) {
    case "init":
      checkString("moduleUrl", value.moduleUrl, false);
      checkString("exportName", value.exportName, false);
      if (value.config !== undefined) {
        try {
          createRuntimeConfig(value.config as RuntimeConfigOptions);
        } catch (error) {
          throw new ProtocolError(
            "config",
            `Cannot accept the message as 'config' must be a valid runtime configuration: ${
              messageOf(error)
            }`,
          );
        }
      }
      break;
    case "init-failed":
    case "start-failed":
      checkSerializedError("error", value.error, 0, new Set());
      break;
    case "error":
      checkSerializedError("error", value.error, 0, new Set());
      if (value.exit !== undefined) {
        if (!isRecord(value.exit)) fail("exit", "'exit'", "an object", value.exit);
        checkSafeInteger("exit.code", value.exit.code, -Number.MAX_SAFE_INTEGER);
        checkString("exit.via", value.exit.via, false);
      }
      break;
    case "stopped":
      if (value.error !== undefined) checkSerializedError("error", value.error, 0, new Set());
      for (const key of ["stats", "events"] as const) {
        const counters = value[key];
        if (counters === undefined) continue;
        if (!isRecord(counters)) fail(key, `'${key}'`, "an object", counters);
        for (const [name, count] of Object.entries(counters)) {
          checkSafeInteger(`${key}.${name}`, count, 0);
        }
      }
      break;
    case "events":
      checkItems(value.items, false);
      break;
    case "data":
      checkItems(value.items, true);
      if (value.dropped !== undefined) checkSafeInteger("dropped", value.dropped, 0);
      break;
    case "credit":
      if (value.channel !== "events" && value.channel !== "data") {
        fail("channel", "'channel'", `"events" or "data"`, value.channel);
      }
      checkSafeInteger("credits", value.credits, 1);
      break;
  }
  return value as unknown as Message;
}

function checkItems(items: unknown, timestampRequired: boolean): void {
  if (!Array.isArray(items)) fail("items", "'items'", "an array", items);
  for (let i = 0; i < items.length; i++) {
    const item: unknown = items[i];
    const path = `items[${i}]`;
    if (!isRecord(item)) fail(path, `'${path}'`, "an object", item);
    if (!("value" in item)) {
      throw new ProtocolError(
        `${path}.value`,
        `Cannot accept the message as '${path}.value' must be present: it is missing`,
      );
    }
    if (item.callerId !== undefined) checkString(`${path}.callerId`, item.callerId, true);
    if (timestampRequired || item.timestamp !== undefined) {
      checkSafeInteger(`${path}.timestamp`, item.timestamp, -Number.MAX_SAFE_INTEGER);
    }
  }
}

function checkSerializedError(
  path: string,
  value: unknown,
  depth: number,
  seen: Set<unknown>,
): void {
  if (depth > MAX_VALIDATION_DEPTH) {
    throw new ProtocolError(
      path,
      `Cannot accept the message as '${path}' must nest at most ${MAX_VALIDATION_DEPTH} errors deep: it nests deeper`,
    );
  }
  if (!isRecord(value)) fail(path, `'${path}'`, "a serialized error object", value);
  if (seen.has(value)) {
    throw new ProtocolError(
      path,
      `Cannot accept the message as '${path}' must not refer back to an enclosing error: it does`,
    );
  }
  seen.add(value);
  checkString(`${path}.name`, value.name, true);
  checkString(`${path}.message`, value.message, true);
  checkString(`${path}.stack`, value.stack, true);
  if (value.className !== undefined) checkString(`${path}.className`, value.className, true);
  if (value.data !== undefined && !isRecord(value.data)) {
    fail(`${path}.data`, `'${path}.data'`, "an object", value.data);
  }
  if (value.cause !== undefined) {
    checkSerializedError(`${path}.cause`, value.cause, depth + 1, seen);
  }
  if (value.errors !== undefined) {
    const errors = value.errors;
    if (!Array.isArray(errors)) fail(`${path}.errors`, `'${path}.errors'`, "an array", errors);
    for (let i = 0; i < errors.length; i++) {
      checkSerializedError(`${path}.errors[${i}]`, errors[i], depth + 1, seen);
    }
  }
  seen.delete(value);
}

const MAX_VALIDATION_DEPTH = 64;

function checkString(path: string, value: unknown, emptyAllowed: boolean): void {
  if (typeof value !== "string" || (!emptyAllowed && value.length === 0)) {
    fail(path, `'${path}'`, emptyAllowed ? "a string" : "a non-empty string", value);
  }
}

function checkSafeInteger(path: string, value: unknown, min: number): void {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    fail(
      path,
      `'${path}'`,
      min === -Number.MAX_SAFE_INTEGER ? "a safe integer" : `a safe integer >= ${min}`,
      value,
    );
  }
}

function fail(path: string, what: string, wanted: string, value: unknown): never {
  throw new ProtocolError(
    path,
    `Cannot accept the message as ${what} must be ${wanted}: current value is ${describe(value)}`,
  );
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string" && value.length > 64) return show(`${value.slice(0, 64)}…`);
  return show(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------
// Transferables
// ---------------------------------------------------------------------------

/** What {@linkcode encodeForTransfer} returns: the arguments of `postMessage`. */
export interface TransferEncoded<M> {
  /** The message itself (the same object, not a copy). */
  readonly message: M;
  /** Every distinct `ArrayBuffer` inside it, each once. */
  readonly transfer: Transferable[];
}

/**
 * Lists the `ArrayBuffer`s inside `message` — of typed arrays and
 * `DataView`s, or bare — so that `postMessage(message, transfer)` moves them
 * to the other side without a copy. It looks through arrays, plain objects,
 * `Map`s and `Set`s at any depth (cycle-safe); each buffer is listed once even
 * if several views share it; `SharedArrayBuffer`s are skipped (they are
 * shared, not moved).
 *
 * After the post, every listed buffer is detached on the sender's side: its
 * views read as empty. A view moves its whole buffer, so a `subarray` of a
 * larger buffer takes the rest of that buffer with it; a runtime must not
 * reuse a buffer it emitted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeForTransfer } from "./_worker_protocol.ts";
 *
 * const values = new Float32Array([1, 2, 3]);
 * const { message, transfer } = encodeForTransfer({
 *   v: 1,
 *   type: "data",
 *   id: 1,
 *   items: [{ value: values, timestamp: 0 }, { value: values.subarray(1), timestamp: 1 }],
 * });
 * assert.deepEqual(transfer, [values.buffer]);
 * const copy = structuredClone(message, { transfer });
 * assert.equal(values.byteLength, 0);
 * assert.deepEqual(Array.from(copy.items[0].value as Float32Array), [1, 2, 3]);
 * ```
 *
 * @typeParam M The message.
 * @param message The message to post.
 * @returns The message and its transfer list.
 * @throws {TypeError} When the message holds a detached buffer (one that was
 * already sent): posting it would fail.
 */
export function encodeForTransfer<M>(message: M): TransferEncoded<M> {
  const buffers = new Set<ArrayBuffer>();
  const seen = new Set<object>();
  const stack: unknown[] = [message];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value !== "object" || value === null || seen.has(value)) continue;
    seen.add(value);
    if (ArrayBuffer.isView(value)) {
      addBuffer(buffers, value.buffer);
    } else if (value instanceof ArrayBuffer) {
      addBuffer(buffers, value);
    } else if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) stack.push(value[i]);
    } else if (value instanceof Map) {
      for (const [key, entry] of value) stack.push(key, entry);
    } else if (value instanceof Set) {
      for (const entry of value) stack.push(entry);
    } else if (!(value instanceof Date) && !(value instanceof RegExp)) {
      for (const key of Object.keys(value)) stack.push((value as Record<string, unknown>)[key]);
    }
  }
  return { message, transfer: [...buffers] };
}

function addBuffer(buffers: Set<ArrayBuffer>, buffer: ArrayBufferLike): void {
  if (!(buffer instanceof ArrayBuffer)) return; // a SharedArrayBuffer is shared, not moved
  if (buffer.detached) {
    throw new TypeError(
      "Cannot encode the message for transfer as every ArrayBuffer in it must be attached: one is detached (was it already sent?)",
    );
  }
  buffers.add(buffer);
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/** An error as it crosses the boundary: structured-clonable, prototype-free. */
export interface SerializedError {
  /** The error's `name` (`"TypeError"`, or what the class set). */
  readonly name: string;
  /** The error's `message`. */
  readonly message: string;
  /** The error's `stack` on the side that threw it (`""` when it had none). */
  readonly stack: string;
  /** The name of its constructor, when it differs from `name`. */
  readonly className?: string;
  /** Its `cause`, serialized in turn (cut at the depth limit or on a cycle). */
  readonly cause?: SerializedError;
  /** The `errors` of an `AggregateError`, serialized in turn. */
  readonly errors?: readonly SerializedError[];
  /**
   * Its other own enumerable properties (such as `code`) whose values are
   * structured-clonable; for a thrown non-Error, `{ value }` if clonable.
   */
  readonly data?: Readonly<Record<string, unknown>>;
}

/** Options for {@linkcode serializeError}. */
export interface SerializeErrorOptions {
  /**
   * How many levels of `cause` and `AggregateError.errors` to keep below the
   * error itself (an integer >= 0); deeper ones are cut off.
   *
   * @default {8}
   */
  maxDepth?: number;
}

/**
 * The `name` given to a thrown value that is not an `Error` (a string, a
 * number, a plain object...).
 */
export const NON_ERROR_NAME = "NonError";

/**
 * Turns an error — or any thrown value — into a {@linkcode SerializedError}
 * that `postMessage` can carry. Its `cause` chain and an `AggregateError`'s
 * `errors` are serialized too, down to `maxDepth` levels; a cycle is cut where
 * it closes. Own enumerable properties with clonable values go into `data`.
 * A thrown non-Error becomes `{ name: "NonError", message: String(value) }`
 * with `data.value` when the value is clonable. It never throws.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serializeError } from "./_worker_protocol.ts";
 *
 * const error = new RangeError("too far", { cause: new Error("root") });
 * const serialized = serializeError(error);
 * assert.equal(serialized.name, "RangeError");
 * assert.equal(serialized.cause?.message, "root");
 * ```
 *
 * @param error What was thrown.
 * @param options How deep to follow causes.
 * @returns The serialized error.
 * @throws {RangeError} When `maxDepth` is not an integer >= 0.
 */
export function serializeError(
  error: unknown,
  options: SerializeErrorOptions = {},
): SerializedError {
  const { maxDepth = 8 } = options;
  if (!Number.isInteger(maxDepth) || maxDepth < 0) {
    throw new RangeError(
      `Cannot serialize the error as 'maxDepth' must be an integer >= 0: current value is ${
        show(maxDepth)
      }`,
    );
  }
  return serializeAt(error, maxDepth, new Set());
}

const RESERVED_KEYS = new Set(["name", "message", "stack", "cause", "errors"]);

function serializeAt(error: unknown, depthLeft: number, seen: Set<unknown>): SerializedError {
  if (!(error instanceof Error)) {
    const clone = tryClone(error);
    return {
      name: NON_ERROR_NAME,
      message: safeString(error),
      stack: "",
      ...(clone.ok ? { data: { value: clone.value } } : {}),
    };
  }
  seen.add(error);
  const name = safeString(readSafely(error, "name") ?? "Error");
  const className = safeString(readSafely(error, "constructor", "name") ?? "");
  const stack = readSafely(error, "stack");
  const out: {
    name: string;
    message: string;
    stack: string;
    className?: string;
    cause?: SerializedError;
    errors?: SerializedError[];
    data?: Record<string, unknown>;
  } = {
    name,
    message: safeString(readSafely(error, "message") ?? ""),
    stack: typeof stack === "string" ? stack : "",
  };
  if (className !== "" && className !== name) out.className = className;
  if (depthLeft > 0) {
    if ("cause" in error) {
      const cause = readSafely(error, "cause");
      if (cause !== undefined && !seen.has(cause)) {
        out.cause = serializeAt(cause, depthLeft - 1, seen);
      }
    }
    const errors = error instanceof AggregateError ? readSafely(error, "errors") : undefined;
    if (Array.isArray(errors)) {
      out.errors = errors.filter((inner) => !seen.has(inner)).map((inner) =>
        serializeAt(inner, depthLeft - 1, seen)
      );
    }
  }
  let keys: string[] = [];
  try {
    keys = Object.keys(error);
  } catch {
    // a hostile proxy: no data
  }
  const data: Record<string, unknown> = {};
  let any = false;
  for (const key of keys) {
    if (RESERVED_KEYS.has(key)) continue;
    const clone = tryClone(readSafely(error, key));
    if (clone.ok) {
      data[key] = clone.value;
      any = true;
    }
  }
  if (any) out.data = data;
  seen.delete(error);
  return out;
}

function readSafely(target: unknown, key: string, inner?: string): unknown {
  try {
    const value = (target as Record<string, unknown>)[key];
    return inner === undefined ? value : (value as Record<string, unknown> | undefined)?.[inner];
  } catch {
    return undefined;
  }
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function tryClone(value: unknown): { ok: true; value: unknown } | { ok: false } {
  if (typeof value === "function" || typeof value === "symbol") return { ok: false };
  try {
    return { ok: true, value: structuredClone(value) };
  } catch {
    return { ok: false };
  }
}

/** A class of error that {@linkcode ErrorRegistry} can rebuild (any constructor arguments). */
export type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * The error classes that {@linkcode deserializeError} may rebuild, by name.
 * `Error`, `TypeError`, `RangeError`, `SyntaxError`, `ReferenceError`,
 * `EvalError`, `URIError` and `AggregateError` are always registered; add
 * your own with {@linkcode ErrorRegistry.register} on the receiving side.
 *
 * A serialized error is looked up by its `className` first, then its `name`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deserializeError, ErrorRegistry, serializeError } from "./_worker_protocol.ts";
 *
 * class SensorFault extends Error {
 *   constructor(message: string) {
 *     super(message);
 *     this.name = "SensorFault";
 *   }
 * }
 * const registry = new ErrorRegistry().register(SensorFault);
 * const rebuilt = deserializeError(serializeError(new SensorFault("lidar")), registry);
 * assert.ok(rebuilt instanceof SensorFault);
 * assert.equal(rebuilt.message, "lidar");
 * ```
 */
export class ErrorRegistry {
  readonly #classes = new Map<string, ErrorClass>();

  /** Creates a registry holding the built-in error classes. */
  constructor() {
    for (
      const builtin of [
        Error,
        TypeError,
        RangeError,
        SyntaxError,
        ReferenceError,
        EvalError,
        URIError,
        AggregateError,
      ]
    ) {
      this.#classes.set(builtin.name, builtin);
    }
  }

  /**
   * Registers `errorClass` under `name`.
   *
   * @param errorClass A class extending `Error`.
   * @param name The name to find it by; the class's own name by default.
   * @returns This registry, for chaining.
   * @throws {TypeError} When `errorClass` is not a class extending `Error`,
   * or another class is already registered under that name.
   */
  register(errorClass: ErrorClass, name: string = errorClass?.name): this {
    if (
      typeof errorClass !== "function" ||
      !(errorClass === Error || errorClass.prototype instanceof Error)
    ) {
      throw new TypeError(
        `Cannot register the error class as it must be a class extending Error: current value is ${
          show(errorClass)
        }`,
      );
    }
    if (typeof name !== "string" || name.length === 0) {
      throw new TypeError(
        `Cannot register the error class as 'name' must be a non-empty string: current value is ${
          show(name)
        }`,
      );
    }
    const existing = this.#classes.get(name);
    if (existing !== undefined && existing !== errorClass) {
      throw new TypeError(
        `Cannot register the error class as the name ${
          show(name)
        } must be free: class ${existing.name} holds it`,
      );
    }
    this.#classes.set(name, errorClass);
    return this;
  }

  /**
   * Finds the class registered under `name`.
   *
   * @param name The name to look up.
   * @returns The class, or `undefined`.
   */
  get(name: string): ErrorClass | undefined {
    return this.#classes.get(name);
  }

  /**
   * Whether a class is registered under `name`.
   *
   * @param name The name to look up.
   * @returns `true` when one is.
   */
  has(name: string): boolean {
    return this.#classes.has(name);
  }
}

/**
 * What {@linkcode deserializeError} returns for an error whose class is not
 * registered: it keeps the remote `name`, `message` and `stack` (as `stack`
 * and `remoteStack`), the remote class name and the `data`.
 */
export class RemoteRuntimeError extends Error {
  /** The name of the remote error's class, when it differed from its `name`. */
  readonly remoteClassName: string | undefined;
  /** The stack of the remote error, as it was on the side that threw it. */
  readonly remoteStack: string;
  /** The remote error's clonable own properties (see {@linkcode SerializedError.data}). */
  readonly data: Readonly<Record<string, unknown>> | undefined;

  /**
   * Creates the error from its serialized form (causes are not rebuilt here:
   * {@linkcode deserializeError} does that).
   *
   * @param serialized The remote error.
   * @param options `cause`: the rebuilt cause.
   */
  constructor(serialized: SerializedError, options?: ErrorOptions) {
    super(serialized.message, options);
    this.name = serialized.name;
    this.remoteClassName = serialized.className;
    this.remoteStack = serialized.stack;
    this.data = serialized.data;
    if (serialized.stack !== "") this.stack = serialized.stack;
  }
}

/**
 * Rebuilds an error from its {@linkcode SerializedError} form: as an instance
 * of its original class when `registry` has it (by `className`, then `name`),
 * else as a {@linkcode RemoteRuntimeError}. The rebuilt error has the remote
 * `message`, `name` and `stack`, its `data` as own properties, and its
 * `cause` and `errors` rebuilt in turn. An unregistered subclass that kept
 * an inherited `name` (say `"TypeError"`) comes back as that class. A
 * registered class's constructor is not called (its signature is unknown):
 * the instance is a native error whose prototype is the class's, so
 * `instanceof` holds but constructor-initialised private fields are absent.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deserializeError, RemoteRuntimeError, serializeError } from "./_worker_protocol.ts";
 *
 * assert.ok(deserializeError(serializeError(new TypeError("bad"))) instanceof TypeError);
 * class Unknown extends Error {
 *   override name = "Unknown";
 * }
 * const rebuilt = deserializeError(serializeError(new Unknown("who?")));
 * assert.ok(rebuilt instanceof RemoteRuntimeError);
 * assert.equal(rebuilt.message, "who?");
 * ```
 *
 * @param serialized The error as it arrived (validate the message first).
 * @param registry The classes to rebuild; the built-ins only by default.
 * @returns The rebuilt error.
 */
export function deserializeError(
  serialized: SerializedError,
  registry: ErrorRegistry = DEFAULT_REGISTRY,
): Error {
  const cause = serialized.cause === undefined
    ? undefined
    : deserializeError(serialized.cause, registry);
  const options = cause === undefined ? undefined : { cause };
  const errorClass =
    (serialized.className === undefined ? undefined : registry.get(serialized.className)) ??
      registry.get(serialized.name);
  if (errorClass === undefined) return new RemoteRuntimeError(serialized, options);
  const inner = (serialized.errors ?? []).map((e) => deserializeError(e, registry));
  const error: Error =
    errorClass === AggregateError || errorClass.prototype instanceof AggregateError
      ? Reflect.construct(AggregateError, [inner, serialized.message, options], errorClass)
      : Reflect.construct(Error, [serialized.message, options], errorClass);
  if (error.name !== serialized.name) {
    Object.defineProperty(error, "name", {
      value: serialized.name,
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }
  if (serialized.stack !== "") {
    Object.defineProperty(error, "stack", {
      value: serialized.stack,
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }
  for (const [key, value] of Object.entries(serialized.data ?? {})) {
    if (RESERVED_KEYS.has(key)) continue;
    Object.defineProperty(error, key, {
      value,
      writable: true,
      configurable: true,
      enumerable: true,
    });
  }
  return error;
}

const DEFAULT_REGISTRY = new ErrorRegistry();

// ---------------------------------------------------------------------------
// Credit-based flow control
// ---------------------------------------------------------------------------

/** Options for {@linkcode CreditWindow}. */
export interface CreditWindowOptions {
  /**
   * The credit the sender starts with (a safe integer >= 0): the receiver's
   * queue size, which it then tops up with {@linkcode CreditWindow.grant}.
   *
   * @default {0}
   */
  initialCredit?: number;
  /**
   * What {@linkcode CreditWindow.acquire} does without enough credit:
   * `"block"` waits; `"drop-oldest"` waits too, but in a bounded line where a
   * newcomer pushes out the oldest waiter; `"drop-newest"` drops the new
   * request; `"error"` rejects it with a {@linkcode CreditOverflowError}.
   *
   * @default {"block"}
   */
  overflow?: OverflowPolicy;
  /**
   * How many acquires may wait at once under `"drop-oldest"` (an integer
   * >= 1); ignored by the other policies.
   *
   * @default {1}
   */
  maxPending?: number;
}

/** Options for {@linkcode CreditWindow.acquire}. */
export interface CreditAcquireOptions {
  /**
   * Gives up waiting: the acquire rejects with `signal.reason` and leaves
   * the window as if it had never been made (nothing is counted as dropped).
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * The error {@linkcode CreditWindow.acquire} rejects with under the `"error"`
 * policy. It is a {@linkcode QueueOverflowError} (its `capacity` is the
 * credit that was available), so one handler can catch both.
 */
export class CreditOverflowError extends QueueOverflowError {
  /** How many credits were asked for. */
  readonly requested: number;
  /** How many were available (waiters ahead of the request count as none). */
  readonly available: number;

  /**
   * Creates the error.
   *
   * @param requested How many credits were asked for.
   * @param available How many were available.
   */
  constructor(requested: number, available: number) {
    super(available);
    this.name = "CreditOverflowError";
    this.message = `Cannot send ${requested} item${
      requested === 1 ? "" : "s"
    } as the receiver must have granted the credit: ${available} available (overflow policy "error")`;
    this.requested = requested;
    this.available = available;
  }
}

interface CreditWaiter {
  readonly n: number;
  resolve(sent: boolean): void;
  reject(error: unknown): void;
  detach(): void;
}

const POLICIES: readonly OverflowPolicy[] = ["block", "drop-oldest", "drop-newest", "error"];

/**
 * The sender's side of credit-based flow control for one direction of a
 * Worker channel. The receiver grants credits (`credit` messages) as it
 * consumes items; the sender calls {@linkcode CreditWindow.acquire} for each
 * batch before posting it and posts only if it resolves `true`. Requests are
 * served first come, first served: a small request never overtakes a waiting
 * large one, so items keep their order.
 *
 * Drops are counted exactly, in items: {@linkcode CreditWindow.droppedOldest},
 * {@linkcode CreditWindow.droppedNewest} and their sum
 * {@linkcode CreditWindow.dropped}; refusals under `"error"` in
 * {@linkcode CreditWindow.rejected}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CreditWindow } from "./_worker_protocol.ts";
 *
 * const window = new CreditWindow({ initialCredit: 2, overflow: "drop-newest" });
 * assert.equal(await window.acquire(2), true);
 * assert.equal(await window.acquire(1), false);
 * window.grant(1);
 * assert.equal(await window.acquire(1), true);
 * assert.equal(window.droppedNewest, 1);
 * ```
 */
export class CreditWindow {
  readonly #overflow: OverflowPolicy;
  readonly #maxPending: number;
  #available: number;
  readonly #waiters: CreditWaiter[] = [];
  #droppedOldest = 0;
  #droppedNewest = 0;
  #rejected = 0;
  #closed: { error: unknown } | undefined;

  /**
   * Creates the window.
   *
   * @param options The initial credit, the overflow policy and the bound of
   * the `"drop-oldest"` line.
   * @throws {RangeError} When an option is out of range.
   */
  constructor(options: CreditWindowOptions = {}) {
    const { initialCredit = 0, overflow = "block", maxPending = 1 } = options;
    checkCount("create the credit window", "initialCredit", initialCredit, 0);
    if (!POLICIES.includes(overflow)) {
      throw new RangeError(
        `Cannot create the credit window as 'overflow' must be one of ${
          POLICIES.map((p) => `"${p}"`).join(", ")
        }: current value is ${show(overflow)}`,
      );
    }
    checkCount("create the credit window", "maxPending", maxPending, 1);
    this.#available = initialCredit;
    this.#overflow = overflow;
    this.#maxPending = maxPending;
  }

  /** The overflow policy. */
  get overflow(): OverflowPolicy {
    return this.#overflow;
  }

  /** The credit not yet acquired. */
  get available(): number {
    return this.#available;
  }

  /** How many acquires are waiting for credit. */
  get pending(): number {
    return this.#waiters.length;
  }

  /** Items dropped because a newer acquire pushed theirs out (`"drop-oldest"`). */
  get droppedOldest(): number {
    return this.#droppedOldest;
  }

  /** Items dropped because there was no credit for them (`"drop-newest"`). */
  get droppedNewest(): number {
    return this.#droppedNewest;
  }

  /** All dropped items: {@linkcode CreditWindow.droppedOldest} + {@linkcode CreditWindow.droppedNewest}. */
  get dropped(): number {
    return this.#droppedOldest + this.#droppedNewest;
  }

  /** Items refused with a {@linkcode CreditOverflowError} (`"error"`). */
  get rejected(): number {
    return this.#rejected;
  }

  /** Whether {@linkcode CreditWindow.close} was called. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /**
   * Takes `n` credits at once if they are available and nobody waits ahead;
   * never waits, drops or counts anything.
   *
   * @param n How many items to send (a safe integer >= 1).
   * @returns `true` when the credits were taken.
   * @throws {RangeError} When `n` is not a safe integer >= 1.
   */
  tryAcquire(n: number): boolean {
    checkCount("acquire credit", "n", n, 1);
    if (this.#closed !== undefined || this.#waiters.length > 0 || this.#available < n) {
      return false;
    }
    this.#available -= n;
    return true;
  }

  /**
   * Acquires `n` credits to send `n` items. With enough credit and nobody
   * waiting ahead it resolves `true` at once; otherwise the policy decides:
   * `"block"` waits until granted (resolves `true`); `"drop-oldest"` waits
   * likewise, but if `maxPending` acquires already wait, the oldest of them
   * resolves `false` (its items are dropped); `"drop-newest"` resolves
   * `false` at once (these items are dropped); `"error"` rejects with a
   * {@linkcode CreditOverflowError}. `false` means: do not send.
   *
   * @param n How many items to send (a safe integer >= 1).
   * @param options A signal to give up waiting.
   * @returns Whether to send the items.
   * @throws {RangeError} When `n` is not a safe integer >= 1.
   * @throws {TypeError} When `signal` is not an AbortSignal.
   */
  acquire(n: number, options: CreditAcquireOptions = {}): Promise<boolean> {
    checkCount("acquire credit", "n", n, 1);
    const { signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError(
        `Cannot acquire credit as 'signal' must be an AbortSignal: current value is ${
          show(signal)
        }`,
      );
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#closed !== undefined) return Promise.reject(this.#closedError());
    if (this.#waiters.length === 0 && this.#available >= n) {
      this.#available -= n;
      return Promise.resolve(true);
    }
    switch (this.#overflow) {
      case "drop-newest":
        this.#droppedNewest += n;
        return Promise.resolve(false);
      case "error":
        this.#rejected += n;
        return Promise.reject(
          new CreditOverflowError(n, this.#waiters.length === 0 ? this.#available : 0),
        );
      case "drop-oldest":
        if (this.#waiters.length >= this.#maxPending) {
          const oldest = this.#waiters.shift()!;
          oldest.detach();
          this.#droppedOldest += oldest.n;
          oldest.resolve(false);
        }
        break;
    }
    return new Promise<boolean>((resolve, reject) => {
      const onAbort = () => {
        const index = this.#waiters.indexOf(waiter);
        if (index >= 0) this.#waiters.splice(index, 1);
        reject(signal?.reason);
        // The head may have been the one holding the others back.
        this.#serve();
      };
      const waiter: CreditWaiter = {
        n,
        resolve,
        reject,
        detach: () => signal?.removeEventListener("abort", onAbort),
      };
      this.#waiters.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * The receiver's side: grants `n` more credits, which go to the waiting
   * acquires in order. Ignored once the window is closed.
   *
   * @param n How many more items the receiver accepts (a safe integer >= 0).
   * @throws {RangeError} When `n` is not a safe integer >= 0, or the credit
   * would exceed `Number.MAX_SAFE_INTEGER`.
   */
  grant(n: number): void {
    checkCount("grant credit", "n", n, 0);
    if (this.#closed !== undefined) return;
    if (this.#available + n > Number.MAX_SAFE_INTEGER) {
      throw new RangeError(
        `Cannot grant credit as the total must stay <= ${Number.MAX_SAFE_INTEGER}: it would be ${
          this.#available + n
        }`,
      );
    }
    this.#available += n;
    this.#serve();
  }

  /**
   * Closes the window (the peer is gone): waiting and later acquires reject
   * with a {@linkcode QueueClosedError} whose `cause` is `reason`, if given.
   * Does nothing if already closed.
   *
   * @param reason Why, such as a `WorkerCrashedError`.
   */
  close(reason?: unknown): void {
    if (this.#closed !== undefined) return;
    this.#closed = { error: reason };
    for (const waiter of this.#waiters.splice(0)) {
      waiter.detach();
      waiter.reject(this.#closedError());
    }
  }

  #serve(): void {
    while (this.#waiters.length > 0 && this.#waiters[0].n <= this.#available) {
      const waiter = this.#waiters.shift()!;
      this.#available -= waiter.n;
      waiter.detach();
      waiter.resolve(true);
    }
  }

  #closedError(): QueueClosedError {
    const { error } = this.#closed!;
    return error === undefined ? new QueueClosedError() : new QueueClosedError({ cause: error });
  }
}

function checkCount(operation: string, name: string, value: unknown, min: number): void {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new RangeError(
      `Cannot ${operation} as '${name}' must be a safe integer >= ${min}: current value is ${
        show(value)
      }`,
    );
  }
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return safeString(error);
}
