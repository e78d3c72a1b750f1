/**
 * The agent's side of `startAgent` (tests/_agent_process.ts) (test helper): one JSON event
 * per line on stdout, one JSON command per line on stdin.
 *
 * @module
 */

/** Prints one event, stamped `t` with milliseconds since the Unix epoch. */
export function emit(event: Record<string, unknown>): void {
  console.log(JSON.stringify({ ...event, t: performance.timeOrigin + performance.now() }));
}

/** The commands sent on stdin, one JSON object per non-empty line, until stdin closes. */
export async function* commands(): AsyncIterable<Record<string, unknown>> {
  let buffer = "";
  for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    let newline: number;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line !== "") yield JSON.parse(line);
    }
  }
}
