/**
 * A simulated host's side of `udp_transport_test.ts`, run as a subprocess inside a network
 * namespace of the harness:
 *
 * ```
 * deno run -A --unstable-net _udp_transport_probe.ts serve --name NAME [--timeout MS]
 * deno run -A --unstable-net _udp_transport_probe.ts query --name NAME [--timeout MS]
 * ```
 *
 * Both open a {@linkcode UdpMdnsTransport} with its default options and print one JSON object per
 * line: first `{"event":"ready","interfaces":[…],"addresses":[…]}`, then
 * `{"event":"datagram","from":{…},"message":{…}}` for each mDNS message received (TXT and other
 * binary data left out), and `{"event":"done"}` when they end.
 *
 * - `serve` answers the first query with an A question for `NAME` with an A record holding its
 *   first advertised address: once by multicast (id 0) and, when the question has the QU bit,
 *   once by unicast to the asker (id 4660 marks that copy); it then ends.
 * - `query` sends one QU query for `NAME`/A to the group and ends after it has received two
 *   answers or when the timeout elapses.
 *
 * Both refuse to run (exit 3) unless the network namespace is isolated (see `isIsolatedNetns`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { isIsolatedNetns } from "../netns/mod.ts";
import { decodeMessage, encodeMessage } from "../../discovery/mdns/_codec.ts";
import { UdpMdnsTransport } from "../../discovery/mdns/_udp_transport.ts";
import { emptyMessage, type MdnsMessage, nameKey } from "../../discovery/mdns/_types.ts";

/** The id the unicast copy of the answer carries. */
export const UNICAST_ANSWER_ID = 4660;

function print(event: Record<string, unknown>): void {
  console.log(JSON.stringify(event));
}

function fail(message: string, code: number): never {
  console.error(`_udp_transport_probe: ${message}`);
  Deno.exit(code);
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      name: { type: "string" },
      timeout: { type: "string", default: "5000" },
    },
  });
  const mode = positionals[0];
  if (mode !== "serve" && mode !== "query") fail(`wanted 'serve' or 'query', got ${mode}`, 64);
  const name = values.name ?? "";
  if (!/^[a-z0-9-]+\.local$/.test(name)) fail(`'--name' must be <label>.local: got ${name}`, 64);
  const timeout = Number(values.timeout);
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > 60_000) {
    fail(`'--timeout' must be an integer in 1..60000: current value is ${values.timeout}`, 64);
  }
  if (!(await isIsolatedNetns())) {
    fail("refusing to use multicast outside an isolated network namespace", 3);
  }

  function summary(message: MdnsMessage): Record<string, unknown> {
    return {
      id: message.id,
      response: message.response,
      questions: message.questions,
      answers: message.answers.map(({ name, type, ttl, flush, data }) => ({
        name,
        type,
        ttl,
        flush,
        data: typeof data === "string" ? data : undefined,
      })),
    };
  }

  function asksForName(message: MdnsMessage): boolean {
    return !message.response &&
      message.questions.some((q) => nameKey(q.name) === nameKey(name) && q.type === "A");
  }

  const transport = await UdpMdnsTransport.open();
  print({ event: "ready", interfaces: transport.interfaces, addresses: transport.addresses() });
  const timer = setTimeout(() => transport.close(), timeout);
  let answers = 0;
  try {
    if (mode === "query") {
      const query = emptyMessage(false);
      query.questions.push({ name, type: "A", unicastResponse: true });
      await transport.send(encodeMessage(query));
    }
    for await (const { data, from } of transport.receive()) {
      let message: MdnsMessage;
      try {
        message = decodeMessage(data);
      } catch (error) {
        print({ event: "undecodable", from, error: String(error) });
        continue;
      }
      print({ event: "datagram", from, message: summary(message) });
      if (mode === "serve" && asksForName(message)) {
        const answer = emptyMessage(true);
        answer.answers.push({
          name,
          type: "A",
          ttl: 120,
          flush: true,
          data: transport.addresses()[0],
        });
        await transport.send(encodeMessage(answer));
        if (message.questions.some((q) => q.unicastResponse)) {
          await transport.send(encodeMessage({ ...answer, id: UNICAST_ANSWER_ID }), from);
        }
        break;
      }
      if (mode === "query" && message.response && ++answers >= 2) break;
    }
  } finally {
    clearTimeout(timer);
    await transport.close();
  }
  print({ event: "done" });
}

if (import.meta.main) await main();
