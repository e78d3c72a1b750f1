/**
 * Interoperability with avahi across two simulated hosts (see `tests/netns/mod.ts`): host A runs
 * a discovery agent (`_agent.ts`), host B runs a private avahi-daemon (see `_avahi.ts`) and the
 * avahi tools. Real mDNS over UDP multicast between the namespaces; nothing reaches the
 * machine's real interfaces.
 *
 * Needs root and the Debian packages `avahi-daemon`, `avahi-utils` and `dbus`.
 *
 * @module
 */

import { assert, assertEquals } from "../_assert.ts";
import { type SimHost, withHosts } from "../netns/mod.ts";
import { type Agent, type AgentEvent, startAgent } from "./_agents.ts";
import { type AvahiDaemon, type AvahiResolved, startAvahi } from "./_avahi.ts";

function tag(): string {
  return crypto.randomUUID().slice(0, 8);
}

interface Info {
  name: string;
  port: number;
  addresses: string[];
  mdnsName: string;
  txt: Record<string, string | null>;
  id?: string;
}

function info(event: AgentEvent): Info {
  return event.info as Info;
}

/** Keys of `key=value` / `key` TXT entries as avahi prints them. */
function txtMap(entries: string[]): Record<string, string | null> {
  const map: Record<string, string | null> = {};
  for (const entry of entries) {
    const equals = entry.indexOf("=");
    if (equals < 0) map[entry] = null;
    else map[entry.slice(0, equals)] = entry.slice(equals + 1);
  }
  return map;
}

/** The IPv6 link-local address of the host's eth0. */
async function linkLocal(host: SimHost): Promise<string> {
  const output = await host.run(["ip", "-j", "-6", "addr", "show", "dev", "eth0", "scope", "link"]);
  const parsed: { addr_info: { local: string }[] }[] = JSON.parse(output.stdout);
  const address = parsed[0]?.addr_info[0]?.local;
  assert(typeof address === "string", `eth0 of ${host.name} has a link-local address`);
  return address;
}

/** Browses with `avahi-browse -rpkt` until `found` holds for the `=` lines, or `timeoutMs`. */
async function browseUntil(
  avahi: AvahiDaemon,
  type: string,
  found: (entries: AvahiResolved[]) => boolean,
  timeoutMs: number,
): Promise<AvahiResolved[]> {
  const deadline = Date.now() + timeoutMs;
  let entries: AvahiResolved[] = [];
  while (Date.now() < deadline) {
    entries = await avahi.browseResolved(type, 10_000);
    if (found(entries)) return entries;
  }
  throw new Error(
    `avahi-browse did not show what was expected within ${timeoutMs} ms: ${
      JSON.stringify(entries)
    }`,
  );
}

/**
 * Runs `fn` with host A's agent and host B's avahi, on two fresh simulated hosts; stops both
 * (by pid) and checks that the agent wrote nothing to stderr.
 */
async function withAvahiAndAgent(
  fn: (
    context: { agent: Agent; avahi: AvahiDaemon; hostA: SimHost; hostB: SimHost },
  ) => Promise<void>,
): Promise<void> {
  await withHosts(2, async ([hostA, hostB]) => {
    let agent: Agent | undefined;
    let avahi: AvahiDaemon | undefined;
    let stderr = "";
    try {
      [agent, avahi] = await Promise.all([startAgent(hostA, { shared: true }), startAvahi(hostB)]);
      await fn({ agent, avahi, hostA, hostB });
    } finally {
      if (agent !== undefined) stderr = await agent.exit();
      await avahi?.stop();
    }
    assertEquals(stderr.trim(), "", "the agent wrote to stderr");
  });
}

