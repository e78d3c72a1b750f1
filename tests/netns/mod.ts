/**
 * Network-namespace harness for the test suite.
 *
 * Multicast must never leave the machine (see `DESIGN.md`, "Network safety"), so every test that
 * sends multicast runs inside network namespaces created here:
 *
 * - {@linkcode runInNetns} runs one command in a fresh private namespace whose only interface is
 *   `lo`, with multicast routed to it;
 * - {@linkcode netnsTest} registers a `Deno.test` whose body runs inside such a namespace (the
 *   test file is re-executed in it with a filter that selects exactly that test);
 * - {@linkcode withHosts} builds simulated hosts (`198.18.0.0/24`, RFC 2544) joined by a bridge
 *   that floods multicast, and tears everything down afterwards;
 * - {@linkcode startRootCapture} proves that nothing reached the machine's real interfaces;
 * - {@linkcode isIsolatedNetns} tells whether the current namespace is one of ours, so that
 *   senders can refuse to run anywhere else.
 *
 * Every child process is bounded in time: it runs in its own process group and the whole group is
 * killed on timeout or teardown.
 *
 * @module
 */

/** Environment variable set to `"1"` in the `deno test` process that {@linkcode netnsTest} starts. */
export const NETNS_INNER_ENV = "TSERCOM_NETNS_INNER";

/** Environment variable naming the one test the inner `deno test` process must register. */
const NETNS_TEST_ENV = "TSERCOM_NETNS_TEST";

/** The simulated hosts' subnet prefix (RFC 2544 benchmarking range); host `i` is `.(i + 1)`. */
const SIM_SUBNET = "198.18.0";

/** Most simulated hosts one {@linkcode withHosts} call builds. */
const MAX_HOSTS = 64;

/** Most bytes kept of one output stream of a child process; the rest is dropped. */
const MAX_OUTPUT_BYTES = 8 * 1024 * 1024;

