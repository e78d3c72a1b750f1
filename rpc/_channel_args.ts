/**
 * Argument checks shared by the channel files (private).
 *
 * @module
 */

import { isIP } from "node:net";
import { show } from "./_show.ts";
import type { Scheduler } from "./scheduler.ts";

/** The largest port number. */
const MAX_PORT = 65_535;

/** Checks an address; returns it without IPv6 brackets. */
export function checkAddress(operation: string, address: unknown): string {
  if (typeof address !== "string" || address.length === 0 || /[\s/]/.test(address)) {
    throw new TypeError(
      `Cannot ${operation} as the address must be an IP address or a host name: current value is ${
        show(address)
      }`,
    );
  }
  const host = address.startsWith("[") && address.endsWith("]") ? address.slice(1, -1) : address;
  if (host.includes(":") && isIP(host) !== 6) {
    throw new TypeError(
      `Cannot ${operation} as the address must be an IP address or a host name (without a port): current value is ${
        show(address)
      }`,
    );
  }
  return host;
}

/** Checks a port to connect to. */
export function checkPort(operation: string, port: unknown): void {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > MAX_PORT) {
    throw new RangeError(
      `Cannot ${operation} as 'port' must be an integer in 1..${MAX_PORT}: current value is ${
        show(port)
      }`,
    );
  }
}

/** `host:port`, with brackets around an IPv6 host. */
export function formatTarget(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Checks that an argument is an object. */
export function checkObject(operation: string, name: string, value: unknown): void {
  if (typeof value !== "object" || value === null) {
    throw new TypeError(
      `Cannot ${operation} as '${name}' must be an object: current value is ${show(value)}`,
    );
  }
}

/** Checks an optional abort signal. */
export function checkSignal(operation: string, signal: unknown): void {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(
      `Cannot ${operation} as 'options.signal' must be an AbortSignal: current value is ${
        show(signal)
      }`,
    );
  }
}

/** Checks a scheduler. */
export function checkScheduler(operation: string, scheduler: unknown): void {
  const s = scheduler as Partial<Scheduler> | null;
  if (
    typeof s !== "object" || s === null || typeof s.setTimeout !== "function" ||
    typeof s.clearTimeout !== "function"
  ) {
    throw new TypeError(
      `Cannot ${operation} as 'options.scheduler' must be a Scheduler: current value is ${
        show(scheduler)
      }`,
    );
  }
}
