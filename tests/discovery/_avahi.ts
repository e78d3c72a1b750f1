/**
 * avahi as a test peer on a simulated host (see `DESIGN.md`, "Real peers in tests"): a private
 * D-Bus system bus (`dbus-daemon --fork`, its socket in a temporary directory) and an
 * `avahi-daemon` with its own configuration, run as root without chroot, limited to the host's
 * `eth0`, IPv4 only. `avahi-publish` and `avahi-browse` talk to that daemon through
 * `DBUS_SYSTEM_BUS_ADDRESS`.
 *
 * avahi-daemon insists on `/run/avahi-daemon` for its pid file and socket. So that two daemons
 * (or a daemon of the machine) never collide and nothing is left in the real `/run`, the daemon
 * runs in a mount namespace of its own (`unshare --mount --propagation private`) with a fresh
 * tmpfs on `/run`, which vanishes with the process.
 *
 * Every process is stopped by pid ({@linkcode AvahiDaemon.stop}); the processes also live in the
 * host's network namespace, so the harness kills them if a test dies first.
 *
 * @module
 */

import type { SimHost } from "../netns/mod.ts";

/** Milliseconds since the Unix epoch, comparable with the agents' `t`. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

/** One line a process printed and when this process read it. */
export interface TimedLine {
  /** The line, without its newline. */
  line: string;
  /** When it was read (see {@linkcode now}). */
  t: number;
}

/** Reads the lines of a stream as they arrive and lets a caller wait for one. */
export class LineReader {
  /** Every line so far. */
  readonly lines: TimedLine[] = [];
  /** Resolves when the stream ended. */
  readonly done: Promise<void>;
  readonly #waiters = new Set<() => void>();
  #ended = false;

