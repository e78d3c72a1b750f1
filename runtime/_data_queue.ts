/**
 * The parent's queue of data items from one runtime (private), shared by
 * both hosts: items go in as they arrive; the reader takes everything
 * queued as one batch and hands the batch's credit back once it is done
 * with it; the queue ends, or fails, once.
 *
 * @module
 */

/** A single-reader queue of data items with a graceful or failed end. */
export class DataQueue<T> {
  #items: T[] = [];
  #head = 0;
  #waiter: (() => void) | undefined;
  #end: { error?: unknown } | undefined;

  /** Whether {@linkcode DataQueue.end} was called. */
  get ended(): boolean {
    return this.#end !== undefined;
  }

  /** Queues one item (ignored once ended). */
  push(item: T): void {
    if (this.#end !== undefined) return;
    this.#items.push(item);
    this.#wake();
  }

  /** Queues items, in order (ignored once ended). */
  pushAll(items: readonly T[]): void {
    if (this.#end !== undefined) return;
    for (const item of items) this.#items.push(item);
    this.#wake();
  }

  /**
   * Ends the queue: the reader gets what is queued, then the end (or,
   * with an error, the error). Only the first call counts.
   *
   * @param error Why, when the data ends in failure.
   */
  end(error?: unknown): void {
    if (this.#end !== undefined) return;
    this.#end = error === undefined ? {} : { error };
    this.#wake();
  }

  /**
   * Everything queued, batch by batch, in order; `granted(n)` is called
   * with a batch's size once the reader asks for the next one.
   *
   * @param granted Returns a batch's credit.
   * @returns The batches.
   */
  async *batches(granted: (n: number) => void): AsyncGenerator<T[], void, undefined> {
    while (true) {
      if (this.#head < this.#items.length) {
        const batch = this.#head === 0 ? this.#items : this.#items.slice(this.#head);
        this.#items = [];
        this.#head = 0;
        yield batch;
        granted(batch.length);
        continue;
      }
      if (this.#end !== undefined) {
        if ("error" in this.#end) throw this.#end.error;
        return;
      }
      await new Promise<void>((resolve) => this.#waiter = resolve);
    }
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }
}
