import { Lines } from "../_lines.ts";
import { assert, assertEquals, assertNotEquals } from "../_assert.ts";
import {
  cleanupStaleNamespaces,
  isIsolatedNetns,
  type NetnsOutput,
  netnsTest,
  NetnsTestError,
  parseTestSummary,
  type RootCaptureResult,
  runInNetns,
  runNetnsTest,
  type SimHost,
  startRootCapture,
  withHosts,
} from "./mod.ts";

const PROBE = new URL("./_mcast_probe.ts", import.meta.url).pathname;
const MOD = new URL("./mod.ts", import.meta.url).href;
const GROUP = "239.255.83.84";
const PORT = 45_354;
const decoder = new TextDecoder();

function probe(mode: "send" | "receive", args: string[]): string[] {
  return [Deno.execPath(), "run", "-A", "--no-check", "--unstable-net", PROBE, mode, ...args];
}

async function ip(args: string[]): Promise<string> {
  const output = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  assert(output.success, `ip ${args.join(" ")} failed: ${decoder.decode(output.stderr)}`);
  return decoder.decode(output.stdout);
}

async function namespaces(): Promise<string[]> {
  return (await ip(["netns", "list"])).split("\n").map((line) => line.split(" ")[0]).filter(
    (name) => name !== "",
  );
}

async function linkNames(): Promise<string[]> {
  return (await ip(["-o", "link"])).split("\n").filter((line) => line !== "").map((line) =>
    line.split(":")[1].trim()
  ).sort();
}

/** Has `receiver` wait for one datagram and `sender` send `payload`; returns what arrived. */
async function exchange(
  sender: SimHost,
  receiver: SimHost,
  payload: string,
): Promise<{ received: Record<string, unknown> | undefined; sent: NetnsOutput }> {
  const child = receiver.spawn(
    probe("receive", [
      "--group",
      GROUP,
      "--port",
      String(PORT),
      "--interface",
      receiver.address,
      "--timeout",
      "5000",
    ]),
    { stderr: "null" },
  );
  const lines = new Lines(child.stdout);
  try {
    assertEquals(await lines.json(8_000), { event: "ready" });
    const sent = await sender.run(
      probe("send", [
        "--group",
        GROUP,
        "--port",
        String(PORT),
        "--interface",
        sender.address,
        "--payload",
        payload,
      ]),
      { timeout: 8_000 },
    );
    const received = await lines.json(6_000);
    return { received, sent };
  } finally {
    await lines.close();
    await child.status;
  }
}

Deno.test("withHosts simulates hosts whose multicast stays inside their namespaces", async (t) => {
  const namespacesBefore = await namespaces();
  const linksBefore = await linkNames();
  const payload = `tsercom-netns-${crypto.randomUUID()}`;
  const capture = await startRootCapture(`udp port ${PORT} or net 198.18.0.0/24`);
  let created: string[] = [];
  let result: RootCaptureResult;
  try {
    await withHosts(2, async (hosts) => {
      created = hosts.map((host) => host.name);
      const [a, b] = hosts;
      await t.step("host A has address 198.18.0.1 and host B 198.18.0.2", () => {
        assertEquals([a.address, b.address], ["198.18.0.1", "198.18.0.2"]);
      });
      await t.step(
        "a multicast datagram sent on host A reaches host B from A's address",
        async () => {
          const { received, sent } = await exchange(a, b, payload);
          assert(sent.success, `the sender failed: ${sent.stderr}`);
          assertEquals(received?.event, "datagram");
          assertEquals(received?.payload, payload);
          assertEquals(received?.hostname, "198.18.0.1");
        },
      );
    });
  } finally {
    result = await capture.stop();
  }

  await t.step("a capture on the root namespace's interfaces sees none of that traffic", () => {
    assertEquals([result.captured, result.receivedByFilter], [0, 0], result.stdout);
    assert(!result.stdout.includes(payload));
  });

  await t.step("no namespace of the hosts is listed after withHosts returns", async () => {
    assertEquals(created.length, 2);
    const after = await namespaces();
    assertEquals(created.filter((name) => after.includes(name)), []);
    assertEquals(
      after.filter((name) => !namespacesBefore.includes(name) && name.startsWith("tsc-")),
      [],
    );
  });

  await t.step("the root namespace has the same interfaces as before", async () => {
    assertEquals(await linkNames(), linksBefore);
  });

  await t.step(
    "namespaces and hanging processes are removed when the callback throws",
    async () => {
      const failure = new Error("the callback failed on purpose");
      let names: string[] = [];
      let child: Deno.ChildProcess | undefined;
      let thrown: unknown;
      try {
        await withHosts(2, async (hosts) => {
          names = hosts.map((host) => host.name);
          child = hosts[0].spawn(["sleep", "60"], { stdout: "null", stderr: "null" });
          const inside = await hosts[0].run(["ip", "netns", "identify"], { timeout: 5_000 });
          assertEquals(inside.stdout.trim(), hosts[0].name);
          throw failure;
        });
      } catch (error) {
        thrown = error;
      }
      assertEquals(thrown, failure);
      assertEquals(names.length, 2);
      const status = await child!.status;
      assertEquals(status.signal, "SIGKILL");
      const after = await namespaces();
      assertEquals(names.filter((name) => after.includes(name)), []);
      assertEquals(await linkNames(), linksBefore);
    },
  );
});

