/**
 * The description of a discovered service instance.
 *
 * @module
 */

/**
 * A service instance found on the network: where to connect and what it
 * says about itself.
 *
 * @example
 * ```ts
 * import type { ServiceInfo } from "@tsercom/tsercom/discovery";
 *
 * const info: ServiceInfo = {
 *   name: "Sensor 7",
 *   port: 50051,
 *   addresses: ["198.18.0.2"],
 *   mdnsName: "tsercom-1a2b3c4d._sensors._tcp.local",
 *   txt: { name: "Sensor 7", published_on: "2026-12-01T12:00:00.000Z" },
 *   id: undefined,
 * };
 * ```
 */
export interface ServiceInfo {
  /** The readable name: the TXT `name`, else the instance name. */
  readonly name: string;
  /** The TCP or UDP port the service listens on. */
  readonly port: number;
  /**
   * The host's addresses: IPv4 dotted first, then IPv6; never empty. IPv6
   * link-local addresses are left out (they are useless without their
   * interface).
   */
  readonly addresses: readonly string[];
  /** The full instance name as on the wire, e.g. `"x._sensors._tcp.local"`. */
  readonly mdnsName: string;
  /** The TXT record: keys in lower case, `null` for a key without a value. */
  readonly txt: Readonly<Record<string, string | null>>;
  /** The publisher's stable caller id (TXT `id`), when it published a valid one. */
  readonly id: string | undefined;
}
