/**
 * The options of a runtime, validated once (spec `runtime.md` §4, with its
 * dead and misnamed options replaced by explicit ones).
 *
 * @module
 */

import type { OverflowPolicy } from "../rpc/_async.ts";
import type { ChannelSecurity } from "../rpc/channel_factory.ts";
import { show } from "../rpc/_show.ts";

/** Which side of a stream a runtime is: a client syncs its clock to servers; a server is the time authority. */
export type RuntimeRole = "client" | "server";

/** Where a runtime runs. */
export type RuntimeIsolation = "worker" | "in-process";

/**
 * Where a runtime's data goes: into the handle's `dataAggregator`, per
 * caller (every item must then come from a registered caller), or as one
 * ordered stream read with the handle's `data()`.
 */
export type RuntimeDelivery = "aggregator" | "stream";

/** The options of {@linkcode createRuntimeConfig}. */
export interface RuntimeConfigOptions {
  /**
   * Client or server (`"Client"`/`"Server"` in any case are accepted, as
   * the Python original does).
   */
  role: RuntimeRole | "Client" | "Server" | string;
  /**
   * Where the runtime runs: its own Worker, or this thread.
   *
   * @default {"worker"}
   */
  isolation?: RuntimeIsolation;
  /**
   * How long the caller-side aggregator keeps data, microseconds; `null`
   * keeps everything (unbounded memory).
   *
   * @default {60000000}
   */
  dataTimeoutMicros?: number | null;
  /**
   * The least time between two batches of events delivered into the
   * runtime for one caller, milliseconds (the original's misnamed
   * `min_send_frequency_seconds`); `null` for no limit.
   *
   * @default {null}
   */
  minEventIntervalMs?: number | null;
  /**
   * How many events may wait for the runtime per caller.
   *
   * @default {1000}
   */
  eventCapacity?: number;
  /**
   * What happens to an event when its caller's queue is full (the original
   * always dropped the oldest).
   *
   * @default {"drop-oldest"}
   */
  eventOverflow?: OverflowPolicy;
  /**
   * How many data items may be in flight from a runtime to its caller
   * (the credit window of a Worker runtime).
   *
   * @default {1024}
   */
  dataCapacity?: number;
  /**
   * What happens to data when the caller does not keep up: `"block"` makes
   * `emit` wait (nothing is lost), the others drop and count (the
   * original's `is_ipc_blocking` was ignored on this path).
   *
   * @default {"block"}
   */
  dataOverflow?: OverflowPolicy;
  /**
   * Where the data goes: the handle's `dataAggregator` (items carry their
   * caller), or the handle's `data()` stream.
   *
   * @default {"aggregator"}
   */
  delivery?: RuntimeDelivery;
  /**
   * How long an event for a caller the runtime has not registered (yet) is
   * kept for it, milliseconds; it is delivered if the caller registers in
   * time, else dropped and counted (the original dropped such events at
   * once, which forced its tests to sleep).
   *
   * @default {10000}
   */
  unknownCallerEventTtlMs?: number;
  /**
   * Network time sync (SNTP, RFC 5905). A client runtime queries each
   * registered caller's endpoint at this UDP port, and converts timestamps
   * with the measured offset; a server runtime serves time on it (port 0
   * picks a free port). `null` keeps every clock at offset 0 (the
   * original's testing mode), except for callers registered with a
   * `timeSyncPort` of their own.
   *
   * @default {null}
   */
  timeSyncPort?: number | null;
  /**
   * The address a server runtime's time server listens on.
   *
   * @default {"0.0.0.0"}
   */
  timeSyncHostname?: string;
  /**
   * How the channels a runtime opens with `context.connectChannel` are
   * secured (certificates as PEM text, so that the option crosses into a
   * Worker).
   *
   * @default {{ mode: "insecure" }}
   */
  channelSecurity?: ChannelSecurity;
}

/** A validated, frozen runtime configuration. */
export interface RuntimeConfig {
  /** Client or server. */
  readonly role: RuntimeRole;
  /** Where the runtime runs. */
  readonly isolation: RuntimeIsolation;
  /** Aggregator retention in microseconds, or `null` for unbounded. */
  readonly dataTimeoutMicros: number | null;
  /** Least milliseconds between event batches per caller, or `null`. */
  readonly minEventIntervalMs: number | null;
  /** Events that may wait per caller. */
  readonly eventCapacity: number;
  /** The policy for a full event queue. */
  readonly eventOverflow: OverflowPolicy;
  /** Data items that may be in flight. */
  readonly dataCapacity: number;
  /** The policy for data the caller does not take in time. */
  readonly dataOverflow: OverflowPolicy;
  /** Where the data goes. */
  readonly delivery: RuntimeDelivery;
  /** How long events for unregistered callers are kept, milliseconds. */
  readonly unknownCallerEventTtlMs: number;
  /** The SNTP port, or `null` for no network time sync. */
  readonly timeSyncPort: number | null;
  /** The address a server runtime's time server listens on. */
  readonly timeSyncHostname: string;
  /** How channels opened by the runtime are secured. */
  readonly channelSecurity: ChannelSecurity;
}

const POLICIES: readonly OverflowPolicy[] = ["block", "drop-oldest", "drop-newest", "error"];