Deno.test("runInNetns runs a command in a fresh private namespace", async (t) => {
  await t.step("the namespace has only lo, and lo is up", async () => {
    const output = await runInNetns(["ip", "-o", "link"], { timeout: 5_000 });
    assert(output.success, output.stderr);
    const lines = output.stdout.trim().split("\n");
    assertEquals(lines.length, 1);
    assert(/^1: lo: <[^>]*\bUP\b[^>]*>/.test(lines[0]), lines[0]);
  });

  await t.step("multicast is routed to lo", async () => {
    const output = await runInNetns(["ip", "route", "get", "224.0.0.251"], { timeout: 5_000 });
    assert(output.success, output.stderr);
    assert(/ dev lo /.test(output.stdout), output.stdout);
  });

  await t.step("a command that outlives its timeout is killed and reported", async () => {
    const output = await runInNetns(["sleep", "30"], { timeout: 300 });
    assertEquals([output.timedOut, output.success, output.signal], [true, false, "SIGKILL"]);
  });

  await t.step("env and cwd reach the command", async () => {
    const output = await runInNetns(["sh", "-c", 'printf "%s %s" "$NETNS_PROBE" "$PWD"'], {
      timeout: 5_000,
      env: { NETNS_PROBE: "hello" },
      cwd: "/tmp",
    });
    assertEquals(output.stdout, "hello /tmp");
  });
});

netnsTest("a netnsTest body receives its own multicast on loopback", async (t) => {
  await t.step("the body runs in a namespace with lo only", async () => {
    assertEquals(await linkNames(), ["lo"]);
  });

  await t.step("a socket joined to 224.0.0.251 on lo receives its own datagram", async () => {
    const conn = Deno.listenDatagram({
      transport: "udp",
      hostname: "0.0.0.0",
      port: 45_355,
      reuseAddress: true,
    });
    try {
      await conn.joinMulticastV4("224.0.0.251", "127.0.0.1");
      const payload = new TextEncoder().encode("loopback multicast");
      await conn.send(payload, { transport: "udp", hostname: "224.0.0.251", port: 45_355 });
      const timer = setTimeout(() => conn.close(), 3_000);
      const [data, from] = await conn.receive();
      clearTimeout(timer);
      assertEquals(decoder.decode(data), "loopback multicast");
      assertEquals((from as Deno.NetAddr).hostname, "127.0.0.1");
      assertEquals((from as Deno.NetAddr).port, 45_355);
    } finally {
      try {
        conn.close();
      } catch {
        // Closed by the timer.
      }
    }
  });
}, { file: import.meta.url, timeout: 20_000 });

