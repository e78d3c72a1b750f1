/**
 * Formats a value for an error message (private).
 *
 * @module
 */

/** A short, safe description of `value` for an error message. */
export function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return `function ${value.name || "(anonymous)"}`;
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}