Deno.test("avahi-browse on another host resolves a service our publisher announces", async () => {
  await withAvahiAndAgent(async ({ agent, avahi, hostA }) => {
    const type = `_av-${tag()}._tcp`;
    const label = `Ours ${tag()}`;
    await agent.send({
      cmd: "publish",
      ref: "p",
      port: 50_123,
      type,
      readableName: `Readable ${label}`,
      instanceName: label,
    });
    const published = await agent.waitFor(
      (e) => e.event === "published" && e.ref === "p",
      10_000,
      "the publication",
    );
    assertEquals(published.instanceName, `${label}.${type}.local`);

    const entries = await browseUntil(
      avahi,
      type,
      (all) => all.some((entry) => entry.name === label),
      15_000,
    );
    const ours = entries.filter((entry) => entry.name === label);
    assertEquals(ours.length, 1, `one resolved entry for ${label}: ${JSON.stringify(entries)}`);
    const [entry] = ours;
    assertEquals(
      [entry.interface, entry.protocol, entry.type, entry.domain],
      ["eth0", "IPv4", type, "local"],
    );
    assertEquals(entry.port, 50_123);
    assertEquals(entry.address, hostA.address);
    assert(/^tsercom-[0-9a-f]+\.local$/.test(entry.hostName), `host name ${entry.hostName}`);
    const txt = txtMap(entry.txt);
    assertEquals(txt.name, `Readable ${label}`);
    assert(
      typeof txt.published_on === "string" && !Number.isNaN(Date.parse(txt.published_on)),
      `published_on is a date: ${txt.published_on}`,
    );
    assert(typeof txt.id === "string" && txt.id.length > 0, `id is set: ${txt.id}`);
    assertEquals(Object.keys(txt).sort(), ["id", "name", "published_on"]);
  });
});

Deno.test("our listener discovers a service that avahi-publish announces on another host", async () => {
  await withAvahiAndAgent(async ({ agent, avahi, hostB }) => {
    const type = `_av-${tag()}._tcp`;
    const label = `Avahi service ${tag()}`;
    await agent.send({ cmd: "listen", ref: "l", type });
    await agent.waitFor((e) => e.event === "listening" && e.ref === "l", 5_000, "listening");
    await avahi.publish(label, type, 40_321, ["key=value", "flag", "empty="]);

    const added = await agent.waitFor(
      (e) => e.event === "added" && e.ref === "l",
      10_000,
      "the avahi service",
    );
    assertEquals(info(added).mdnsName, `${label}.${type}.local`);
    assertEquals(info(added).name, `${label}.${type}.local`, "no TXT name: the mDNS name");
    assertEquals(info(added).port, 40_321);
    // avahi also publishes eth0's IPv6 link-local address over IPv4 mDNS (its default
    // publish-aaaa-on-ipv4=yes), even with use-ipv6=no. Without its interface (the zone) nobody
    // can connect to it, so the listener leaves it out.
    assertEquals(info(added).addresses, [hostB.address]);
    assert((await linkLocal(hostB)).startsWith("fe80:"), "avahi had a link-local address to offer");
    assertEquals(info(added).txt, { key: "value", flag: null, empty: "" });
    assertEquals(info(added).id, undefined);
    assertEquals(agent.events.filter((e) => e.ref === "l" && e.event === "added").length, 1);
  });
});

Deno.test("a name avahi holds makes our publisher rename; avahi keeps its name", async () => {
  await withAvahiAndAgent(async ({ agent, avahi, hostA, hostB }) => {
    const type = `_av-${tag()}._tcp`;
    const label = `Contested ${tag()}`;
    const theirs = await avahi.publish(label, type, 40_001, ["owner=avahi"]);
    assertEquals(theirs.established.line, `Established under name '${label}'`);

    await agent.send({ cmd: "publish", ref: "p", port: 50_002, type, instanceName: label });
    const published = await agent.waitFor(
      (e) => e.event === "published" && e.ref === "p",
      15_000,
      "the publication",
    );
    assertEquals(published.instanceName, `${label} (2).${type}.local`);

    const entries = await browseUntil(
      avahi,
      type,
      (all) => all.some((entry) => entry.name === `${label} (2)`),
      15_000,
    );
    const byName = new Map(entries.map((entry) => [entry.name, entry]));
    assertEquals(
      [...byName.keys()].sort(),
      [label, `${label} (2)`],
      `avahi-browse shows both: ${JSON.stringify(entries)}`,
    );
    assertEquals([byName.get(label)?.address, byName.get(label)?.port], [hostB.address, 40_001]);
    assertEquals(txtMap(byName.get(label)?.txt ?? []).owner, "avahi");
    assertEquals([byName.get(`${label} (2)`)?.address, byName.get(`${label} (2)`)?.port], [
      hostA.address,
      50_002,
    ]);
    // avahi-publish would report a collision ("Service name collision, renaming…") on stderr.
    assertEquals(
      theirs.stderr.lines.map((entry) => entry.line),
      [`Established under name '${label}'`],
    );
    assertEquals(theirs.stdout.text(), "");
    assert(
      !/conflict|collision|withdraw/i.test(avahi.log.text()),
      `the daemon saw no collision: ${avahi.log.text()}`,
    );
  });
});
