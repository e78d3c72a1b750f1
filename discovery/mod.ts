/**
 * Service discovery over mDNS/DNS-SD (RFC 6762/6763): publish a service,
 * browse for one, and give each instance found a stable caller id.
 *
 * @example
 * ```ts ignore
 * import { DiscoveryHost, InstancePublisher, Mdns } from "@tsercom/tsercom/discovery";
 *
 * await using mdns = await Mdns.open();
 * await using publisher = new InstancePublisher(50051, "_sensors._tcp", { mdns });
 * await publisher.publish();
 * ```
 *
 * @module
 */

export * from "./discovery_host.ts";
export * from "./instance_listener.ts";
export * from "./instance_publisher.ts";
export { Mdns, type MdnsCounters, type MdnsOptions } from "./mdns.ts";
export * from "./service_connector.ts";
export * from "./service_info.ts";
// The caller ids in this module's signatures, for users of this entry point alone.
export { CallerId, type CallerIdFields, type CallerIdInput } from "../rpc/caller_id.ts";
export type { Scheduler } from "../rpc/scheduler.ts";
export type { ClosableConnection } from "../rpc/reconnecting_client.ts";
