/**
 * The demo's live dashboard (private to the demo): a small HTTP server on the
 * loopback interface that serves one page, the uPlot chart library, and a
 * Server-Sent Events stream of the demo's {@linkcode DemoEvent}s.
 *
 * The page, its script and its style sheet (`examples/dashboard/`) and
 * uPlot's browser build (`npm:uplot`) are imported as text, so they are part
 * of the module graph: the dashboard reads no file at run time and needs only
 * `--allow-net` for its listening address (`--allow-net=127.0.0.1` by
 * default).
 *
 * @example Serve the dashboard and relay the demo's events to it
 * ```ts
 * import { startDashboard } from "./_dashboard.ts";
 *
 * await using dashboard = await startDashboard();
 * console.log(`Dashboard on ${dashboard.url}`);
 * dashboard.publish({ type: "started", sandbox: "netns", sources: 2, at: Date.now() });
 * ```
 *
 * @module
 */

import type { DemoEvent } from "./_demo_protocol.ts";
export type { DemoEvent, DemoSandbox, PeerState, PeerSummary } from "./_demo_protocol.ts";
import pageHtml from "./dashboard/index.html" with { type: "text" };
import appJs from "./dashboard/app.js" with { type: "text" };
import styleCss from "./dashboard/style.css" with { type: "text" };
import uplotJs from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "text" };

/** Options of {@linkcode startDashboard}. */
export interface DashboardOptions {
  /**
   * The address to listen on. Keep the loopback address unless the page
   * must be reachable from other machines.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The TCP port to listen on; `0` picks a free one (read it from
   * {@linkcode Dashboard.url}).
   *
   * @default {0}
   */
  port?: number;
  /**
   * Closes the dashboard when aborted, as {@linkcode Dashboard.close} does.
   * An already aborted signal makes {@linkcode startDashboard} reject with
   * its reason.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * How many bytes of events may wait for one browser that reads slowly.
   * Events published while a browser's backlog is over this limit are
   * dropped for that browser (and counted in {@linkcode Dashboard.dropped});
   * once it catches up it gets the latest state again, then the live
   * events. Memory per browser is thus bounded by about this much plus one
   * event.
   *
   * @default {1048576}
   */
  maxBufferedBytes?: number;
  /**
   * Milliseconds between the comment lines sent to every browser so that
   * idle connections stay open through proxies and are noticed when dead.
   *
   * @default {15000}
   */
  heartbeatMs?: number;
}

/** Options of {@linkcode Dashboard.waitForClients}. */
export interface WaitForClientsOptions {
  /**
   * Stops waiting (the promise rejects with the signal's reason) when
   * aborted.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * A running dashboard, made by {@linkcode startDashboard}. Close it with
 * {@linkcode Dashboard.close} or `await using`.
 */
export interface Dashboard extends AsyncDisposable {
  /** The page's address, e.g. `http://127.0.0.1:40123/`. */
  readonly url: string;
  /**
   * Sends an event to every connected browser and remembers what a browser
   * that connects later needs to catch up: the latest `"started"` (and a
   * `"stopped"` after it), the latest `"summary"`, each peer's latest
   * `"peer"` event, each peer's latest `"depth"` frame and the last few
   * `"error"`s. IMU events are only relayed. Does nothing once closed.
   *
   * @param event The event, as the demo's runtimes reported it.
   */
  publish(event: DemoEvent): void;
  /**
   * Ends every event stream and stops the server. The streams are cut off
   * (a browser sees its connection end, and `EventSource` retries), so that
   * a browser that stopped reading cannot keep the server waiting.
   * Idempotent: later calls return the same promise.
   */
  close(): Promise<void>;
  /** How many browsers (event streams) are connected now. */
  readonly clients: number;
  /**
   * How many events were dropped for browsers that read too slowly, in all
   * (see {@linkcode DashboardOptions.maxBufferedBytes}).
   */
  readonly dropped: number;
  /**
   * Resolves once at least `count` browsers are connected (at once, if they
   * already are); rejects if the dashboard closes first or the signal is
   * aborted.
   *
   * @param count How many connected browsers to wait for.
   * @param options Cancellation.
   */
  waitForClients(count: number, options?: WaitForClientsOptions): Promise<void>;
}

/** The events a browser that connects late gets first, in order. */
interface Snapshot {
  started?: DemoEvent & { type: "started" };
  stopped?: DemoEvent & { type: "stopped" };
  summary?: DemoEvent & { type: "summary" };
  peers: Map<string, DemoEvent & { type: "peer" }>;
  depth: Map<string, DemoEvent & { type: "depth" }>;
  errors: (DemoEvent & { type: "error" })[];
}

/** One connected browser. */
interface Client {
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** Events were dropped: send the snapshot again before the next event. */
  behind: boolean;
  closed: boolean;
}

/** A pending {@linkcode Dashboard.waitForClients}. */
interface ClientWaiter {
  count: number;
  resolve: () => void;
  reject: (reason: unknown) => void;
}

/** How many `"error"` events a late browser gets. */
const KEPT_ERRORS = 20;

const encoder = new TextEncoder();

const STATIC_HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
};

