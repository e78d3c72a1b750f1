/**
 * DNS-SD TXT records as key/value maps (RFC 6763 §6), and service-type
 * names (private).
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The longest TXT character string (one length byte). */
const MAX_STRING_BYTES = 255;

/**
 * Encodes `entries` as TXT strings: `key=value`, or a bare `key` for `null`
 * (present, no value). An empty map is one empty string, as RFC 6763 §6.1
 * requires.
 *
 * @throws {RangeError} When a key is empty, contains `=` or is not
 *   printable ASCII, or an entry is longer than 255 bytes.
 */
export function encodeTxt(entries: Readonly<Record<string, string | null>>): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const [key, value] of Object.entries(entries)) {
    if (!/^[\x20-\x3c\x3e-\x7e]+$/.test(key)) {
      throw new RangeError(
        `Cannot encode the TXT record as key ${
          JSON.stringify(key)
        } must be non-empty printable ASCII without '='`,
      );
    }
    const bytes = encoder.encode(value === null ? key : `${key}=${value}`);
    if (bytes.length > MAX_STRING_BYTES) {
      throw new RangeError(
        `Cannot encode the TXT record as the entry for ${
          JSON.stringify(key)
        } is ${bytes.length} bytes: at most ${MAX_STRING_BYTES}`,
      );
    }
    out.push(bytes);
  }
  return out.length === 0 ? [new Uint8Array(0)] : out;
}

/**
 * Decodes TXT strings into a map with lower-case keys (keys are
 * case-insensitive). The first occurrence of a key wins; a bare key is
 * `null` (present, no value) and `key=` is `""` (present, empty value), as
 * RFC 6763 §6.4 distinguishes them; an entry that is not UTF-8 is skipped;
 * empty strings are ignored.
 */
export function decodeTxt(strings: readonly Uint8Array[]): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const bytes of strings) {
    if (bytes.length === 0) continue;
    const eq = bytes.indexOf(0x3d);
    const keyBytes = eq < 0 ? bytes : bytes.subarray(0, eq);
    if (keyBytes.length === 0) continue;
    let key: string;
    let value: string | null;
    try {
      key = decoder.decode(keyBytes).toLowerCase();
      value = eq < 0 ? null : decoder.decode(bytes.subarray(eq + 1));
    } catch {
      continue;
    }
    if (!Object.hasOwn(out, key)) out[key] = value;
  }
  return out;
}

/**
 * Normalises a DNS-SD service type to `_name._proto.local` (no trailing
 * dot, lower case): `"_echo"`, `"_echo._tcp"`, `"_echo._tcp.local"` and
 * `"_echo._tcp.local."` all give `"_echo._tcp.local"`; `_udp` is kept.
 *
 * @throws {TypeError} When it is not a string.
 * @throws {RangeError} When it is not `_` followed by 1 to 63 letters,
 *   digits or hyphens, optionally with `._tcp`/`._udp` and `.local`.
 */
export function normalizeServiceType(serviceType: string, action: string): string {
  if (typeof serviceType !== "string") {
    throw new TypeError(
      `Cannot ${action} as 'serviceType' must be a string: current value is ${typeof serviceType}`,
    );
  }
  const match = /^(_[a-z0-9-]{1,63})(?:\.(_tcp|_udp))?(?:\.local)?\.?$/i.exec(serviceType);
  if (match === null) {
    throw new RangeError(
      `Cannot ${action} as 'serviceType' must look like "_name._tcp.local": current value is ${
        JSON.stringify(serviceType)
      }`,
    );
  }
  return `${match[1]}.${match[2] ?? "_tcp"}.local`.toLowerCase();
}