/**
 * Validates `options` and returns a frozen {@linkcode RuntimeConfig} with
 * every default filled in.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRuntimeConfig } from "./runtime_config.ts";
 *
 * const config = createRuntimeConfig({ role: "Server", dataOverflow: "drop-oldest" });
 * assert.equal(config.role, "server");
 * assert.equal(config.isolation, "worker");
 * assert.equal(config.dataTimeoutMicros, 60_000_000);
 * ```
 *
 * @param options The options; `role` is required.
 * @returns The configuration.
 * @throws {TypeError} When an option has the wrong type or `options` is not an object.
 * @throws {RangeError} When a value is out of range or not one of the allowed names.
 */
export function createRuntimeConfig(options: RuntimeConfigOptions): RuntimeConfig {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `Cannot configure the runtime as 'options' must be an object: current value is ${
        show(options)
      }`,
    );
  }
  const {
    role,
    isolation = "worker",
    dataTimeoutMicros = 60_000_000,
    minEventIntervalMs = null,
    eventCapacity = 1_000,
    eventOverflow = "drop-oldest",
    dataCapacity = 1_024,
    dataOverflow = "block",
    delivery = "aggregator",
    unknownCallerEventTtlMs = 10_000,
    timeSyncPort = null,
    timeSyncHostname = "0.0.0.0",
    channelSecurity = { mode: "insecure" },
  } = options;
  if (typeof role !== "string") {
    throw new TypeError(
      `Cannot configure the runtime as 'role' must be "client" or "server": current value is ${
        show(role)
      }`,
    );
  }
  const lower = role.toLowerCase();
  if (lower !== "client" && lower !== "server") {
    throw new RangeError(
      `Cannot configure the runtime as 'role' must be "client" or "server": current value is ${
        JSON.stringify(role)
      }`,
    );
  }
  if (isolation !== "worker" && isolation !== "in-process") {
    throw new RangeError(
      `Cannot configure the runtime as 'isolation' must be "worker" or "in-process": current value is ${
        show(isolation)
      }`,
    );
  }
  return Object.freeze({
    role: lower,
    isolation,
    dataTimeoutMicros: nullablePositive("dataTimeoutMicros", dataTimeoutMicros, true),
    minEventIntervalMs: nullablePositive("minEventIntervalMs", minEventIntervalMs, false),
    eventCapacity: positiveInteger("eventCapacity", eventCapacity),
    eventOverflow: policy("eventOverflow", eventOverflow),
    dataCapacity: positiveInteger("dataCapacity", dataCapacity),
    dataOverflow: policy("dataOverflow", dataOverflow),
    delivery: oneOf("delivery", delivery, ["aggregator", "stream"]),
    unknownCallerEventTtlMs: nullablePositive(
      "unknownCallerEventTtlMs",
      unknownCallerEventTtlMs,
      false,
    ) ?? fail("unknownCallerEventTtlMs", null),
    timeSyncPort: port(timeSyncPort),
    timeSyncHostname: hostname(timeSyncHostname),
    channelSecurity: security(channelSecurity),
  });
}

function nullablePositive(name: string, value: number | null, integer: boolean): number | null {
  if (value === null) return null;
  if (
    typeof value !== "number" || !Number.isFinite(value) || value <= 0 ||
    (integer && !Number.isSafeInteger(value))
  ) {
    throw new RangeError(
      `Cannot configure the runtime as '${name}' must be a positive ${
        integer ? "integer" : "number"
      } or null: current value is ${show(value)}`,
    );
  }
  return value;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(
      `Cannot configure the runtime as '${name}' must be a positive integer: current value is ${
        show(value)
      }`,
    );
  }
  return value;
}

function policy(name: string, value: OverflowPolicy): OverflowPolicy {
  if (!POLICIES.includes(value)) {
    throw new RangeError(
      `Cannot configure the runtime as '${name}' must be one of ${
        POLICIES.map((p) => `"${p}"`).join(", ")
      }: current value is ${show(value)}`,
    );
  }
  return value;
}

function oneOf<T extends string>(name: string, value: T, allowed: readonly T[]): T {
  if (!allowed.includes(value)) {
    throw new RangeError(
      `Cannot configure the runtime as '${name}' must be one of ${
        allowed.map((a) => `"${a}"`).join(", ")
      }: current value is ${show(value)}`,
    );
  }
  return value;
}

function fail(name: string, value: unknown): never {
  throw new RangeError(
    `Cannot configure the runtime as '${name}' must be a positive number: current value is ${
      show(value)
    }`,
  );
}

function port(value: number | null): number | null {
  if (value === null) return null;
  if (!Number.isSafeInteger(value) || value < 0 || value > 65_535) {
    throw new RangeError(
      `Cannot configure the runtime as 'timeSyncPort' must be an integer in 0..65535 or null: current value is ${
        show(value)
      }`,
    );
  }
  return value;
}

function hostname(value: string): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new TypeError(
      `Cannot configure the runtime as 'timeSyncHostname' must be a non-empty string: current value is ${
        show(value)
      }`,
    );
  }
  return value;
}

const SECURITY_MODES = ["insecure", "server-ca", "pinned", "mutual"];

function security(value: ChannelSecurity): ChannelSecurity {
  if (
    value === null || typeof value !== "object" || !SECURITY_MODES.includes(value.mode)
  ) {
    throw new TypeError(
      `Cannot configure the runtime as 'channelSecurity' must be an object whose mode is one of ${
        SECURITY_MODES.map((m) => `"${m}"`).join(", ")
      }: current value is ${show(value)}`,
    );
  }
  try {
    return Object.freeze(structuredClone(value));
  } catch {
    throw new TypeError(
      "Cannot configure the runtime as 'channelSecurity' must be structured-clonable (certificates as strings or bytes): it is not",
    );
  }
}
