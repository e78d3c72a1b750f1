/**
 * The runtime side of a host (private), the same in a Worker and on the
 * caller's thread: imports the initializer, builds the
 * {@linkcode RuntimeContext} (data handler, emit, channel factory, error
 * route), creates the runtime, and stops it in the right order.
 *
 * @module
 */

import { DataHandler, type SinkItem } from "./_data_handler.ts";
import type { Runtime, RuntimeContext, RuntimeInitializer } from "./runtime.ts";
import type { RuntimeConfig } from "./runtime_config.ts";

/** What {@linkcode createRuntimeSide} needs. */
export interface RuntimeSideOptions {
  /** The module that exports the initializer. */
  moduleUrl: string;
  /** The export's name. */
  exportName: string;
  /** The clonable params. */
  params: unknown;
  /** The runtime's configuration. */
  config: RuntimeConfig;
  /** The host's flow-controlled data channel. */
  sink(item: SinkItem): void | Promise<void>;
  /** Where background failures go (the watcher). */
  reportError(error: unknown): void;
}

/** A created runtime with its handler. */
export interface RuntimeSide {
  /** The user's runtime. */
  readonly runtime: Runtime;
  /** Its data handler (events in, data out). */
  readonly handler: DataHandler;
  /**
   * Stops it: aborts the context's signal, awaits the runtime's `stop`,
   * closes the handler. Rejects with the runtime's stop error (the handler
   * is closed either way).
   */
  stop(reason: unknown): Promise<void>;
  /** Gives up on it: aborts the context's signal and closes the handler, without `stop`. */
  abandon(reason: unknown): void;
}

/**
 * Imports the initializer and creates the runtime.
 *
 * @param options Where it is, its config, and the host's channels.
 * @returns The runtime side.
 * @throws {TypeError} When the export is not a function or returns no runtime.
 * @throws {unknown} The import's or the initializer's error (or the time
 * server's bind error).
 */
export async function createRuntimeSide(options: RuntimeSideOptions): Promise<RuntimeSide> {
  const { moduleUrl, exportName, params, config, sink, reportError } = options;
  const module = await import(moduleUrl);
  const initializer: unknown = module[exportName];
  if (typeof initializer !== "function") {
    throw new TypeError(
      `Cannot initialize the runtime as export '${exportName}' of ${moduleUrl} must be a function: current value is ${typeof initializer}`,
    );
  }
  const handler = new DataHandler({ config, sink, onError: reportError });
  const abort = new AbortController();
  const context: RuntimeContext<unknown, unknown> = {
    emit(value, timestamp) {
      if (config.delivery === "aggregator") {
        throw new TypeError(
          "Cannot emit data without a caller as the runtime must deliver to a stream: it delivers to an aggregator (use dataHandler.registerCaller(...).processData)",
        );
      }
      if (!Number.isSafeInteger(timestamp)) {
        throw new TypeError(
          `Cannot emit the data as 'timestamp' must be a safe integer (microseconds): current value is ${
            String(timestamp)
          }`,
        );
      }
      return sink({ value, timestamp });
    },
    params,
    signal: abort.signal,
    role: config.role,
    dataHandler: handler,
    get timeServerPort() {
      return handler.timeServerPort;
    },
    async connectChannel(addresses, port, connectOptions = {}) {
      // Loaded on first use: most runtimes never open a channel, and grpc-js is large.
      const { connectChannel } = await import("../rpc/channel_factory.ts");
      return connectChannel(addresses, port, {
        ...connectOptions,
        security: config.channelSecurity,
      });
    },
    reportError(error) {
      reportError(error);
    },
  };
  let created: unknown;
  try {
    created = await (initializer as RuntimeInitializer<unknown, unknown>)(context);
  } catch (error) {
    await handler.close();
    throw error;
  }
  if (
    typeof created !== "object" || created === null ||
    typeof (created as Runtime).start !== "function" ||
    typeof (created as Runtime).stop !== "function"
  ) {
    await handler.close();
    throw new TypeError(
      `Cannot initialize the runtime as '${exportName}' must return an object with start() and stop(): it returned ${
        created === null ? "null" : typeof created
      }`,
    );
  }
  const runtime = created as Runtime;
  return {
    runtime,
    handler,
    async stop(reason) {
      abort.abort(reason);
      try {
        await runtime.stop(reason);
      } finally {
        await handler.close();
      }
    },
    abandon(reason) {
      abort.abort(reason);
      handler.close().catch(reportError);
    },
  };
}
