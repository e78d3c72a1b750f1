/**
 * tsercom — Time SERies COMmunication for Deno: stream and synchronise
 * time-series data between processes and machines.
 *
 * This entry point re-exports every module; import a module's own entry point
 * (for example `@tsercom/tsercom/rpc`) to pull in only what it needs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CallerId } from "@tsercom/tsercom";
 *
 * assert(CallerId.random().toString().length === 36);
 * ```
 *
 * @module
 */

export * from "./rpc/mod.ts";
export * from "./tensor/mod.ts";
export * from "./discovery/mod.ts";
export * from "./runtime/mod.ts";
