/**
 * Reads newline-terminated text from a child process's output, one line at
 * a time, each read with a deadline (test helper).
 *
 * @module
 */

/** Reads lines from a stream, one at a time, each with a deadline. */
export class Lines {
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  async next(timeout: number): Promise<string | undefined> {
    const deadline = Date.now() + timeout;
    while (!this.#buffer.includes("\n")) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const chunk = await Promise.race([
        this.#reader.read(),
        new Promise<"late">((resolve) => {
          timer = setTimeout(() => resolve("late"), Math.max(1, deadline - Date.now()));
        }),
      ]);
      clearTimeout(timer);
      if (chunk === "late" || chunk.done) return undefined;
      this.#buffer += chunk.value;
    }
    const end = this.#buffer.indexOf("\n");
    const line = this.#buffer.slice(0, end);
    this.#buffer = this.#buffer.slice(end + 1);
    return line;
  }

  /** Reads lines until one includes `text` (resolves to it) or the deadline passes. */
  async until(text: string, timeout: number): Promise<string | undefined> {
    const deadline = Date.now() + timeout;
    for (;;) {
      const line = await this.next(Math.max(1, deadline - Date.now()));
      if (line === undefined || line.includes(text)) return line;
    }
  }

  async json(timeout: number): Promise<Record<string, unknown> | undefined> {
    const line = await this.next(timeout);
    return line === undefined ? undefined : JSON.parse(line);
  }

  async close(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}