Deno.test("netnsTest's outer run fails unless exactly one inner test passed", async (t) => {
  await t.step("a name that matches no test is reported as an error", async () => {
    let thrown: unknown;
    try {
      await runNetnsTest("no test has this name", { file: import.meta.url, timeout: 20_000 });
    } catch (error) {
      thrown = error;
    }
    assert(thrown instanceof NetnsTestError, String(thrown));
    assert(thrown.message.includes("passed 0 tests instead of exactly 1"), thrown.message);
  });

  await t.step("the summary of a run with one passed test is read", () => {
    assertEquals(
      parseTestSummary("x\nok | 1 passed (2 steps) | 0 failed | 3 filtered out (5ms)\n"),
      { ok: true, passed: 1, failed: 0, ignored: 0, filteredOut: 3 },
    );
  });

  await t.step("the summary of a run whose test was skipped shows it ignored", () => {
    assertEquals(
      parseTestSummary("ok | 0 passed | 0 failed | 1 ignored | 2 filtered out (7ms)"),
      { ok: true, passed: 0, failed: 0, ignored: 1, filteredOut: 2 },
    );
  });

  await t.step("the summary of a failed run is read as failed", () => {
    assertNotEquals(parseTestSummary("FAILED | 0 passed | 1 failed (9ms)")?.ok, true);
  });

  await t.step("output without a summary gives undefined", () => {
    assertEquals(parseTestSummary("error: Module not found"), undefined);
  });
});

Deno.test("startRootCapture sees traffic in the root namespace", async (t) => {
  await t.step("a unicast datagram over 127.0.0.1 is counted on lo both ways", async () => {
    const receiver = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const sender = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    let result: RootCaptureResult;
    try {
      const to = receiver.addr as Deno.NetAddr;
      const from = sender.addr as Deno.NetAddr;
      // Both ports are ephemeral, so concurrent runs never match each other's datagrams.
      const capture = await startRootCapture(`udp src port ${from.port} and dst port ${to.port}`);
      try {
        await sender.send(new TextEncoder().encode("control"), { ...to, transport: "udp" });
        const [data] = await receiver.receive();
        assertEquals(decoder.decode(data), "control");
      } finally {
        result = await capture.stop();
      }
    } finally {
      sender.close();
      receiver.close();
    }
    // On "any", a datagram over lo matches twice: going out and coming in. tcpdump may be
    // stopped before it has printed both, so the kernel's count is the one asserted.
    assertEquals(result.receivedByFilter, 2, result.stderr);
  });
});

Deno.test("isIsolatedNetns tells the harness's namespaces from the machine's", async (t) => {
  await t.step("the namespace of the test process is not isolated", async () => {
    assertEquals(await isIsolatedNetns(), false);
  });

  const check = `import { isIsolatedNetns } from ${JSON.stringify(MOD)};
console.log(await isIsolatedNetns());`;
  const deno = [Deno.execPath(), "eval", "--no-check", check];

  await t.step("a runInNetns namespace is isolated", async () => {
    const output = await runInNetns(deno, { timeout: 10_000 });
    assertEquals(output.stdout.trim(), "true", output.stderr);
  });

  await t.step("a simulated host is isolated", async () => {
    const output = await withHosts(1, ([host]) => host.run(deno, { timeout: 10_000 }));
    assertEquals(output.stdout.trim(), "true", output.stderr);
  });
});

Deno.test("cleanupStaleNamespaces removes the namespaces of dead processes only", async (t) => {
  const deadPid = await (async () => {
    const child = new Deno.Command("true").spawn();
    await child.status;
    return child.pid;
  })();
  // A prefix of this run's own, so that concurrent runs never clean up each other's fixtures.
  const prefix = `stale${Deno.pid}-`;
  const stale = `${prefix}${deadPid}-dead00-sw`;
  const live = `${prefix}${Deno.pid}-live00-sw`;
  await ip(["netns", "add", stale]);
  await ip(["netns", "add", live]);
  try {
    const removed = await cleanupStaleNamespaces(prefix);

    await t.step("the namespace named after a dead process is removed", async () => {
      assert(removed.includes(stale), JSON.stringify(removed));
      assert(!(await namespaces()).includes(stale));
    });

    await t.step("the namespace named after this live process is kept", async () => {
      assert(!removed.includes(live), JSON.stringify(removed));
      assert((await namespaces()).includes(live));
    });
  } finally {
    for (const name of [stale, live]) {
      if ((await namespaces()).includes(name)) await ip(["netns", "del", name]);
    }
  }
});
