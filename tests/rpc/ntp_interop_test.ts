/**
 * Interoperability of the SNTP code with real NTP implementations:
 *
 * - {@linkcode queryNtp} and {@linkcode TimeSyncClient} against a real `chronyd` (Debian package
 *   `chrony`) serving its local clock at stratum 8;
 * - Python's `ntplib` (Debian package `python3-ntplib`) against a {@linkcode TimeSyncServer} whose
 *   clock is shifted by a known amount.
 *
 * Each test runs in a private network namespace of its own (only `lo`, see `tests/netns/mod.ts`),
 * and all traffic goes to 127.0.0.1 inside it. chronyd always runs with `-x` (it never touches the
 * system clock), with a configuration, drift, pid and dump files in a temporary directory, and
 * with `-t` so that it exits by itself even if this process dies. Every child process runs in a
 * process group of its own that is killed when it is done or out of time.
 *
 * A missing peer fails the test with a message naming the Debian package to install (`.ci/run`
 * installs them).
 *
 * @module
 */

import { assert, assertEquals } from "../_assert.ts";
import { netnsTest } from "../netns/mod.ts";
import { deadline, delay } from "../../rpc/_async.ts";
import { NtpQueryError, type NtpSample, queryNtp } from "../../rpc/query_ntp.ts";
import { SystemClock } from "../../rpc/system_clock.ts";
import { TimeSyncClient } from "../../rpc/time_sync_client.ts";
import { TimeSyncServer } from "../../rpc/time_sync_server.ts";

/** The largest offset error accepted on loopback, in microseconds. */
const TOLERANCE_MICROS = 5_000;
/** The stratum chronyd is configured to serve its local clock at. */
const CHRONY_STRATUM = 8;
/** How long chronyd may take to answer its first valid reply. */
const CHRONY_READY_MS = 10_000;
/** chronyd exits by itself after this many seconds (`-t`), whatever happens to this process. */
const CHRONY_LIFETIME_S = 25;
/** Debian's Python, which sees the `python3-ntplib` package. */
const PYTHON = "/usr/bin/python3";

const decoder = new TextDecoder();