/**
 * Everything the page loads comes from this server; uPlot sets inline
 * styles, and the page's icon is an empty data URL.
 */
const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
  "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; " +
  "frame-ancestors 'none'";

const ASSETS: Record<string, { body: string; type: string }> = {
  "/": { body: pageHtml, type: "text/html; charset=utf-8" },
  "/app.js": { body: appJs, type: "text/javascript; charset=utf-8" },
  "/style.css": { body: styleCss, type: "text/css; charset=utf-8" },
  "/uplot.js": { body: uplotJs, type: "text/javascript; charset=utf-8" },
  "/uplot.css": { body: uplotCss, type: "text/css; charset=utf-8" },
};

/**
 * Starts the dashboard's HTTP server.
 *
 * Routes: `GET /` (the page), `/app.js`, `/style.css`, `/uplot.js` and
 * `/uplot.css` (uPlot's browser build from `npm:uplot`), and `/events`, a
 * `text/event-stream` that first replays the latest state (see
 * {@linkcode Dashboard.publish}) and then carries every published event as
 * one `data: <json>` line, with a comment line as heartbeat. Anything else
 * is a 404.
 *
 * Needs `--allow-net=<hostname>` (by default `--allow-net=127.0.0.1`) and
 * no other permission.
 *
 * @example Start on a free loopback port and close
 * ```ts
 * import { startDashboard } from "./_dashboard.ts";
 *
 * const dashboard = await startDashboard({ port: 0 });
 * console.log(dashboard.url); // http://127.0.0.1:<port>/
 * await dashboard.close();
 * ```
 *
 * @param options Where to listen, cancellation and flow-control limits.
 * @returns The running dashboard.
 * @throws {RangeError} If an option is out of range.
 * @throws {TypeError} If `hostname` is not a non-empty string.
 */
