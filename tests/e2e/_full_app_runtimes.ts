/**
 * Runtimes of the full-app scenarios of spec/runtime.md §14 (test helper):
 * an advertiser (a gRPC server with the health service, published over
 * mDNS), a discoverer (DiscoveryHost and ServiceConnector, reporting the
 * channels it connects), and an echo server (unary and client-streaming
 * methods that record what they received). Each uses stream delivery and
 * emits what the test checks.
 *
 * @module
 */

import { DiscoveryHost, InstancePublisher, Mdns, ServiceConnector } from "../../discovery/mod.ts";
import {
  type GrpcChannel,
  GrpcHealthService,
  type GrpcService,
  GrpcServicePublisher,
  type MessageCodec,
} from "../../rpc/mod.ts";
import type { Runtime, RuntimeContext } from "../../runtime/mod.ts";

/** The service type the advertiser publishes. */
export const FOO_SERVICE_TYPE = "_foo._tcp";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const text: MessageCodec<string> = {
  serialize: (value) => encoder.encode(value),
  deserialize: (bytes) => decoder.decode(bytes),
};

/** A test service: `Echo` (unary) and `ClientStream` (client streaming), on text messages. */
export const EchoService: GrpcService = {
  typeName: "test.E2eEcho",
  methods: {
    Echo: {
      name: "Echo",
      path: "/test.E2eEcho/Echo",
      kind: "unary",
      request: text,
      response: text,
    },
    ClientStream: {
      name: "ClientStream",
      path: "/test.E2eEcho/ClientStream",
      kind: "client_streaming",
      request: text,
      response: text,
    },
  },
};

/** What the runtimes emit. */
export type FullAppItem =
  | { readonly kind: "serving"; readonly port: number }
  | { readonly kind: "published"; readonly instance: string }
  | { readonly kind: "connected"; readonly name: string; readonly port: number }
  | { readonly kind: "recorded"; readonly method: string; readonly value: string };

/** Serves the health service and advertises it as `_foo._tcp` (params: the readable name). */
export function Advertiser(context: RuntimeContext<FullAppItem>): Runtime {
  const publisher = new GrpcServicePublisher({ addresses: "127.0.0.1", port: 0 });
  let mdns: Mdns | undefined;
  let advert: InstancePublisher | undefined;
  return {
    async start() {
      const { port } = await publisher.start(); // the health service is built in
      await context.emit({ kind: "serving", port }, Date.now() * 1_000);
      mdns = await Mdns.open();
      advert = new InstancePublisher(port, FOO_SERVICE_TYPE, {
        mdns,
        readableName: context.params as string,
      });
      await advert.publish();
      await context.emit({ kind: "published", instance: advert.instanceName! }, Date.now() * 1_000);
    },
    async stop() {
      await advert?.close();
      await mdns?.close();
      await publisher.stop({ graceMs: 0 });
    },
  };
}

/** Discovers `_foo._tcp`, connects, checks the channel with a health call, and reports it. */
export function Discoverer(context: RuntimeContext<FullAppItem>): Runtime {
  let mdns: Mdns | undefined;
  let connector: ServiceConnector<GrpcChannel> | undefined;
  const channels: GrpcChannel[] = [];
  return {
    async start() {
      mdns = await Mdns.open();
      connector = new ServiceConnector<GrpcChannel>(
        {
          async onChannelConnected(info, _callerId, channel) {
            channels.push(channel);
            const health = await channel.unary(GrpcHealthService.methods.Check, { service: "" });
            if (health.status !== 1) throw new Error(`health status ${health.status}`);
            await context.emit(
              { kind: "connected", name: info.name, port: info.port },
              Date.now() * 1_000,
            );
          },
          onChannelDisconnected(_info, _callerId, reason) {
            if (reason !== "moved") { for (const channel of channels.splice(0)) channel.close(); }
          },
        },
        {
          connect: (addresses, port, signal) => context.connectChannel(addresses, port, { signal }),
        },
        new DiscoveryHost({ serviceType: FOO_SERVICE_TYPE, mdns }),
        { onError: (error) => context.reportError(error) },
      );
      await connector.start();
    },
    async stop() {
      await connector?.stop();
      for (const channel of channels.splice(0)) channel.close();
      await mdns?.close();
    },
  };
}

/** Serves EchoService on 127.0.0.1 and records what it receives. */
export function EchoServer(context: RuntimeContext<FullAppItem>): Runtime {
  const publisher = new GrpcServicePublisher({ addresses: "127.0.0.1", port: 0 });
  const record = (method: string, value: string) =>
    context.emit({ kind: "recorded", method, value }, Date.now() * 1_000);
  publisher.addService(EchoService, {
    async Echo(request: string) {
      await record("Echo", request);
      return `Server echoes: ${request}`;
    },
    async ClientStream(requests: AsyncIterable<string>) {
      let count = 0;
      for await (const request of requests) {
        count++;
        await record("ClientStream", request);
      }
      return `ClientStreamData received ${count} messages`;
    },
  });
  return {
    async start() {
      const { port } = await publisher.start();
      await context.emit({ kind: "serving", port }, Date.now() * 1_000);
    },
    async stop() {
      await publisher.stop({ graceMs: 0 });
    },
  };
}