/** How long the output pipes may stay open after the process group was killed. */
const PIPE_DRAIN_MS = 1_000;

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A setup or teardown command of the harness failed. */
export class NetnsError extends Error {
  /** Creates the error with a message saying which command failed and how. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NetnsError";
  }
}

/** The test run inside a namespace by {@linkcode netnsTest} did not pass exactly one test. */
export class NetnsTestError extends Error {
  /** Creates the error; the message carries the inner run's output. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NetnsTestError";
  }
}

/** What a command run by the harness produced. */
export interface NetnsOutput {
  /** Exit code; `128 + n` when killed by signal `n`. */
  code: number;
  /** The signal that ended the process, or `null`. */
  signal: Deno.Signal | null;
  /** `true` when the process exited with code 0. */
  success: boolean;
  /** `true` when the process group was killed because the timeout elapsed. */
  timedOut: boolean;
  /** Standard output, decoded as UTF-8 (at most 8 MiB kept). */
  stdout: string;
  /** Standard error, decoded as UTF-8 (at most 8 MiB kept). */
  stderr: string;
}

/** Options of {@linkcode runInNetns} and {@linkcode SimHost.run}. */
export interface NetnsRunOptions {
  /**
   * Milliseconds after which the command's whole process group is killed (SIGKILL).
   *
   * @default {10000}
   */
  timeout?: number;
  /**
   * Environment variables added to the inherited environment.
   *
   * @default {{}}
   */
  env?: Record<string, string>;
  /**
   * Working directory of the command.
   *
   * @default {Deno.cwd()}
   */
  cwd?: string | URL;
  /**
   * Text written to the command's standard input (which is closed afterwards); without it the
   * command reads from `/dev/null`.
   *
   * @default {undefined}
   */
  stdin?: string;
  /**
   * Aborting kills the command's whole process group.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

function validateCommand(what: string, command: string[]): void {
  if (
    !Array.isArray(command) || command.length === 0 ||
    !command.every((part) => typeof part === "string")
  ) {
    throw new TypeError(
      `Cannot ${what} as 'command' must be a non-empty array of strings: current value is ${
        JSON.stringify(command)
      }`,
    );
  }
}

function validateTimeout(what: string, timeout: number): void {
  if (!Number.isInteger(timeout) || timeout <= 0 || timeout > 600_000) {
    throw new RangeError(
      `Cannot ${what} as 'timeout' must be an integer number of milliseconds in 1..600000: ` +
        `current value is ${timeout}`,
    );
  }
}

/** Sends `signal` to the process group led by `pid`; a group that is gone is not an error. */
function killGroup(pid: number, signal: Deno.Signal = "SIGKILL"): void {
  try {
    Deno.kill(-pid, signal);
  } catch {
    // The group has already exited.
  }
}

/** Resolves to what `promise` resolves to, or to `late` once `ms` milliseconds have passed. */
async function raceTimeout<T, F>(promise: Promise<T>, ms: number, late: F): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<F>((resolve) => {
        timer = setTimeout(() => resolve(late), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

interface Collector {
  /** Waits (at most `ms`) for the stream to end, then cancels it; resolves to the text read. */
  finish(ms: number): Promise<string>;
  /** The text read so far. */
  text(): string;
}

function collect(stream: ReadableStream<Uint8Array>): Collector {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const done = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (size < MAX_OUTPUT_BYTES) {
          const kept = value.subarray(0, MAX_OUTPUT_BYTES - size);
          chunks.push(kept);
          size += kept.length;
        }
      }
    } catch {
      // Cancelled or broken pipe: keep what was read.
    }
  })();
  function text(): string {
    const all = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
      all.set(chunk, offset);
      offset += chunk.length;
    }
    return decoder.decode(all);
  }
  return {
    async finish(ms: number): Promise<string> {
      const late = await raceTimeout(done.then(() => false), ms, true);
      if (late) {
        await reader.cancel().catch(() => {});
        await done;
      }
      return text();
    },
    text,
  };
}

/**
 * Runs `command` in its own process group (through `setsid`), collects its output and kills the
 * whole group on timeout, on abort, and once the leader has exited (so nothing outlives the call).
 */
async function runBounded(
  command: string[],
  options: NetnsRunOptions,
): Promise<NetnsOutput> {
  const timeout = options.timeout ?? 10_000;
  const child = new Deno.Command("setsid", {
    args: command,
    env: options.env,
    cwd: options.cwd,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid);
  }, timeout);
  function onAbort(): void {
    killGroup(child.pid);
  }
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  let status: Deno.CommandStatus;
  try {
    if (options.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(encoder.encode(options.stdin)).catch(() => {});
      await writer.close().catch(() => {});
    }
    status = await child.status;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
  }
  // Children the leader left behind in its group would keep the pipes open.
  killGroup(child.pid);
  const [out, err] = await Promise.all([
    stdout.finish(PIPE_DRAIN_MS),
    stderr.finish(PIPE_DRAIN_MS),
  ]);
  return {
    code: status.code,
    signal: status.signal,
    success: status.success,
    timedOut,
    stdout: out,
    stderr: err,
  };
}

/** Runs `ip` with `args` (and optional batch input) and throws {@linkcode NetnsError} on failure. */
async function ip(args: string[], batch?: string): Promise<string> {
  const output = await runBounded(["ip", ...args], { timeout: 10_000, stdin: batch });
  if (!output.success) {
    throw new NetnsError(
      `Cannot run 'ip ${args.join(" ")}' as it ${
        output.timedOut ? "timed out" : `exited with code ${output.code}`
      }: ${output.stderr.trim()}${batch === undefined ? "" : `\nbatch:\n${batch}`}`,
    );
  }
  return output.stdout;
}

/**
 * Runs `command` inside a fresh private network namespace (`unshare --net`) whose only interface
 * is `lo`, brought up, with `224.0.0.0/4` routed to it (source `127.0.0.1`), and returns what it
 * printed. The namespace disappears with the command's last process. The command's whole process
 * group is killed on timeout.
 *
 * @example Listing the interfaces of a private namespace
 * ```ts ignore
 * const output = await runInNetns(["ip", "-o", "link"], { timeout: 5_000 });
 * console.log(output.stdout); // only "1: lo: <LOOPBACK,UP,LOWER_UP> ..."
 * ```
 */
