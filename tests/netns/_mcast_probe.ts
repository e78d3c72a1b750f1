/**
 * A small UDP multicast probe, run as a subprocess inside a network namespace of the harness.
 *
 * ```
 * deno run -A --unstable-net _mcast_probe.ts receive --group G --port P --interface IP [--timeout MS]
 * deno run -A --unstable-net _mcast_probe.ts send --group G --port P --interface IP --payload TEXT
 * ```
 *
 * It prints one JSON object per line on stdout:
 * - `receive` binds `0.0.0.0:P`, joins `G` on the interface with address `IP`, prints
 *   `{"event":"ready"}`, then `{"event":"datagram","payload":…,"hostname":…,"port":…}` for the
 *   first datagram and exits 0, or `{"event":"timeout"}` and exits 2;
 * - `send` binds `IP:0` (which makes `IP` the source address and, on Linux, picks the interface
 *   that has it), sends `TEXT` to `G:P` with TTL 1 and prints `{"event":"sent","bytes":…}`.
 *
 * Both refuse to run (exit 3) unless the current network namespace is isolated (see
 * `isIsolatedNetns`), so a mistake cannot put multicast on the machine's real network.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { isIsolatedNetns } from "./mod.ts";

function fail(message: string, code: number): never {
  console.error(`_mcast_probe: ${message}`);
  Deno.exit(code);
}

function print(event: Record<string, unknown>): void {
  console.log(JSON.stringify(event));
}

const { positionals, values } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    group: { type: "string" },
    port: { type: "string" },
    interface: { type: "string" },
    payload: { type: "string" },
    timeout: { type: "string", default: "5000" },
  },
});

const mode = positionals[0];
if (mode !== "send" && mode !== "receive") fail(`wanted 'send' or 'receive', got ${mode}`, 64);
const group = values.group ?? "";
const octets = group.split(".").map(Number);
if (
  octets.length !== 4 || !octets.every((n) => Number.isInteger(n) && n >= 0 && n <= 255) ||
  octets[0] < 224 || octets[0] > 239
) {
  fail(`'--group' must be an IPv4 multicast address: current value is ${group}`, 64);
}
const port = Number(values.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  fail(`'--port' must be an integer in 1..65535: current value is ${values.port}`, 64);
}
const iface = values.interface ?? "";
if (!/^\d+\.\d+\.\d+\.\d+$/.test(iface)) {
  fail(`'--interface' must be an IPv4 address: current value is ${iface}`, 64);
}
const timeout = Number(values.timeout);
if (!Number.isInteger(timeout) || timeout < 1 || timeout > 60_000) {
  fail(`'--timeout' must be an integer in 1..60000: current value is ${values.timeout}`, 64);
}

if (!(await isIsolatedNetns())) {
  fail("refusing to use multicast outside an isolated network namespace", 3);
}

if (mode === "receive") {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: "0.0.0.0",
    port,
    reuseAddress: true,
  });
  await conn.joinMulticastV4(group, iface);
  print({ event: "ready" });
  const timer = setTimeout(() => conn.close(), timeout);
  try {
    const [data, addr] = await conn.receive();
    const from = addr as Deno.NetAddr;
    print({
      event: "datagram",
      payload: new TextDecoder().decode(data),
      hostname: from.hostname,
      port: from.port,
    });
  } catch {
    print({ event: "timeout" });
    Deno.exit(2);
  } finally {
    clearTimeout(timer);
  }
  try {
    conn.close();
  } catch {
    // Already closed.
  }
} else {
  if (values.payload === undefined) fail("'--payload' is required to send", 64);
  const conn = Deno.listenDatagram({ transport: "udp", hostname: iface, port: 0 });
  const bytes = await conn.send(new TextEncoder().encode(values.payload), {
    transport: "udp",
    hostname: group,
    port,
  });
  print({ event: "sent", bytes, port: (conn.addr as Deno.NetAddr).port });
  conn.close();
}
