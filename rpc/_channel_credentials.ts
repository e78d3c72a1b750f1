/**
 * Turns a {@linkcode ChannelSecurity} into grpc-js channel credentials and
 * channel options (private: grpc-js types never appear in the public API).
 *
 * How each mode verifies the server (`spec/net.md` §3.1, bugs B29 and B30
 * fixed):
 *
 * - `server-ca`, `mutual`: the chain must lead to the given CA (or, for
 *   `mutual` without one, to the default roots), and the certificate must
 *   name the server: `serverName` when given, else the address dialled. An
 *   IP address is matched against the certificate's IP subjectAltNames.
 * - `pinned`: the chain must lead to `ca` when given, else to the pinned
 *   certificate itself; then the peer's leaf must be exactly the pinned
 *   certificate (same SHA-256 fingerprint). Names are not checked: the exact
 *   certificate is the identity.
 *
 * TLS cannot carry an IP address as the server name (SNI), and Deno refuses
 * to try, so when the name to verify is an IP address the handshake names
 * {@linkcode IP_TARGET_SNI} instead; verification still uses the IP address.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { show } from "./_show.ts";
import type { ChannelSecurity } from "./channel_factory.ts";

/** The server name sent in the TLS handshake when the name to verify is an IP address. */
export const IP_TARGET_SNI = "localhost";

/** A validated {@linkcode ChannelSecurity}, ready to make credentials. */
export interface PreparedSecurity {
  /** The mode. */
  readonly mode: ChannelSecurity["mode"];
  /**
   * The credentials and channel options for a connection to `host` (an IP
   * address without brackets, or a host name).
   */
  credentialsFor(host: string): {
    credentials: grpc.ChannelCredentials;
    options: grpc.ChannelOptions;
  };
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
const decoder = new TextDecoder();

/**
 * Validates `security` and prepares it.
 *
 * @param operation What the caller was doing, for error messages (`"connect"`).
 * @param security The security settings.
 * @throws {TypeError} When `security` is malformed, or a certificate or key does not parse.
 */
export function prepareSecurity(operation: string, security: unknown): PreparedSecurity {
  if (typeof security !== "object" || security === null) {
    throw new TypeError(
      `Cannot ${operation} as 'security' must be an object with a 'mode': current value is ${
        show(security)
      }`,
    );
  }
  const settings = security as Record<string, unknown>;
  const mode = settings.mode;
  switch (mode) {
    case "insecure":
      return {
        mode,
        credentialsFor: () => ({ credentials: grpc.credentials.createInsecure(), options: {} }),
      };
    case "server-ca": {
      const ca = certificates(operation, "security.ca", settings.ca);
      const serverName = optionalServerName(operation, settings.serverName);
      return {
        mode,
        credentialsFor: (host) => named(serverName ?? host, ca.pem, null, null),
      };
    }
    case "pinned": {
      const pinned = certificates(operation, "security.certificate", settings.certificate);
      if (pinned.certs.length !== 1) {
        throw new TypeError(
          `Cannot ${operation} as 'security.certificate' must be exactly one certificate: it holds ${pinned.certs.length}`,
        );
      }
      const ca = settings.ca === undefined
        ? undefined
        : certificates(operation, "security.ca", settings.ca);
      const serverName = optionalServerName(operation, settings.serverName);
      const fingerprint = normalizeFingerprint(pinned.certs[0].fingerprint256);
      return {
        mode,
        credentialsFor: (host) => {
          const name = serverName ?? host;
          const check = (_host: string, cert: PeerCertificate): Error | undefined => {
            const seen = typeof cert?.fingerprint256 === "string"
              ? normalizeFingerprint(cert.fingerprint256)
              : undefined;
            if (seen === fingerprint) return undefined;
            return new Error(
              `Cannot trust the server ${name} as its certificate (SHA-256 ${
                seen ?? "unknown"
              }) is not the pinned one (SHA-256 ${fingerprint})`,
            );
          };
          return {
            credentials: grpc.credentials.createSsl(
              Buffer.from(ca?.pem ?? pinned.pem),
              null,
              null,
              { checkServerIdentity: check },
            ),
            options: { "grpc.ssl_target_name_override": sniFor(name) },
          };
        },
      };
    }
    case "mutual": {
      const certificate = certificates(operation, "security.certificate", settings.certificate);
      const privateKey = key(operation, "security.privateKey", settings.privateKey);
      try {
        if (!certificate.certs[0].checkPrivateKey(createPrivateKey(privateKey))) {
          throw new Error("the key does not belong to the certificate");
        }
      } catch (error) {
        throw new TypeError(
          `Cannot ${operation} as 'security.privateKey' must be the key of the first certificate of 'security.certificate': ${
            messageOf(error)
          }`,
          { cause: error },
        );
      }
      const ca = settings.ca === undefined
        ? undefined
        : certificates(operation, "security.ca", settings.ca);
      const serverName = optionalServerName(operation, settings.serverName);
      return {
        mode,
        credentialsFor: (host) =>
          named(serverName ?? host, ca?.pem ?? null, privateKey, certificate.pem),
      };
    }
    default:
      throw new TypeError(
        `Cannot ${operation} as 'security.mode' must be "insecure", "server-ca", "pinned" or "mutual": current value is ${
          show(mode)
        }`,
      );
  }
}

/** TLS credentials that verify the chain against `ca` (default roots when null) and the name `name`. */
function named(
  name: string,
  ca: string | null,
  privateKey: string | null,
  certificate: string | null,
): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  const check = (_host: string, cert: PeerCertificate): Error | undefined =>
    checkServerIdentity(name, cert);
  return {
    credentials: grpc.credentials.createSsl(
      ca === null ? null : Buffer.from(ca),
      privateKey === null ? null : Buffer.from(privateKey),
      certificate === null ? null : Buffer.from(certificate),
      { checkServerIdentity: check },
    ),
    options: { "grpc.ssl_target_name_override": sniFor(name) },
  };
}