// deno-lint-ignore require-await -- async so that every failure, validation included, rejects
export async function startDashboard(options: DashboardOptions = {}): Promise<Dashboard> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 0;
  const maxBufferedBytes = options.maxBufferedBytes ?? 1 << 20;
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const signal = options.signal;
  if (typeof hostname !== "string" || hostname.length === 0) {
    throw new TypeError(
      `Cannot start the dashboard as 'hostname' must be a non-empty string: current value is ${
        JSON.stringify(hostname)
      }`,
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `Cannot start the dashboard as 'port' must be an integer in 0..65535: current value is ${port}`,
    );
  }
  if (!Number.isInteger(maxBufferedBytes) || maxBufferedBytes < 1) {
    throw new RangeError(
      `Cannot start the dashboard as 'maxBufferedBytes' must be a positive integer: current value is ${maxBufferedBytes}`,
    );
  }
  if (!Number.isFinite(heartbeatMs) || heartbeatMs <= 0) {
    throw new RangeError(
      `Cannot start the dashboard as 'heartbeatMs' must be a positive number: current value is ${heartbeatMs}`,
    );
  }
  signal?.throwIfAborted();

  const snapshot: Snapshot = { peers: new Map(), depth: new Map(), errors: [] };
  const clients = new Set<Client>();
  const waiters = new Set<ClientWaiter>();
  let dropped = 0;
  let closing: Promise<void> | undefined;

  function send(client: Client, bytes: Uint8Array): void {
    try {
      client.controller.enqueue(bytes);
    } catch {
      // The stream was cancelled between two checks; its cancel hook removes it.
      client.closed = true;
    }
  }

  function sendSnapshot(client: Client): void {
    for (const event of snapshotEvents(snapshot)) send(client, frame(event));
  }

  function removeClient(client: Client): void {
    client.closed = true;
    clients.delete(client);
  }

  function openEventStream(): Response {
    let client!: Client;
    const body = new ReadableStream<Uint8Array>(
      {
        start(controller) {
          client = { controller, behind: false, closed: false };
          clients.add(client);
          send(client, encoder.encode("retry: 2000\n\n"));
          sendSnapshot(client);
          for (const waiter of waiters) {
            if (clients.size >= waiter.count) {
              waiters.delete(waiter);
              waiter.resolve();
            }
          }
        },
        cancel() {
          removeClient(client);
        },
      },
      new ByteLengthQueuingStrategy({ highWaterMark: maxBufferedBytes }),
    );
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  function handle(request: Request): Response {
    const { pathname } = new URL(request.url);
    const known = pathname === "/events" || Object.hasOwn(ASSETS, pathname);
    if (!known) return new Response("Not found\n", { status: 404, headers: STATIC_HEADERS });
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method not allowed\n", {
        status: 405,
        headers: { ...STATIC_HEADERS, allow: "GET, HEAD" },
      });
    }
    if (pathname === "/events") {
      if (request.method === "HEAD") {
        return new Response(null, {
          headers: { ...STATIC_HEADERS, "content-type": "text/event-stream; charset=utf-8" },
        });
      }
      if (closing !== undefined) {
        return new Response("Dashboard closed\n", { status: 503, headers: STATIC_HEADERS });
      }
      return openEventStream();
    }
    const asset = ASSETS[pathname];
    const headers: Record<string, string> = { ...STATIC_HEADERS, "content-type": asset.type };
    if (pathname === "/") headers["content-security-policy"] = PAGE_CSP;
    return new Response(request.method === "HEAD" ? null : asset.body, { headers });
  }

  // Aborting the server's own signal, unlike its graceful shutdown, also
  // cuts connections with a write pending to a browser that stopped reading.
  const stopServer = new AbortController();
  const server = Deno.serve(
    { hostname, port, signal: stopServer.signal, onListen() {}, onError },
    handle,
  );
  const address = server.addr as Deno.NetAddr;
  const url = `http://${urlHost(hostname)}:${address.port}/`;

  const heartbeat = setInterval(() => {
    const bytes = encoder.encode(`: heartbeat ${Date.now()}\n\n`);
    for (const client of clients) {
      if (!client.closed && (client.controller.desiredSize ?? 0) > 0) send(client, bytes);
    }
  }, heartbeatMs);

  function onAbort(): void {
    void close();
  }
  signal?.addEventListener("abort", onAbort, { once: true });

  function publish(event: DemoEvent): void {
    if (closing !== undefined) return;
    const kept = remember(snapshot, event);
    if (clients.size === 0) return;
    const bytes = frame(event);
    for (const client of clients) {
      if (client.closed) continue;
      const room = client.controller.desiredSize ?? 0;
      if (client.behind) {
        // Catch up with the latest state once the backlog has drained.
        if (room < maxBufferedBytes / 2) {
          dropped++;
          continue;
        }
        client.behind = false;
        sendSnapshot(client);
        if (!kept) send(client, bytes);
      } else if (room <= 0) {
        client.behind = true;
        dropped++;
      } else {
        send(client, bytes);
      }
    }
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      signal?.removeEventListener("abort", onAbort);
      clearInterval(heartbeat);
      for (const waiter of waiters) {
        waiter.reject(new Error("The dashboard closed before enough browsers connected"));
      }
      waiters.clear();
      // The streams are cut, not ended gracefully: a graceful end (and
      // Deno's graceful shutdown) would wait for every byte to reach a
      // browser that may have stopped reading.
      for (const client of [...clients]) {
        removeClient(client);
        try {
          client.controller.error(STREAM_CLOSED);
        } catch {
          // Already cancelled by the browser.
        }
      }
      stopServer.abort();
      await server.finished;
    })();
    return closing;
  }

  function waitForClients(count: number, waitOptions: WaitForClientsOptions = {}): Promise<void> {
    if (!Number.isInteger(count) || count < 0) {
      return Promise.reject(
        new RangeError(
          `Cannot wait for browsers as 'count' must be a non-negative integer: current value is ${count}`,
        ),
      );
    }
    const waitSignal = waitOptions.signal;
    if (waitSignal?.aborted) return Promise.reject(waitSignal.reason);
    if (clients.size >= count) return Promise.resolve();
    if (closing !== undefined) {
      return Promise.reject(new Error("The dashboard is closed"));
    }
    return new Promise<void>((resolve, reject) => {
      function onWaitAbort(): void {
        waiters.delete(waiter);
        reject(waitSignal!.reason);
      }
      const waiter: ClientWaiter = {
        count,
        resolve() {
          waitSignal?.removeEventListener("abort", onWaitAbort);
          resolve();
        },
        reject(reason) {
          waitSignal?.removeEventListener("abort", onWaitAbort);
          reject(reason);
        },
      };
      waiters.add(waiter);
      waitSignal?.addEventListener("abort", onWaitAbort, { once: true });
    });
  }

  return {
    url,
    publish,
    close,
    waitForClients,
    get clients() {
      return clients.size;
    },
    get dropped() {
      return dropped;
    },
    [Symbol.asyncDispose]: close,
  };
}

