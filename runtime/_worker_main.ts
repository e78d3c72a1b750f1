/**
 * The entry module of a runtime's Worker (private): it speaks the worker
 * protocol with {@linkcode WorkerRuntimeHost}, imports the initializer by
 * module URL and export name, runs the runtime, and sends its data in
 * batches under credit-based flow control (spec/runtime.md §16.2–16.7).
 *
 * Events from the parent are routed by the runtime's data handler; once a
 * batch is routed, its event credit goes back to the parent.
 *
 * Uncaught errors and unhandled rejections inside the worker are sent as
 * `error` messages (original class preserved) and do not kill the worker;
 * `Deno.exit()` and `self.close()` are intercepted to send an `error`
 * message with `exit` first.
 *
 * @module
 */

/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />

import {
  CreditWindow,
  encodeForTransfer,
  type EventItem,
  type Message,
  PROTOCOL_VERSION,
  type SerializedError,
  serializeError,
  validateMessage,
} from "./_worker_protocol.ts";
import { createRuntimeSide, type RuntimeSide } from "./_runtime_side.ts";
import type { SinkItem } from "./_data_handler.ts";
import { createRuntimeConfig } from "./runtime_config.ts";

const v = PROTOCOL_VERSION;
let nextId = 1;
const MAX_BATCH = 1024;

let side: RuntimeSide | undefined;
let window: CreditWindow | undefined;
let initialCredit = 0;
let batch: SinkItem[] = [];
let flushScheduled = false;
let lastEmit: Promise<unknown> = Promise.resolve();
let exiting = false;
let commands: Promise<void> = Promise.resolve();
const stats = { sent: 0, dropped: 0, rejected: 0, blocked: 0, maxBuffered: 0, maxUnacked: 0 };

function post(message: Message & Record<string, unknown>): void {
  const { transfer } = encodeForTransfer(message);
  self.postMessage(message, transfer);
}

function postError(error: unknown, extra: Record<string, unknown> = {}): void {
  try {
    post({ v, type: "error", id: nextId++, error: serializeError(error), ...extra });
  } catch {
    // nothing left to tell the parent with
  }
}

function flush(): void {
  flushScheduled = false;
  if (batch.length === 0) return;
  const items = batch;
  batch = [];
  stats.sent += items.length;
  post({ v, type: "data", id: nextId++, items, dropped: window?.dropped ?? 0 });
}

function noteBuffered(): void {
  const buffered = batch.length + (window?.pending ?? 0);
  if (buffered > stats.maxBuffered) stats.maxBuffered = buffered;
  const unacked = initialCredit - (window?.available ?? 0);
  if (unacked > stats.maxUnacked) stats.maxUnacked = unacked;
}

function enqueue(item: SinkItem): void {
  batch.push(item);
  noteBuffered();
  // Without credit left nothing more can be sent until the parent hears of
  // these: send them now. Otherwise wait a macrotask to batch more.
  if (batch.length >= MAX_BATCH || window!.available === 0) {
    flush();
  } else if (!flushScheduled) {
    flushScheduled = true;
    setTimeout(flush, 0);
  }
}

function sink(item: SinkItem): void | Promise<void> {
  const credits = window!;
  if (credits.tryAcquire(1)) {
    enqueue(item);
    return;
  }
  stats.blocked++;
  const acquired = credits.acquire(1);
  noteBuffered();
  const done = acquired.then((ok) => {
    if (ok) enqueue(item);
  });
  lastEmit = done.catch(() => {});
  return done;
}

async function init(message: Extract<Message, { type: "init" }>): Promise<void> {
  const config = message.config ?? createRuntimeConfig({ role: "server", delivery: "stream" });
  initialCredit = config.dataCapacity;
  window = new CreditWindow({
    initialCredit,
    overflow: config.dataOverflow,
    maxPending: initialCredit,
  });
  side = await createRuntimeSide({
    moduleUrl: message.moduleUrl,
    exportName: message.exportName,
    params: message.params,
    config,
    sink,
    reportError: (error) => postError(error),
  });
}

async function stop(reason: unknown): Promise<SerializedError | undefined> {
  let failure: SerializedError | undefined;
  try {
    await side?.stop(reason);
  } catch (error) {
    failure = serializeError(error);
  }
  await lastEmit;
  flush();
  return failure;
}

function deliverEvents(items: readonly EventItem[]): void {
  if (side === undefined) return;
  side.handler.deliver(items).then(
    () => post({ v, type: "credit", id: nextId++, channel: "events", credits: items.length }),
    (error) => postError(error),
  );
}

async function handle(message: Message): Promise<void> {
  const id = message.id;
  switch (message.type) {
    case "init":
      try {
        await init(message);
        post({ v, type: "ready", id });
      } catch (error) {
        post({ v, type: "init-failed", id, error: serializeError(error) });
      }
      return;
    case "start":
      try {
        await side!.runtime.start();
        post({ v, type: "started", id });
      } catch (error) {
        post({ v, type: "start-failed", id, error: serializeError(error) });
      }
      return;
    case "stop": {
      const error = await stop(message.reason);
      post({
        v,
        type: "stopped",
        id,
        stats: { ...stats, dropped: window?.dropped ?? 0, rejected: window?.rejected ?? 0 },
        events: side === undefined ? undefined : { ...side.handler.stats },
        ...(error === undefined ? {} : { error }),
      });
      return;
    }
    case "credit":
      if (message.channel === "data") window?.grant(message.credits);
      return;
    case "events":
      deliverEvents(message.items);
      return;
    case "heartbeat":
      post({ v, type: "heartbeat-ack", id });
      return;
    default:
      throw new TypeError(
        `Cannot handle the message as the runtime worker must get a command: got "${message.type}"`,
      );
  }
}

self.onmessage = (event: MessageEvent<unknown>) => {
  let message: Message;
  try {
    message = validateMessage(event.data);
  } catch (error) {
    postError(error);
    return;
  }
  if (message.type === "credit" || message.type === "heartbeat" || message.type === "events") {
    handle(message).catch((error) => postError(error));
    return;
  }
  // Commands run one after another, in the order they came.
  commands = commands.then(() => handle(message)).catch((error) => postError(error));
};

self.addEventListener("error", (event) => {
  event.preventDefault();
  postError(event.error ?? new Error(event.message));
});

self.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  postError(event.reason);
});

function announceExit(code: number | undefined, via: string): void {
  if (exiting) return;
  exiting = true;
  flush();
  postError(
    new Error(`The worker exited through ${via}${code === undefined ? "" : ` (code ${code})`}`),
    {
      exit: { code: code ?? 0, via },
    },
  );
}

const originalExit = Deno.exit;
Deno.exit = ((code?: number): never => {
  announceExit(code, "Deno.exit()");
  return originalExit(code);
}) as typeof Deno.exit;

const originalClose = self.close.bind(self);
self.close = () => {
  announceExit(undefined, "self.close()");
  originalClose();
};

self.addEventListener("unload", () => announceExit(undefined, "unload"));