export async function runInNetns(
  command: string[],
  options: NetnsRunOptions = {},
): Promise<NetnsOutput> {
  validateCommand("run a command in a network namespace", command);
  validateTimeout("run a command in a network namespace", options.timeout ?? 10_000);
  const setup = 'ip link set lo up && ip route add 224.0.0.0/4 dev lo src 127.0.0.1 && exec "$@"';
  return await runBounded(
    ["unshare", "--net", "--", "sh", "-c", setup, "sh", ...command],
    options,
  );
}

/** The totals of a `deno test` run, read from its final `ok | … passed | … failed` line. */
export interface TestSummary {
  /** `true` for a final line starting with `ok`, `false` for `FAILED`. */
  ok: boolean;
  /** Tests that passed. */
  passed: number;
  /** Tests that failed. */
  failed: number;
  /** Tests that were ignored (skipped). */
  ignored: number;
  /** Tests that the filter left out. */
  filteredOut: number;
}

/**
 * Reads the summary line of `deno test` output (colours allowed), or `undefined` if there is none.
 *
 * @example
 * ```ts ignore
 * parseTestSummary("ok | 1 passed (2 steps) | 0 failed | 3 filtered out (5ms)");
 * // { ok: true, passed: 1, failed: 0, ignored: 0, filteredOut: 3 }
 * ```
 */