function sniFor(name: string): string {
  return isIP(name) === 0 ? name : IP_TARGET_SNI;
}

function normalizeFingerprint(fingerprint: string): string {
  return fingerprint.toUpperCase();
}

/** PEM certificates (one or more), from PEM text (string or bytes) or one DER certificate. */
function certificates(
  operation: string,
  name: string,
  value: unknown,
): { pem: string; certs: X509Certificate[] } {
  const fail = (why: string, cause?: unknown): TypeError =>
    new TypeError(
      `Cannot ${operation} as '${name}' must be a PEM certificate (string or bytes) or a DER certificate (bytes): ${why}`,
      { cause },
    );
  if (value instanceof Uint8Array) {
    const text = decoder.decode(value);
    if (!text.includes("-----BEGIN")) {
      try {
        const cert = new X509Certificate(value);
        return { pem: cert.toString(), certs: [cert] };
      } catch (error) {
        throw fail(
          `${value.length} bytes that are neither PEM nor DER (${messageOf(error)})`,
          error,
        );
      }
    }
    value = text;
  }
  if (typeof value !== "string") throw fail(`current value is ${show(value)}`);
  const blocks = value.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw fail("no '-----BEGIN CERTIFICATE-----' block found");
  const certs = blocks.map((block, index) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw fail(`certificate ${index + 1} does not parse (${messageOf(error)})`, error);
    }
  });
  return { pem: blocks.join("\n") + "\n", certs };
}

/** A PEM private key (string or bytes). */
function key(operation: string, name: string, value: unknown): string {
  const text = value instanceof Uint8Array ? decoder.decode(value) : value;
  if (typeof text !== "string" || !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw new TypeError(
      `Cannot ${operation} as '${name}' must be a PEM private key (string or bytes): current value is ${
        typeof text === "string"
          ? "text without a '-----BEGIN ... PRIVATE KEY-----' block"
          : show(text)
      }`,
    );
  }
  try {
    createPrivateKey(text);
  } catch (error) {
    throw new TypeError(
      `Cannot ${operation} as '${name}' must be a PEM private key (string or bytes): it does not parse (${
        messageOf(error)
      })`,
      { cause: error },
    );
  }
  return text;
}

function optionalServerName(operation: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.length === 0 || /\s/.test(value)) {
    throw new TypeError(
      `Cannot ${operation} as 'security.serverName' must be a non-empty host name or IP address: current value is ${
        show(value)
      }`,
    );
  }
  return value.startsWith("[") && value.endsWith("]") ? value.slice(1, -1) : value;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
