/**
 * Parses the peer strings gRPC libraries give for a call's remote end
 * (private: handlers see the result as {@linkcode GrpcPeer}).
 *
 * @module
 */

import type { GrpcPeer } from "./grpc_types.ts";

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const MAPPED_IPV4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;
const PORT = /^\d{1,5}$/;

/**
 * Parses a peer string into an address and a port, accepting both formats:
 *
 * - grpcio (the Python peers, and what `spec/net.md` §3.3 describes):
 *   `ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678` (brackets possibly
 *   percent-encoded), and `unix:/path` or `unix-abstract:name`, which give
 *   the address `"localhost"` and no port;
 * - grpc-js (`call.getPeer()`): `1.2.3.4:5678`, and for IPv6 `::1:5678`
 *   (no brackets) or `[::1]:5678`.
 *
 * The port is the number after the last `:`. An IPv4-mapped IPv6 address
 * (`::ffff:1.2.3.4`) is unwrapped to its IPv4 form. A bare IPv6 address
 * without a port is ambiguous in the grpc-js form (`::1` reads as `::` port
 * 1); grpc-js adds the port whenever the socket has one, which TCP always
 * does.
 *
 * @param text The peer string.
 * @returns The peer, or `undefined` when the text is none of these forms
 * (grpc-js says `"unknown"` when it has no address).
 */
export function parsePeer(text: string): GrpcPeer | undefined {
  if (typeof text !== "string" || text === "") return undefined;
  if (text.startsWith("unix:") || text.startsWith("unix-abstract:")) {
    return { address: "localhost", port: undefined };
  }
  let rest = text;
  let family: "ipv4" | "ipv6" | undefined;
  if (text.startsWith("ipv4:") || text.startsWith("ipv6:")) {
    family = text.startsWith("ipv4:") ? "ipv4" : "ipv6";
    try {
      rest = decodeURIComponent(text.slice(5));
    } catch {
      return undefined;
    }
  }
  const peer = splitHostPort(rest);
  if (peer === undefined) return undefined;
  const mapped = MAPPED_IPV4.exec(peer.address);
  const address = mapped !== null && IPV4.test(mapped[1]) ? mapped[1] : peer.address;
  if (family === "ipv4" && !IPV4.test(address)) return undefined;
  return { address, port: peer.port };
}

function splitHostPort(text: string): GrpcPeer | undefined {
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) return undefined;
    const host = text.slice(1, close);
    const after = text.slice(close + 1);
    if (!isIpv6(host)) return undefined;
    if (after === "") return { address: host, port: undefined };
    if (!after.startsWith(":")) return undefined;
    const port = parsePort(after.slice(1));
    return port === undefined ? undefined : { address: host, port };
  }
  if (IPV4.test(text) || (isIpv6(text) && !hasPortSuffix(text))) {
    return { address: text, port: undefined };
  }
  const colon = text.lastIndexOf(":");
  if (colon <= 0) return undefined;
  const host = text.slice(0, colon);
  const port = parsePort(text.slice(colon + 1));
  if (port === undefined || !(IPV4.test(host) || isIpv6(host))) return undefined;
  return { address: host, port };
}

/** Whether an unbracketed IPv6-looking text can be read as `host:port`. */
function hasPortSuffix(text: string): boolean {
  const colon = text.lastIndexOf(":");
  const host = text.slice(0, colon);
  return PORT.test(text.slice(colon + 1)) && (IPV4.test(host) || isIpv6(host));
}

function parsePort(text: string): number | undefined {
  if (!PORT.test(text)) return undefined;
  const port = Number(text);
  return port <= 65_535 ? port : undefined;
}

/** A loose but safe check of IPv6 text form: hex groups, at most one `::`, an optional IPv4 tail and zone. */
function isIpv6(text: string): boolean {
  const zone = text.indexOf("%");
  const body = zone < 0 ? text : text.slice(0, zone);
  if (zone >= 0 && zone === text.length - 1) return false;
  if (!body.includes(":") || !/^[0-9a-fA-F:.]+$/.test(body)) return false;
  const doubles = body.split("::").length - 1;
  if (doubles > 1) return false;
  let groups = body.split(":");
  const last = groups[groups.length - 1];
  let count = 0;
  if (last.includes(".")) {
    if (!IPV4.test(last)) return false;
    groups = groups.slice(0, -1);
    count += 2;
  }
  for (const group of groups) {
    if (group === "") continue;
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return false;
    count += 1;
  }
  if (doubles === 0) {
    if (body.startsWith(":") || body.endsWith(":")) return false;
    return count === 8;
  }
  return count <= 7;
}
