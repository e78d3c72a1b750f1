/**
 * Drives `_agent.ts` processes on simulated hosts from a test: send commands, wait for events.
 *
 * @module
 */

import type { SimHost } from "../netns/mod.ts";

const AGENT = new URL("./_agent.ts", import.meta.url).pathname;

/** One event an agent printed. */
export interface AgentEvent {
  event: string;
  ref?: string;
  t: number;
  [key: string]: unknown;
}

/** A running agent. */
export interface Agent {
  /** Every event so far, in order. */
  readonly events: AgentEvent[];
  /** Sends one command. */
  send(command: Record<string, unknown>): Promise<void>;
  /** Resolves with the first event (already seen or future) matching `match`; rejects after `timeoutMs`. */
  waitFor(
    match: (event: AgentEvent) => boolean,
    timeoutMs: number,
    what?: string,
  ): Promise<AgentEvent>;
  /** Asks the agent to exit (goodbyes), waits for it, returns its stderr. */
  exit(): Promise<string>;
}

/** Starts an agent on `host`; with `shared`, its publishers and listeners share one participant. */
export async function startAgent(
  host: SimHost,
  options: { shared?: boolean } = {},
): Promise<Agent> {
  const child = host.spawn(
    [
      Deno.execPath(),
      "run",
      "-A",
      "--no-check",
      "--unstable-net",
      AGENT,
      ...(options.shared ? ["--shared"] : []),
    ],
    { stdin: "piped", stdout: "piped", stderr: "piped" },
  );
  const events: AgentEvent[] = [];
  const waiters = new Set<() => void>();
  const writer = child.stdin.getWriter();
  const encoder = new TextEncoder();
  let stderr = "";
  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      if (stderr.length < 1_000_000) stderr += chunk;
    }
  })();
  const stdoutDone = (async () => {
    let buffer = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        try {
          events.push(JSON.parse(line));
        } catch {
          events.push({ event: "garbage", line, t: 0 });
        }
        for (const waiter of [...waiters]) waiter();
      }
    }
  })();

  const agent: Agent = {
    events,
    async send(command) {
      await writer.write(encoder.encode(JSON.stringify(command) + "\n"));
    },
    waitFor(match, timeoutMs, what = "an event") {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = events.find(match);
          if (found !== undefined) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(found);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `Timed out after ${timeoutMs} ms waiting for ${what} on ${host.name}; events: ${
                JSON.stringify(events.slice(-20))
              }; stderr: ${stderr.slice(-2000)}`,
            ),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async exit() {
      try {
        await agent.send({ cmd: "exit" });
        await writer.close();
      } catch {
        // Already gone.
      }
      const status = await child.status;
      await Promise.all([stdoutDone, stderrDone]);
      if (!status.success) stderr += `\n(exit code ${status.code})`;
      return stderr;
    },
  };
  await agent.waitFor((e) => e.event === "ready", 20_000, "the agent to start");
  return agent;
}
