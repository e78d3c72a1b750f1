/**
 * An agent process on a simulated host (test helper): it prints one JSON
 * event per line on stdout and reads one JSON command per line on stdin.
 *
 * @module
 */

import type { SimHost } from "./netns/mod.ts";

/** One event an agent printed; `t` is its time in ms, comparable across hosts. */
export interface AgentEvent {
  event: string;
  t: number;
  [key: string]: unknown;
}

/** A running agent. */
export interface AgentProcess {
  /** Every event so far, in order (a line that is not JSON is a `"garbage"` event). */
  readonly events: AgentEvent[];
  /** Sends a command. */
  send(command: Record<string, unknown>): Promise<void>;
  /** The first event, from the start, that `match` accepts. */
  waitFor(match: (e: AgentEvent) => boolean, timeoutMs: number, what: string): Promise<AgentEvent>;
  /** The next event after the last one `next` returned that `match` accepts. */
  next(match: (e: AgentEvent) => boolean, timeoutMs: number, what: string): Promise<AgentEvent>;
  /** Kills the agent (SIGKILL). */
  kill(): void;
  /** Asks the agent to exit, waits for it; resolves with its stderr (and how it failed, if it did). */
  exit(): Promise<string>;
}

/**
 * Starts `command` on `host` as an agent.
 *
 * @param host The simulated host.
 * @param command The command line.
 * @returns The agent.
 */
export function startAgent(host: SimHost, command: string[]): AgentProcess {
  const child = host.spawn(command, { stdin: "piped", stdout: "piped", stderr: "piped" });
  const events: AgentEvent[] = [];
  let stderr = "";
  const writer = child.stdin.getWriter();
  const reading = (async () => {
    let buffer = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline);
        try {
          events.push(JSON.parse(line));
        } catch {
          events.push({ event: "garbage", line, t: 0 });
        }
        buffer = buffer.slice(newline + 1);
      }
    }
  })();
  const erring = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  let seen = 0;
  async function find(
    from: () => number,
    match: (e: AgentEvent) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<[AgentEvent, number]> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const index = events.findIndex((e, i) => i >= from() && match(e));
      if (index >= 0) return [events[index], index];
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`no ${what} within ${timeoutMs} ms: ${JSON.stringify(events)} ${stderr}`);
  }
  return {
    events,
    send: (command) => writer.write(new TextEncoder().encode(JSON.stringify(command) + "\n")),
    async waitFor(match, timeoutMs, what) {
      return (await find(() => 0, match, timeoutMs, what))[0];
    },
    async next(match, timeoutMs, what) {
      const [event, index] = await find(() => seen, match, timeoutMs, what);
      seen = index + 1;
      return event;
    },
    kill() {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
    },
    async exit() {
      try {
        await writer.write(new TextEncoder().encode(JSON.stringify({ cmd: "exit" }) + "\n"));
        await writer.close();
      } catch {
        // gone
      }
      const status = await child.status;
      await Promise.all([reading, erring]);
      return status.success
        ? stderr
        : `${stderr}\n(exit code ${status.code}, signal ${status.signal})`;
    },
  };
}
