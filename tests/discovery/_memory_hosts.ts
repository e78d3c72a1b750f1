/**
 * Simulated mDNS hosts on an in-memory link, driven by one manual scheduler (for unit tests of
 * the public discovery API: no sockets, no real time).
 *
 * @module
 */

import { ManualScheduler } from "../../rpc/scheduler.ts";
import { MdnsEngine } from "../../discovery/mdns/_engine.ts";
import { MemoryNetwork } from "../../discovery/mdns/_memory_transport.ts";
import { type Mdns, wrapEngine } from "../../discovery/mdns.ts";

/** A link, its clock, and a way to let time pass with deliveries in between. */
export class MemoryLink {
  readonly scheduler = new ManualScheduler();
  readonly network = new MemoryNetwork();
  readonly #engines: MdnsEngine[] = [];
  #seed = 1;

  /** A host at `address` (advertising `addresses`, default `[address]`). */
  host(address: string, addresses?: string[]): Mdns {
    const seed = this.#seed++;
    let state = seed * 7919;
    const engine = new MdnsEngine({
      transport: this.network.transport(address, { addresses }),
      scheduler: this.scheduler,
      random: () => (state = (state * 48271) % 2147483647) / 2147483647,
      hostLabel: `host-${seed}`,
      addressPollMs: 0,
    });
    this.#engines.push(engine);
    return wrapEngine(engine);
  }

  /** Lets `ms` milliseconds pass in 10 ms steps, running deliveries and callbacks in between. */
  async run(ms: number): Promise<void> {
    for (let t = 0; t < ms; t += 10) {
      this.scheduler.advance(Math.min(10, ms - t));
      for (let k = 0; k < 30; k++) await Promise.resolve();
    }
  }

  /** Runs time until `promise` settles (at most `limitMs`), and returns it. */
  async until<T>(promise: Promise<T>, limitMs = 10_000): Promise<T> {
    let done = false;
    promise.then(() => done = true, () => done = true);
    for (let t = 0; t < limitMs && !done; t += 10) await this.run(10);
    return promise;
  }

  /** Closes every host, letting goodbyes go out. */
  async close(): Promise<void> {
    await this.until(Promise.all(this.#engines.map((engine) => engine.close())));
  }
}