export function parseTestSummary(output: string): TestSummary | undefined {
  const plain = output.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g"), "");
  const line =
    /^(ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed(?: \(\d+ steps?\))?(?: \| (\d+) ignored(?: \(\d+ steps?\))?)?(?: \| (\d+) filtered out)?/gm;
  let last: RegExpExecArray | undefined;
  for (const match of plain.matchAll(line)) last = match;
  if (last === undefined) return undefined;
  return {
    ok: last[1] === "ok",
    passed: Number(last[2]),
    failed: Number(last[3]),
    ignored: Number(last[4] ?? 0),
    filteredOut: Number(last[5] ?? 0),
  };
}

/** Options of {@linkcode netnsTest} and {@linkcode runNetnsTest}. */
export interface NetnsTestOptions {
  /** The test file that registers the test: pass `import.meta.url`. */
  file: string | URL;
  /**
   * Milliseconds the inner `deno test` run may take before its process group is killed.
   *
   * @default {30000}
   */
  timeout?: number;
  /**
   * Skip the test (the outer test is ignored; nothing runs in a namespace).
   *
   * @default {false}
   */
  ignore?: boolean;
  /**
   * Check that the inner test body finishes its async operations (see `Deno.TestDefinition`).
   *
   * @default {true}
   */
  sanitizeOps?: boolean;
  /**
   * Check that the inner test body closes its resources (see `Deno.TestDefinition`).
   *
   * @default {true}
   */
  sanitizeResources?: boolean;
}

function isInnerRun(): boolean {
  try {
    return Deno.env.get(NETNS_INNER_ENV) === "1";
  } catch {
    return false;
  }
}

function innerTestName(): string | undefined {
  try {
    return Deno.env.get(NETNS_TEST_ENV);
  } catch {
    return undefined;
  }
}

function escapeRegex(text: string): string {
  return text.replace(/[\\^$.|?*+()[\]{}]/g, "\\$&");
}

function toPath(file: string | URL): string {
  const url = file instanceof URL ? file : URL.canParse(file) ? new URL(file) : undefined;
  if (url === undefined) return String(file);
  if (url.protocol !== "file:") {
    throw new TypeError(
      `Cannot run a test file in a network namespace as 'file' must be a file: URL or a path: ` +
        `current value is ${String(file)}`,
    );
  }
  return decodeURIComponent(url.pathname);
}

function findConfig(path: string): string | undefined {
  let dir = path.slice(0, path.lastIndexOf("/"));
  for (let depth = 0; depth < 64 && dir !== ""; depth++) {
    for (const name of ["deno.json", "deno.jsonc"]) {
      try {
        if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
      } catch {
        // Not here; look further up.
      }
    }
    dir = dir.slice(0, dir.lastIndexOf("/"));
  }
  return undefined;
}

/**
 * Runs the test called `name` of `options.file` in a fresh private namespace: `deno test -A
 * --no-check --filter /^name$/ <file>` through {@linkcode runInNetns}, with
 * {@linkcode NETNS_INNER_ENV} set. Type checking is left to the outer run. Resolves when the inner
 * run passed exactly one test; otherwise rejects with {@linkcode NetnsTestError} carrying the
 * inner output (a filter that matches nothing, a skipped test or a failure all reject).
 *
 * @example
 * ```ts ignore
 * await runNetnsTest("loopback multicast works", { file: import.meta.url });
 * ```
 */
export async function runNetnsTest(name: string, options: NetnsTestOptions): Promise<void> {
  if (typeof name !== "string" || name === "") {
    throw new TypeError(
      `Cannot run a test in a network namespace as 'name' must be a non-empty string: ` +
        `current value is ${JSON.stringify(name)}`,
    );
  }
  const timeout = options.timeout ?? 30_000;
  validateTimeout("run a test in a network namespace", timeout);
  const path = toPath(options.file);
  const config = findConfig(path);
  const command = [
    Deno.execPath(),
    "test",
    "-A",
    "--unstable-net",
    "--no-check",
    ...(config === undefined ? [] : ["--config", config]),
    "--filter",
    `/^${escapeRegex(name)}$/`,
    path,
  ];
  const output = await runInNetns(command, {
    timeout,
    env: { [NETNS_INNER_ENV]: "1", [NETNS_TEST_ENV]: name, NO_COLOR: "1" },
  });
  const summary = parseTestSummary(output.stdout);
  let problem: string | undefined;
  if (output.timedOut) problem = `timed out after ${timeout} ms and was killed`;
  else if (summary === undefined) problem = `printed no summary (exit code ${output.code})`;
  else if (!output.success || !summary.ok || summary.failed !== 0) problem = "failed";
  else if (summary.ignored !== 0) problem = "skipped the test";
  else if (summary.passed !== 1) problem = `passed ${summary.passed} tests instead of exactly 1`;
  if (problem !== undefined) {
    throw new NetnsTestError(
      `The test ${JSON.stringify(name)} of ${path} run in a network namespace ${problem}\n` +
        `--- inner stdout ---\n${output.stdout}\n--- inner stderr ---\n${output.stderr}`,
    );
  }
}

/**
 * Registers a `Deno.test` whose body `fn` runs inside a fresh private network namespace (only
 * `lo`, up, with multicast routed to it).
 *
 * In the test process itself, the registered test re-executes `options.file` with a filter that
 * selects this test only (see {@linkcode runNetnsTest}) and passes when that inner run passed
 * exactly one test. Inside the namespace ({@linkcode NETNS_INNER_ENV} is `"1"`) the real test is
 * registered; it first checks that the namespace is isolated (see {@linkcode isIsolatedNetns}).
 * Test names must be unique within the file.
 *
 * @example A test body that runs in a private namespace
 * ```ts ignore
 * netnsTest("loopback multicast reaches its own socket", async (t) => {
 *   await t.step("the namespace has only lo", async () => {});
 * }, { file: import.meta.url });
 * ```
 */
export function netnsTest(
  name: string,
  fn: (t: Deno.TestContext) => void | Promise<void>,
  options: NetnsTestOptions,
): void {
  if (typeof fn !== "function") {
    throw new TypeError(
      `Cannot register a network-namespace test as 'fn' must be a function: current value is ${
        String(fn)
      }`,
    );
  }
  if (isInnerRun()) {
    if (innerTestName() !== name) return;
    Deno.test({
      name,
      ignore: options.ignore ?? false,
      sanitizeOps: options.sanitizeOps ?? true,
      sanitizeResources: options.sanitizeResources ?? true,
      async fn(t) {
        const reason = await isolationProblem();
        if (reason !== undefined) {
          throw new NetnsError(
            `Cannot run ${JSON.stringify(name)} as ${NETNS_INNER_ENV}=1 but the network ` +
              `namespace is not isolated: ${reason}`,
          );
        }
        await fn(t);
      },
    });
    return;
  }
  const path = toPath(options.file);
  Deno.test({
    name,
    ignore: options.ignore ?? false,
    async fn() {
      await runNetnsTest(name, { ...options, file: path });
    },
  });
}

interface IpLink {
  ifname: string;
  link_type?: string;
  linkinfo?: { info_kind?: string };
}

interface IpAddrs {
  ifname: string;
  addr_info?: { family: string; local: string }[];
}

async function isolationProblem(): Promise<string | undefined> {
  let links: IpLink[];
  let addrs: IpAddrs[];
  let defaults: unknown[];
  try {
    links = JSON.parse(await ip(["-j", "-d", "link", "show"]));
    addrs = JSON.parse(await ip(["-j", "-4", "addr", "show"]));
    defaults = [
      ...JSON.parse(await ip(["-j", "-4", "route", "show", "default"]) || "[]"),
      ...JSON.parse(await ip(["-j", "-6", "route", "show", "default"]) || "[]"),
    ];
  } catch (error) {
    return `cannot inspect it: ${error instanceof Error ? error.message : String(error)}`;
  }
  for (const link of links) {
    const kind = link.linkinfo?.info_kind;
    if (link.link_type !== "loopback" && kind !== "veth" && kind !== "bridge") {
      return `interface ${link.ifname} is neither loopback, veth nor bridge`;
    }
  }
  for (const entry of addrs) {
    for (const addr of entry.addr_info ?? []) {
      if (
        addr.family === "inet" && !addr.local.startsWith("127.") &&
        !addr.local.startsWith(`${SIM_SUBNET}.`)
      ) {
        return `interface ${entry.ifname} has address ${addr.local}, outside 127.0.0.0/8 and ` +
          `${SIM_SUBNET}.0/24`;
      }
    }
  }
  if (defaults.length > 0) return "it has a default route";
  return undefined;
}

/**
 * Tells whether the current network namespace looks like one made by this harness: every
 * interface is loopback, veth or bridge, every IPv4 address lies in `127.0.0.0/8` or
 * `198.18.0.0/24`, and there is no default route. The machine's real namespace fails this test,
 * so senders of multicast call it and refuse to send when it is `false`.
 *
 * @example
 * ```ts ignore
 * if (!(await isIsolatedNetns())) throw new Error("refusing to send multicast here");
 * ```
 */
export async function isIsolatedNetns(): Promise<boolean> {
  return (await isolationProblem()) === undefined;
}

/** Options of {@linkcode SimHost.spawn}. */
export interface SimHostSpawnOptions {
  /**
   * Environment variables added to the inherited environment.
   *
   * @default {{}}
   */
  env?: Record<string, string>;
  /**
   * Working directory of the command.
   *
   * @default {Deno.cwd()}
   */
  cwd?: string | URL;
  /**
   * Standard input of the command.
   *
   * @default {"null"}
   */
  stdin?: "piped" | "inherit" | "null";
  /**
   * Standard output of the command.
   *
   * @default {"piped"}
   */
  stdout?: "piped" | "inherit" | "null";
  /**
   * Standard error of the command.
   *
   * @default {"piped"}
   */
  stderr?: "piped" | "inherit" | "null";
}

/** A simulated host made by {@linkcode withHosts}: a network namespace with one `eth0`. */
export interface SimHost {
  /** The network namespace's name (for `ip netns exec`). */
  readonly name: string;
  /** The IPv4 address of `eth0`: `198.18.0.(index + 1)`. */
  readonly address: string;
  /** Position of the host, from 0. */
  readonly index: number;
  /** Runs `command` in the host's namespace and collects its output (bounded by a timeout). */
  run(command: string[], options?: NetnsRunOptions): Promise<NetnsOutput>;
  /**
   * Starts `command` in the host's namespace, in its own process group; the harness kills the
   * group when {@linkcode withHosts} ends.
   */
  spawn(command: string[], options?: SimHostSpawnOptions): Deno.ChildProcess;
}

/** Options of {@linkcode withHosts}. */
export interface WithHostsOptions {
  /**
   * Prefix of the namespace names; names are `<prefix><pid>-<random>-h<i>` and
   * `<prefix><pid>-<random>-sw`.
   *
   * @default {"tsc-"}
   */
  prefix?: string;
}

interface Spawned {
  child: Deno.ChildProcess;
  exited: boolean;
  /** The child's piped output streams. */
  pipes(): ReadableStream<Uint8Array>[];
}

function randomTag(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(3));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function validatePrefix(what: string, prefix: string): void {
  if (typeof prefix !== "string" || !/^[a-z][a-z0-9]{0,11}-$/.test(prefix)) {
    throw new TypeError(
      `Cannot ${what} as 'prefix' must be 1 to 12 lowercase letters or digits followed by '-': ` +
        `current value is ${JSON.stringify(prefix)}`,
    );
  }
}

async function namespaceNames(): Promise<string[]> {
  const list = await ip(["netns", "list"]);
  return list.split("\n").map((line) => line.trim().split(" ")[0]).filter((name) => name !== "");
}

/** Kills every process inside the named namespaces. */
async function killNamespaceProcesses(names: string[]): Promise<void> {
  for (const name of names) {
    const output = await runBounded(["ip", "netns", "pids", name], { timeout: 5_000 });
    for (const pid of output.stdout.split(/\s+/).filter((word) => /^\d+$/.test(word))) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
}

/** Deletes the named namespaces (which destroys their interfaces), ignoring missing ones. */
async function deleteNamespaces(names: string[]): Promise<void> {
  if (names.length === 0) return;
  await killNamespaceProcesses(names);
  await runBounded(["ip", "-force", "-batch", "-"], {
    timeout: 10_000,
    stdin: names.map((name) => `netns del ${name}\n`).join(""),
  });
}

function pidAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Deletes namespaces left by earlier runs that crashed: those named `<prefix><pid>-…` whose
 * creating process `<pid>` no longer exists (their processes are killed first). Namespaces of
 * live processes, this one included, are kept. Resolves to the names deleted.
 *
 * @example
 * ```ts ignore
 * const removed = await cleanupStaleNamespaces("tsc-");
 * ```
 */
export async function cleanupStaleNamespaces(prefix = "tsc-"): Promise<string[]> {
  validatePrefix("clean up stale network namespaces", prefix);
  const stale = (await namespaceNames()).filter((name) => {
    if (!name.startsWith(prefix)) return false;
    const pid = /^(\d+)-/.exec(name.slice(prefix.length))?.[1];
    return pid !== undefined && !pidAlive(Number(pid));
  });
  await deleteNamespaces(stale);
  return stale;
}

/**
 * Builds `count` simulated hosts joined by one switch, calls `fn` with them and tears everything
 * down afterwards, also when `fn` throws or leaves processes running.
 *
 * Each host is a network namespace with `lo` up and `eth0` at `198.18.0.(i + 1)/24`, with
 * `224.0.0.0/4` routed to `eth0`. The switch is one more namespace holding a Linux bridge with
 * multicast snooping off, so multicast floods to every host. Veth pairs are created directly
 * inside the namespaces: nothing is created in the caller's namespace. Namespaces left by crashed
 * earlier runs are removed first (see {@linkcode cleanupStaleNamespaces}).
 *
 * @example Two hosts on one switch
 * ```ts ignore
 * await withHosts(2, async ([a, b]) => {
 *   const route = await a.run(["ip", "route", "get", b.address]);
 *   console.log(route.stdout); // "198.18.0.2 dev eth0 src 198.18.0.1 ..."
 * });
 * ```
 */
export async function withHosts<T>(
  count: number,
  fn: (hosts: SimHost[]) => T | Promise<T>,
  options: WithHostsOptions = {},
): Promise<T> {
  if (!Number.isInteger(count) || count < 1 || count > MAX_HOSTS) {
    throw new RangeError(
      `Cannot build simulated hosts as 'count' must be an integer in 1..${MAX_HOSTS}: ` +
        `current value is ${count}`,
    );
  }
  const prefix = options.prefix ?? "tsc-";
  validatePrefix("build simulated hosts", prefix);
  await cleanupStaleNamespaces(prefix);

  const base = `${prefix}${Deno.pid}-${randomTag()}`;
  const switchName = `${base}-sw`;
  const hostNames = Array.from({ length: count }, (_, i) => `${base}-h${i}`);
  const created = [switchName, ...hostNames];
  const spawned = new Set<Spawned>();

  let result: T;
  try {
    await ip(
      ["-batch", "-"],
      [
        ...created.map((name) => `netns add ${name}`),
        ...hostNames.map((host, i) =>
          `link add eth0 netns ${host} type veth peer name p${i} netns ${switchName}`
        ),
      ].join("\n") + "\n",
    );
    await ip(
      ["-n", switchName, "-batch", "-"],
      [
        "link add br0 type bridge mcast_snooping 0 stp_state 0",
        "link set br0 up",
        ...hostNames.flatMap((_, i) => [`link set p${i} master br0`, `link set p${i} up`]),
      ].join("\n") + "\n",
    );
    await Promise.all(hostNames.map((host, i) =>
      ip(
        ["-n", host, "-batch", "-"],
        [
          `addr add ${SIM_SUBNET}.${i + 1}/24 dev eth0`,
          "link set lo up",
          "link set eth0 up",
          "route add 224.0.0.0/4 dev eth0",
        ].join("\n") + "\n",
      )
    ));

    const hosts: SimHost[] = hostNames.map((name, index) => ({
      name,
      index,
      address: `${SIM_SUBNET}.${index + 1}`,
      run(command: string[], runOptions: NetnsRunOptions = {}): Promise<NetnsOutput> {
        validateCommand(`run a command on ${name}`, command);
        validateTimeout(`run a command on ${name}`, runOptions.timeout ?? 10_000);
        return runBounded(["ip", "netns", "exec", name, ...command], runOptions);
      },
      spawn(command: string[], spawnOptions: SimHostSpawnOptions = {}): Deno.ChildProcess {
        validateCommand(`spawn a command on ${name}`, command);
        const child = new Deno.Command("setsid", {
          args: ["ip", "netns", "exec", name, ...command],
          env: spawnOptions.env,
          cwd: spawnOptions.cwd,
          stdin: spawnOptions.stdin ?? "null",
          stdout: spawnOptions.stdout ?? "piped",
          stderr: spawnOptions.stderr ?? "piped",
        }).spawn();
        const stdout = spawnOptions.stdout ?? "piped";
        const stderr = spawnOptions.stderr ?? "piped";
        const entry: Spawned = {
          child,
          exited: false,
          pipes: () => [
            ...(stdout === "piped" ? [child.stdout] : []),
            ...(stderr === "piped" ? [child.stderr] : []),
          ],
        };
        spawned.add(entry);
        child.status.then(() => {
          entry.exited = true;
        });
        return child;
      },
    }));
    result = await fn(hosts);
  } finally {
    await teardown(created, spawned);
  }
  return result;
}

async function teardown(names: string[], spawned: Set<Spawned>): Promise<void> {
  const problems: string[] = [];
  await Promise.all([...spawned].map(async (entry) => {
    try {
      if (!entry.exited) killGroup(entry.child.pid);
      const exited = await raceTimeout(entry.child.status.then(() => true), 5_000, false);
      if (!exited) problems.push(`process ${entry.child.pid} did not exit after SIGKILL`);
      for (const stream of entry.pipes()) {
        if (!stream.locked) await stream.cancel().catch(() => {});
      }
    } catch (error) {
      problems.push(error instanceof Error ? error.message : String(error));
    }
  }));
  try {
    await deleteNamespaces(names);
    const left = (await namespaceNames()).filter((name) => names.includes(name));
    if (left.length > 0) problems.push(`namespaces ${left.join(", ")} are still listed`);
  } catch (error) {
    problems.push(error instanceof Error ? error.message : String(error));
  }
  if (problems.length > 0) {
    throw new NetnsError(`Cannot tear down simulated hosts: ${problems.join("; ")}`);
  }
}

/** Options of {@linkcode startRootCapture}. */
export interface RootCaptureOptions {
  /**
   * Milliseconds to wait for tcpdump to report that it is listening.
   *
   * @default {5000}
   */
  timeout?: number;
  /**
   * Interface to capture on.
   *
   * @default {"any"}
   */
  interface?: string;
}

/** What {@linkcode RootCapture.stop} reports. */
export interface RootCaptureResult {
  /** Packets tcpdump captured and printed (its "N packets captured" line). */
  captured: number;
  /**
   * Packets the kernel's capture filter matched (its "N packets received by filter" line). This
   * also counts packets tcpdump had not yet read when it was stopped, so it is the number to
   * check when proving that nothing was sent.
   */
  receivedByFilter: number;
  /** tcpdump's packet lines. */
  stdout: string;
  /** tcpdump's messages, including its statistics. */
  stderr: string;
}

/** A running tcpdump capture in the caller's (normally the machine's real) network namespace. */
export interface RootCapture {
  /** Stops tcpdump (SIGINT, then SIGKILL after 3 s) and reports what it captured. */
  stop(): Promise<RootCaptureResult>;
}

/**
 * Starts `tcpdump --immediate-mode -i any -n -p -l -c 1000 <filter>` in the caller's network namespace and resolves
 * once tcpdump reports that it is listening, so that whatever is sent afterwards is seen. Use it
 * to prove that traffic of a test stayed inside its namespaces.
 *
 * @example
 * ```ts ignore
 * const capture = await startRootCapture("udp port 45353");
 * // ... send multicast between simulated hosts ...
 * const { captured } = await capture.stop(); // 0
 * ```
 */
export async function startRootCapture(
  filter: string,
  options: RootCaptureOptions = {},
): Promise<RootCapture> {
  if (typeof filter !== "string" || filter.trim() === "") {
    throw new TypeError(
      `Cannot start a capture as 'filter' must be a non-empty pcap filter: current value is ${
        JSON.stringify(filter)
      }`,
    );
  }
  const timeout = options.timeout ?? 5_000;
  validateTimeout("start a capture", timeout);
  const child = new Deno.Command("setsid", {
    args: [
      "tcpdump",
      "--immediate-mode",
      "-i",
      options.interface ?? "any",
      "-n",
      "-p",
      "-l",
      "-c",
      "1000",
      filter,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  let exited = false;
  child.status.then(() => {
    exited = true;
  });
  const deadline = Date.now() + timeout;
  while (!stderr.text().includes("listening on") && !exited && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  if (!stderr.text().includes("listening on")) {
    killGroup(child.pid);
    await child.status;
    const err = await stderr.finish(PIPE_DRAIN_MS);
    await stdout.finish(PIPE_DRAIN_MS);
    throw new NetnsError(
      `Cannot start tcpdump with filter ${JSON.stringify(filter)} as it did not report ` +
        `'listening on' within ${timeout} ms: ${err.trim()}`,
    );
  }
  return {
    async stop(): Promise<RootCaptureResult> {
      if (!exited) killGroup(child.pid, "SIGINT");
      const stopped = await raceTimeout(child.status.then(() => true), 3_000, false);
      if (!stopped) {
        killGroup(child.pid);
        await child.status;
      }
      const [out, err] = await Promise.all([
        stdout.finish(PIPE_DRAIN_MS),
        stderr.finish(PIPE_DRAIN_MS),
      ]);
      const captured = /(\d+) packets? captured/.exec(err)?.[1];
      const receivedByFilter = /(\d+) packets? received by filter/.exec(err)?.[1];
      if (captured === undefined || receivedByFilter === undefined) {
        throw new NetnsError(
          `Cannot read the packet counts of tcpdump as its output lacks the 'packets captured' ` +
            `or 'packets received by filter' line: ${err.trim()}`,
        );
      }
      return {
        captured: Number(captured),
        receivedByFilter: Number(receivedByFilter),
        stdout: out,
        stderr: err,
      };
    },
  };
}