/** Sends `signal` to the process group led by `pid`; a group that is gone is not an error. */
function killGroup(pid: number, signal: Deno.Signal = "SIGKILL"): void {
  try {
    Deno.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

/** The path of the executable `name` in `PATH` or the sbin folders, or `undefined`. */
function findExecutable(name: string): string | undefined {
  const dirs = [
    ...(Deno.env.get("PATH") ?? "").split(":").filter((dir) => dir !== ""),
    "/usr/sbin",
    "/sbin",
    "/usr/bin",
  ];
  for (const dir of dirs) {
    const path = `${dir}/${name}`;
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not there.
    }
  }
  return undefined;
}

/** What a bounded child process produced. */
interface ProcessOutput {
  code: number;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/**
 * Runs `command` in a process group of its own (through `setsid`), kills the whole group after
 * `timeoutMs` or once the command has exited, and returns its output.
 */
async function runBounded(command: string[], timeoutMs: number): Promise<ProcessOutput> {
  const child = new Deno.Command("setsid", {
    args: command,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid);
  }, timeoutMs);
  try {
    const output = await child.output();
    return {
      code: output.code,
      timedOut,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
    killGroup(child.pid);
  }
}

/** A `chronyd` serving its local clock on 127.0.0.1, in a temporary directory of its own. */
class Chronyd implements AsyncDisposable {
  readonly port: number;
  readonly dir: string;
  readonly #child: Deno.ChildProcess;
  readonly #log: Promise<string>;
  #exited = false;
  #disposal: Promise<void> | undefined;

  private constructor(port: number, dir: string, child: Deno.ChildProcess) {
    this.port = port;
    this.dir = dir;
    this.#child = child;
    this.#log = new Response(child.stderr).text();
    child.status.then(() => {
      this.#exited = true;
    });
  }

  /** Writes the configuration and starts `chronyd -x -d` with it. */
  static async start(stratum: number): Promise<Chronyd> {
    const chronyd = findExecutable("chronyd");
    if (chronyd === undefined) {
      throw new Error(
        "Cannot run the chrony interoperability test as chronyd is not installed: " +
          "install the Debian package 'chrony' (apt-get install -y chrony)",
      );
    }
    const dir = await Deno.makeTempDir({ prefix: "tsercom-chrony-" });
    try {
      const port = freeUdpPort();
      const conf = `${dir}/chrony.conf`;
      await Deno.writeTextFile(
        conf,
        [
          `local stratum ${stratum}`,
          "allow 127.0.0.0/8",
          `port ${port}`,
          "bindaddress 127.0.0.1",
          // No command port and no Unix command socket (its default lives in /run/chrony).
          "cmdport 0",
          "bindcmdaddress /",
          `driftfile ${dir}/chrony.drift`,
          `pidfile ${dir}/chronyd.pid`,
          `dumpdir ${dir}`,
          `ntsdumpdir ${dir}`,
          `logdir ${dir}`,
          "",
        ].join("\n"),
      );
      // -x: never touch the system clock. -d: foreground, log to stderr. -4: IPv4 only.
      // -u root: no switch to the _chrony user, which could not write to the temporary directory.
      // -t: exit by itself after a bounded time.
      const child = new Deno.Command("setsid", {
        args: [
          chronyd,
          "-x",
          "-d",
          "-4",
          "-u",
          "root",
          "-t",
          String(CHRONY_LIFETIME_S),
          "-f",
          conf,
        ],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      return new Chronyd(port, dir, child);
    } catch (error) {
      await Deno.remove(dir, { recursive: true });
      throw error;
    }
  }

  /** chronyd's log (its standard error): resolves once chronyd has exited. */
  log(): Promise<string> {
    return this.#log;
  }

  /**
   * Queries chronyd until it gives a valid sample, for at most {@linkcode CHRONY_READY_MS}:
   * right after start it may not listen yet, or report an unsynchronised clock (leap 3).
   */
  async firstSample(): Promise<NtpSample> {
    const giveUp = Date.now() + CHRONY_READY_MS;
    let last: unknown;
    let attempts = 0;
    while (Date.now() < giveUp && !this.#exited) {
      attempts++;
      try {
        return await queryNtp("127.0.0.1", { port: this.port, timeoutMs: 250 });
      } catch (error) {
        if (!(error instanceof NtpQueryError)) throw error;
        last = error;
        // A timeout already waited 250 ms; an "unsynchronized" reply came at once.
        if (error.reason !== "timeout") await delay(100);
      }
    }
    const why = this.#exited
      ? `it exited; its log:\n${await this.#log}`
      : last instanceof Error
      ? last.message
      : String(last);
    throw new Error(
      `Cannot use chronyd on 127.0.0.1:${this.port} as it gave no valid reply in ${attempts} ` +
        `attempts within ${CHRONY_READY_MS} ms: ${why}`,
    );
  }

  /**
   * Stops chronyd (SIGTERM, then SIGKILL after 2 s) and removes its directory. Calling it again
   * returns the same promise.
   */
  [Symbol.asyncDispose](): Promise<void> {
    this.#disposal ??= this.#dispose();
    return this.#disposal;
  }

  async #dispose(): Promise<void> {
    try {
      if (!this.#exited) killGroup(this.#child.pid, "SIGTERM");
      const stopped = await deadline(this.#child.status, 2_000).then(() => true, () => false);
      if (!stopped) killGroup(this.#child.pid);
      await this.#child.status;
      killGroup(this.#child.pid);
      await this.#log;
    } finally {
      await Deno.remove(this.dir, { recursive: true });
    }
  }
}

/** A UDP port on 127.0.0.1 that was free a moment ago (nothing else runs in the namespace). */
function freeUdpPort(): number {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (conn.addr as Deno.NetAddr).port;
  conn.close();
  return port;
}

/** What ntplib's `NTPStats` reported for one request. */
interface NtplibResult {
  offset: number;
  delay: number;
  stratum: number;
  version: number;
  mode: number;
  leap: number;
}

/** The Python side: one `ntplib.NTPClient().request` per version given, one JSON line each. */
const NTPLIB_SCRIPT = `
import json, sys
try:
    import ntplib
except ImportError as error:
    sys.stderr.write("MISSING-NTPLIB %s\\n" % error)
    sys.exit(3)
port = int(sys.argv[1])
for version in sys.argv[2:]:
    r = ntplib.NTPClient().request("127.0.0.1", version=int(version), port=port, timeout=2)
    print(json.dumps({"offset": r.offset, "delay": r.delay, "stratum": r.stratum,
                      "version": r.version, "mode": r.mode, "leap": r.leap}))
`;

/** Has Python's ntplib query 127.0.0.1:`port` once per version, in a bounded child process. */
async function ntplibQuery(port: number, versions: number[]): Promise<NtplibResult[]> {
  try {
    Deno.statSync(PYTHON);
  } catch {
    throw new Error(
      `Cannot run the ntplib interoperability test as ${PYTHON} is missing: ` +
        "install the Debian packages 'python3' and 'python3-ntplib' " +
        "(apt-get install -y python3-ntplib)",
    );
  }
  const output = await runBounded(
    [PYTHON, "-c", NTPLIB_SCRIPT, String(port), ...versions.map(String)],
    10_000,
  );
  if (output.code === 3 && output.stderr.includes("MISSING-NTPLIB")) {
    throw new Error(
      "Cannot run the ntplib interoperability test as Python's ntplib is not installed: " +
        "install the Debian package 'python3-ntplib' (apt-get install -y python3-ntplib)",
    );
  }
  if (output.timedOut || output.code !== 0) {
    throw new Error(
      `Cannot query 127.0.0.1:${port} with ntplib as python3 ${
        output.timedOut ? "timed out" : `exited with code ${output.code}`
      }:\n${output.stderr}`,
    );
  }
  const lines = output.stdout.trim().split("\n");
  assertEquals(lines.length, versions.length, `ntplib printed: ${output.stdout}`);
  return lines.map((line) => JSON.parse(line) as NtplibResult);
}

netnsTest(
  "queryNtp and TimeSyncClient measure an offset near zero to a real chronyd",
  async (t) => {
    await using chronyd = await Chronyd.start(CHRONY_STRATUM);
    const first = await chronyd.firstSample();

    await t.step("chronyd's first valid reply reports stratum 8 in version 4", () => {
      assertEquals(first.stratum, CHRONY_STRATUM);
      assertEquals(first.version, 4);
      assertEquals(first.legacy, false);
    });

    await t.step("a version 4 query measures an offset within 5 ms of zero", async () => {
      const sample = await queryNtp("127.0.0.1", { port: chronyd.port, timeoutMs: 2_000 });
      assertEquals(sample.version, 4);
      assertEquals(sample.stratum, CHRONY_STRATUM);
      assertEquals(sample.legacy, false);
      assert(Math.abs(sample.offsetMicros) <= TOLERANCE_MICROS, `offset ${sample.offsetMicros} µs`);
      assert(sample.delayMicros >= 0, `delay ${sample.delayMicros} µs`);
      assert(Number.isSafeInteger(sample.offsetMicros) && Number.isSafeInteger(sample.delayMicros));
    });

    await t.step("a version 3 query is answered in version 3 with the same offset", async () => {
      const sample = await queryNtp("127.0.0.1", {
        port: chronyd.port,
        timeoutMs: 2_000,
        version: 3,
      });
      assertEquals(sample.version, 3);
      assertEquals(sample.stratum, CHRONY_STRATUM);
      assertEquals(sample.legacy, false);
      assert(Math.abs(sample.offsetMicros) <= TOLERANCE_MICROS, `offset ${sample.offsetMicros} µs`);
      assert(sample.delayMicros >= 0, `delay ${sample.delayMicros} µs`);
    });

    await t.step(
      "a TimeSyncClient's burst of 4 gives an estimate within 5 ms of zero",
      async () => {
        const local = new SystemClock();
        await using client = new TimeSyncClient("127.0.0.1", {
          port: chronyd.port,
          local,
          burst: 4,
          burstIntervalMs: 20,
          // No query after the burst while the step runs.
          periodMs: 60_000,
          timeoutMs: 2_000,
        });
        await deadline(client.ready, 5_000);
        assertEquals(client.counters, { queries: 4, samples: 4, failures: 0 });
        const samples = client.samples;
        assertEquals(samples.length, 4);
        for (const sample of samples) {
          assertEquals(sample.stratum, CHRONY_STRATUM);
          assertEquals(sample.version, 4);
          assertEquals(sample.legacy, false);
          assert(sample.delayMicros >= 0, `delay ${sample.delayMicros} µs`);
          assert(
            Math.abs(sample.offsetMicros) <= TOLERANCE_MICROS,
            `offset ${sample.offsetMicros} µs`,
          );
        }
        const offset = client.offsetMicros;
        assert(
          offset !== undefined && Math.abs(offset) <= TOLERANCE_MICROS,
          `estimate ${offset} µs`,
        );
        assertEquals(client.synchronized, true);
        const skew = client.clock.now() - local.now();
        assert(Math.abs(skew) <= TOLERANCE_MICROS, `clock skew ${skew} µs`);
      },
    );

    await t.step("chronyd ran without control of the system clock and exits cleanly", async () => {
      await chronyd[Symbol.asyncDispose]();
      const log = await chronyd.log();
      assert(log.includes("Disabled control of system clock"), `chronyd log:\n${log}`);
      assert(!log.includes("Fatal error"), `chronyd log:\n${log}`);
    });
  },
  { file: import.meta.url, timeout: 30_000 },
);

netnsTest("Python's ntplib measures a TimeSyncServer's known clock shift", async (t) => {
  const local = new SystemClock();

  for (const shiftMicros of [2_500_000, -1_750_000]) {
    const seconds = shiftMicros / 1_000_000;
    await t.step(
      `ntplib measures ${seconds > 0 ? "+" : ""}${seconds} s within 5 ms in versions 3 and 4`,
      async () => {
        const server = new TimeSyncServer({
          hostname: "127.0.0.1",
          port: 0,
          clock: { now: () => local.now() + shiftMicros },
        });
        let results: NtplibResult[];
        try {
          results = await ntplibQuery(server.port, [3, 4]);
        } finally {
          await server.close();
        }
        assertEquals(results.map((r) => r.version), [3, 4]);
        for (const r of results) {
          assertEquals(r.mode, 4);
          assertEquals(r.stratum, 1);
          assertEquals(r.leap, 0);
          const errorMicros = Math.round(r.offset * 1_000_000 - shiftMicros);
          assert(
            Math.abs(errorMicros) <= TOLERANCE_MICROS,
            `ntplib v${r.version} offset ${r.offset} s, wanted ${seconds} s (error ${errorMicros} µs)`,
          );
          assert(r.delay >= -0.000_1 && r.delay < 0.5, `ntplib v${r.version} delay ${r.delay} s`);
        }
        // Closing awaited the receive loop, so the counters are final.
        const { received, answered, truncated, notClient, badVersion, sendErrors } =
          server.counters;
        assertEquals(
          { received, answered, truncated, notClient, badVersion, sendErrors },
          { received: 2, answered: 2, truncated: 0, notClient: 0, badVersion: 0, sendErrors: 0 },
        );
      },
    );
  }
}, { file: import.meta.url, timeout: 30_000 });