/** Ends the event streams when the dashboard closes (and is not reported as an error). */
const STREAM_CLOSED = new Error("The dashboard closed");

/** Reports unexpected errors of the server; the streams' own end is not one. */
function onError(error: unknown): Response {
  if (error !== STREAM_CLOSED) console.error("tsercom dashboard:", error);
  return new Response("Internal server error\n", { status: 500, headers: STATIC_HEADERS });
}

/** One event as an SSE message. JSON has no raw newlines, so one `data:` line suffices. */
function frame(event: DemoEvent): Uint8Array {
  return encoder.encode(`data: ${JSON.stringify(event)}\n\n`);
}

/**
 * Updates what a late browser needs with one event; `true` if the snapshot
 * now holds the event itself.
 */
function remember(snapshot: Snapshot, event: DemoEvent): boolean {
  switch (event.type) {
    case "started":
      // New runtimes: what came before belongs to the previous run.
      snapshot.started = event;
      snapshot.stopped = undefined;
      snapshot.summary = undefined;
      snapshot.peers.clear();
      snapshot.depth.clear();
      snapshot.errors.length = 0;
      return true;
    case "stopped":
      snapshot.stopped = event;
      return true;
    case "summary":
      snapshot.summary = event;
      // The summary supersedes older per-peer transitions.
      for (const [id, peerEvent] of snapshot.peers) {
        if (peerEvent.at <= event.at) snapshot.peers.delete(id);
      }
      return true;
    case "peer":
      if (typeof event.peer?.id !== "string") return false;
      // Older than the latest summary (which holds every peer): nothing to keep.
      if (snapshot.summary !== undefined && event.at < snapshot.summary.at) return true;
      snapshot.peers.set(event.peer.id, event);
      return true;
    case "depth":
      if (typeof event.peer !== "string") return false;
      snapshot.depth.set(event.peer, event);
      return true;
    case "error":
      snapshot.errors.push(event);
      if (snapshot.errors.length > KEPT_ERRORS) snapshot.errors.shift();
      return true;
    default:
      return false;
  }
}

/** What a late browser gets first, oldest state first. */
function* snapshotEvents(snapshot: Snapshot): Generator<DemoEvent> {
  if (snapshot.started) yield snapshot.started;
  if (snapshot.summary) yield snapshot.summary;
  yield* snapshot.peers.values();
  yield* snapshot.errors;
  yield* snapshot.depth.values();
  if (snapshot.stopped) yield snapshot.stopped;
}

/** The host part of the page's URL for a listening address. */
function urlHost(hostname: string): string {
  if (hostname === "0.0.0.0") return "127.0.0.1";
  if (hostname === "::" || hostname === "[::]") return "[::1]";
  return hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname;
}