  /** Starts reading `stream`. */
  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      let buffer = "";
      try {
        for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
          const t = now();
          buffer += chunk;
          let newline: number;
          while ((newline = buffer.indexOf("\n")) >= 0) {
            if (this.lines.length < 100_000) this.lines.push({ line: buffer.slice(0, newline), t });
            buffer = buffer.slice(newline + 1);
          }
          this.#wake();
        }
      } catch {
        // Cancelled: keep what was read.
      }
      if (buffer !== "") this.lines.push({ line: buffer, t: now() });
      this.#ended = true;
      this.#wake();
    })();
  }

  /** All lines, joined. */
  text(): string {
    return this.lines.map((entry) => entry.line).join("\n");
  }

  /**
   * Resolves with the first line (seen or future) matching `match`; rejects when the stream ends
   * without one or after `timeoutMs`.
   */
  waitFor(match: (line: string) => boolean, timeoutMs: number, what: string): Promise<TimedLine> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.lines.find((entry) => match(entry.line));
        if (found === undefined && !this.#ended) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        if (found !== undefined) resolve(found);
        else reject(new Error(`The output ended without ${what}: ${this.text().slice(-2000)}`));
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(
          new Error(
            `Timed out after ${timeoutMs} ms waiting for ${what}: ${this.text().slice(-2000)}`,
          ),
        );
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

/** A running command on a simulated host whose output is read line by line. */
export interface AvahiProcess {
  /** The process (its pid is the tool's own: `setsid` and `ip netns exec` exec it). */
  readonly child: Deno.ChildProcess;
  /** Its standard output. */
  readonly stdout: LineReader;
  /** Its standard error. */
  readonly stderr: LineReader;
  /** Sends SIGTERM (then SIGKILL after 3 s) by pid and waits for the output to end. */
  stop(): Promise<void>;
}

/** A resolved service as `avahi-browse -p -r` prints it (an `=` line). */
export interface AvahiResolved {
  /** Interface name, e.g. `"eth0"`. */
  interface: string;
  /** `"IPv4"` or `"IPv6"`. */
  protocol: string;
  /** The instance label, unescaped. */
  name: string;
  /** The service type, e.g. `"_http._tcp"`. */
  type: string;
  /** The domain, e.g. `"local"`. */
  domain: string;
  /** The SRV target. */
  hostName: string;
  /** The address of the SRV target. */
  address: string;
  /** The SRV port. */
  port: number;
  /** The TXT entries, `key=value` or `key`. */
  txt: string[];
}

/**
 * Undoes avahi's escaping of a label in parseable output: `\.` and `\\` stand for themselves and
 * `\DDD` for the byte with that decimal value.
 */
export function unescapeAvahi(text: string): string {
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "\\" && /^\d{3}$/.test(text.slice(i + 1, i + 4))) {
      bytes.push(Number(text.slice(i + 1, i + 4)));
      i += 3;
    } else if (text[i] === "\\" && i + 1 < text.length) {
      bytes.push(...encoder.encode(text[i + 1]));
      i++;
    } else {
      bytes.push(...encoder.encode(text[i]));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** Parses an `=` line of `avahi-browse -p -r`; `undefined` for any other line. */
export function parseResolved(line: string): AvahiResolved | undefined {
  if (!line.startsWith("=;")) return undefined;
  // Fields are separated by ';'; the TXT field (last) may itself contain ';'.
  const fields = line.split(";");
  if (fields.length < 10) return undefined;
  const [, iface, protocol, name, type, domain, hostName, address, port] = fields;
  const txtField = fields.slice(9).join(";");
  const txt = [...txtField.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((match) =>
    match[1].replace(/\\(.)/g, "$1")
  );
  return {
    interface: iface,
    protocol,
    name: unescapeAvahi(name),
    type,
    domain,
    hostName,
    address,
    port: Number(port),
    txt,
  };
}

/** Options of {@linkcode startAvahi}. */
export interface StartAvahiOptions {
  /**
   * The daemon's host name (without `.local`).
   *
   * @default {`avahi-h` and the host's index}
   */
  hostName?: string;
  /**
   * Milliseconds to wait for "Server startup complete".
   *
   * @default {15000}
   */
  timeout?: number;
}

/** A private D-Bus and avahi-daemon running on one simulated host. */
export interface AvahiDaemon extends AsyncDisposable {
  /** The host the daemon runs on. */
  readonly host: SimHost;
  /** The host name the daemon announced, e.g. `"avahi-h1.local"`. */
  readonly hostName: string;
  /** `DBUS_SYSTEM_BUS_ADDRESS` for the avahi tools. */
  readonly env: Record<string, string>;
  /** The daemon's log (its standard error). */
  readonly log: LineReader;
  /**
   * Runs `avahi-publish -s NAME TYPE PORT TXT…` on the host and resolves once it printed
   * "Established under name" (on stderr); stop it with {@linkcode AvahiProcess.stop}.
   */
  publish(
    name: string,
    type: string,
    port: number,
    txt?: string[],
  ): Promise<AvahiProcess & { established: TimedLine }>;
  /** Starts `avahi-browse -p -k ARGS… TYPE` on the host. */
  browse(type: string, args: string[]): AvahiProcess;
  /** Runs `avahi-browse -rpkt TYPE` to its end (bounded by `timeoutMs`) and parses its `=` lines. */
  browseResolved(type: string, timeoutMs?: number): Promise<AvahiResolved[]>;
  /** Stops the tools started here, the daemon and the bus, by pid; removes the directory. */
  stop(): Promise<void>;
}

function spawnTool(host: SimHost, command: string[], env: Record<string, string>): AvahiProcess {
  const child = host.spawn(command, { env, stdout: "piped", stderr: "piped" });
  const stdout = new LineReader(child.stdout);
  const stderr = new LineReader(child.stderr);
  let exited = false;
  child.status.then(() => {
    exited = true;
  });
  return {
    child,
    stdout,
    stderr,
    async stop() {
      if (!exited) {
        try {
          Deno.kill(child.pid, "SIGTERM");
        } catch {
          // Already gone.
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          child.status,
          new Promise<void>((resolve) => {
            timer = setTimeout(() => {
              try {
                Deno.kill(child.pid, "SIGKILL");
              } catch {
                // Already gone.
              }
              resolve();
            }, 3_000);
          }),
        ]);
        clearTimeout(timer);
      }
      await child.status;
      await Promise.all([stdout.done, stderr.done]);
    },
  };
}

function dbusConfig(dir: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${dir}/bus</listen>
  <auth>EXTERNAL</auth>
  <pidfile>${dir}/dbus.pid</pidfile>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`;
}

function avahiConfig(hostName: string): string {
  return `[server]
host-name=${hostName}
use-ipv4=yes
use-ipv6=no
allow-interfaces=eth0
enable-dbus=yes

[publish]

[reflector]
enable-reflector=no

[wide-area]
enable-wide-area=no
`;
}

/**
 * Starts a private D-Bus and an avahi-daemon on `host`, resolving once the daemon reported
 * "Server startup complete" (its host name probed and announced).
 */
export async function startAvahi(
  host: SimHost,
  options: StartAvahiOptions = {},
): Promise<AvahiDaemon> {
  const hostName = options.hostName ?? `avahi-h${host.index}`;
  const timeout = options.timeout ?? 15_000;
  const dir = await Deno.makeTempDir({ prefix: "tsercom-avahi-" });
  const tools = new Set<AvahiProcess>();
  let dbusPid: number | undefined;
  let daemon: AvahiProcess | undefined;
  let busTool: AvahiProcess | undefined;

  async function stop(): Promise<void> {
    await Promise.all([...tools].map((tool) => tool.stop()));
    tools.clear();
    await daemon?.stop();
    if (dbusPid !== undefined) {
      try {
        Deno.kill(dbusPid, "SIGTERM");
      } catch {
        // Already gone.
      }
      for (let i = 0; i < 100 && pidAlive(dbusPid); i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      if (pidAlive(dbusPid)) {
        try {
          Deno.kill(dbusPid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      dbusPid = undefined;
    }
    await busTool?.stop();
    busTool = undefined;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }

  try {
    await Deno.writeTextFile(`${dir}/dbus.conf`, dbusConfig(dir));
    await Deno.writeTextFile(`${dir}/avahi-daemon.conf`, avahiConfig(hostName));
    // Not host.run: it kills the command's process group as soon as the leader exits, which
    // races with the forked bus before it leaves the group (setsid). The parent writes the pid
    // file and exits once the bus socket is listening.
    const bus = spawnTool(
      host,
      ["dbus-daemon", `--config-file=${dir}/dbus.conf`, "--fork", "--print-pid"],
      {},
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      bus.child.status,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), 10_000);
      }),
    ]);
    clearTimeout(timer);
    let pid = NaN;
    for (let i = 0; status?.success === true && !(pid > 0) && i < 100; i++) {
      pid = Number((await Deno.readTextFile(`${dir}/dbus.pid`).catch(() => "")).trim() || NaN);
      if (!(pid > 0)) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    if (status?.success !== true || !Number.isInteger(pid) || pid <= 0) {
      await bus.stop();
      throw new Error(
        `Cannot start dbus-daemon on ${host.name}: ${
          status === undefined ? "timed out" : `exit ${status.code}`
        }, pid file ${JSON.stringify(pid)}: ${bus.stdout.text()} ${bus.stderr.text()}`,
      );
    }
    busTool = bus; // Its pipes may stay open until the bus stops.
    dbusPid = pid;
    const env = { DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${dir}/bus` };
    daemon = spawnTool(host, [
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      'mount -t tmpfs tmpfs /run && exec avahi-daemon -f "$1" --no-drop-root --no-chroot ' +
      "--no-rlimits --no-proc-title",
      "sh",
      `${dir}/avahi-daemon.conf`,
    ], env);
    const log = daemon.stderr;
    await log.waitFor(
      (line) => line.startsWith("Server startup complete"),
      timeout,
      `avahi-daemon on ${host.name} to start`,
    );

    const self: AvahiDaemon = {
      host,
      hostName: `${hostName}.local`,
      env,
      log,
      async publish(name, type, port, txt = []) {
        const tool = spawnTool(
          host,
          ["avahi-publish", "-s", name, type, String(port), ...txt],
          env,
        );
        tools.add(tool);
        // avahi-publish prints its state changes on stderr.
        const established = await tool.stderr.waitFor(
          (line) => line.startsWith("Established under name"),
          10_000,
          `avahi-publish of ${JSON.stringify(name)} to be established`,
        ).catch((error) => {
          throw new Error(`${error.message}; stdout: ${tool.stdout.text()}`);
        });
        return { ...tool, established };
      },
      browse(type, args) {
        const tool = spawnTool(host, ["avahi-browse", "-p", "-k", ...args, type], env);
        tools.add(tool);
        return tool;
      },
      async browseResolved(type, timeoutMs = 10_000) {
        const output = await host.run(["avahi-browse", "-r", "-p", "-k", "-t", type], {
          env,
          timeout: timeoutMs,
        });
        if (!output.success) {
          throw new Error(
            `avahi-browse -rpkt ${type} failed (exit ${output.code}${
              output.timedOut ? ", timed out" : ""
            }): ${output.stdout} ${output.stderr}`,
          );
        }
        return output.stdout.split("\n").map(parseResolved).filter((entry) => entry !== undefined);
      },
      stop,
      [Symbol.asyncDispose]: stop,
    };
    return self;
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Whether `pid` runs (a zombie, which an init that does not reap may leave, counts as gone). */
function pidAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}
