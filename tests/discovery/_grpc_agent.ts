/**
 * A gRPC + discovery agent for the ServiceConnector end-to-end test, run on a simulated host.
 *
 * - `serve --type T --label L --id U`: hosts `tsercom.IdService` on a fresh port and publishes
 *   it over mDNS with caller id U. Commands on stdin (one JSON per line): `{"cmd":"restart"}`
 *   stops the server, starts one on a new port and publishes that port (same label and id);
 *   `{"cmd":"unpublish"}`; `{"cmd":"exit"}`.
 * - `connect --type T`: a DiscoveryHost + ServiceConnector over insecure channels; every
 *   connected channel does the GetId handshake. `{"cmd":"exit"}` stops.
 *
 * Events on stdout, one JSON per line, with `t` (ms, comparable across hosts). Refuses to run
 * outside an isolated network namespace (exit 3).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { isIsolatedNetns } from "../netns/mod.ts";
import { engineOf } from "../../discovery/mdns.ts";
import {
  DiscoveryHost,
  InstancePublisher,
  Mdns,
  ServiceConnector,
  type ServiceSource,
} from "../../discovery/mod.ts";
import {
  ClientIdFetcher,
  connectChannel,
  getIdHandler,
  type GrpcChannel,
  GrpcIdService,
  GrpcServicePublisher,
} from "../../rpc/mod.ts";
import { commands, emit } from "../_agent_io.ts";

if (!(await isIsolatedNetns())) {
  console.error("_grpc_agent: refusing to use multicast outside an isolated network namespace");
  Deno.exit(3);
}

const { positionals, values } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { type: { type: "string" }, label: { type: "string" }, id: { type: "string" } },
});

const mdns = await Mdns.open();

/** A DiscoveryHost whose events are also printed (for diagnosing failures). */
function logged(host: DiscoveryHost): ServiceSource {
  return {
    startDiscovery: (client) =>
      host.startDiscovery({
        onServiceAdded(info, callerId) {
          emit({ event: "discovered", port: info.port, addresses: info.addresses });
          return client.onServiceAdded(info, callerId);
        },
        onServiceRemoved(name, callerId) {
          emit({ event: "lost", name });
          return client.onServiceRemoved(name, callerId);
        },
      }),
    stopDiscovery: () => host.stopDiscovery(),
  };
}
const type = values.type ?? "_grpc._tcp";

if (positionals[0] === "serve") {
  let server: GrpcServicePublisher | undefined;
  let publisher: InstancePublisher | undefined;
  const up = async () => {
    server = new GrpcServicePublisher({ port: 0 });
    server.addService(GrpcIdService, { GetId: getIdHandler() });
    const { port } = await server.start();
    publisher = new InstancePublisher(port, type, {
      mdns,
      instanceName: values.label,
      id: values.id,
    });
    await publisher.publish();
    emit({ event: "serving", port, instanceName: publisher.instanceName });
  };
  const down = async () => {
    await publisher?.close();
    await server?.stop({ graceMs: 500 });
    publisher = undefined;
    server = undefined;
  };
  await up();
  for await (const command of commands()) {
    if (command.cmd === "restart") {
      await down();
      await up();
    } else if (command.cmd === "unpublish") {
      await publisher?.close();
      emit({ event: "unpublished" });
    } else if (command.cmd === "exit") break;
  }
  await down();
} else {
  const channels = new Map<string, GrpcChannel>();
  const connector = new ServiceConnector<GrpcChannel>(
    {
      async onChannelConnected(info, callerId, channel) {
        channels.set(callerId.toString(), channel);
        const fetched = await ClientIdFetcher.fromChannel(channel).getId();
        emit({
          event: "connected",
          callerId: callerId.toString(),
          port: info.port,
          target: channel.target,
          handshakeId: fetched?.toString() ?? null,
        });
      },
      onChannelDisconnected(info, callerId, reason) {
        // The channel is the client's: close it once its service is gone.
        channels.get(callerId.toString())?.close();
        channels.delete(callerId.toString());
        emit({ event: "disconnected", callerId: callerId.toString(), port: info.port, reason });
      },
    },
    {
      connect: (addresses, port, signal) =>
        connectChannel(addresses, port, { signal, attemptTimeoutMs: 2_000 }),
    },
    logged(new DiscoveryHost({ serviceType: type, mdns })),
    {
      initialRetryDelayMs: 200,
      maxRetryDelayMs: 2_000,
      onError: (error) => emit({ event: "retry", message: String(error) }),
    },
  );
  await connector.start();
  emit({ event: "listening" });
  for await (const command of commands()) {
    if (command.cmd === "exit") break;
    if (command.cmd === "debug") {
      const engine = engineOf(mdns);
      emit({
        event: "debug",
        engine: engine.counters,
        querier: engine.querier.counters,
        cached: engine.querier.cached(`svc.${type}.local`).map((e) =>
          `${e.record.type} ttl=${e.record.ttl} expiring=${e.expiring}`
        ),
      });
    }
  }
  await connector.stop();
}
await mdns.close();
emit({ event: "exited" });
Deno.exit(0);
