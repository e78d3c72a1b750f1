/**
 * The client side of the caller-id handshake: {@linkcode ClientIdFetcher}
 * asks a server's `tsercom.IdService/GetId` for an id once and remembers it.
 *
 * @module
 */

import { CallerId } from "./caller_id.ts";
import { GrpcIdService } from "./caller_id_handshake.ts";
import { GrpcChannel } from "./grpc_channel.ts";
import { MAX_DELAY_MS } from "./scheduler.ts";
import { show } from "./_show.ts";

/**
 * Makes one `tsercom.IdService/GetId` call and resolves to the response (a
 * `tsercom.GetIdResponse`, or anything shaped like `{ id: { id: string } }`).
 * The signal is aborted when nobody waits for the answer any more.
 */
export type GetIdCall = (signal: AbortSignal) => Promise<unknown>;

/** Options for {@linkcode ClientIdFetcher}. */
export interface ClientIdFetcherOptions {
  /**
   * Told why a fetch gave no id: the error the call failed with, or an
   * `InvalidCallerIdError` for a response without a valid id. Nothing is
   * cached then, so the next {@linkcode ClientIdFetcher.getId} tries again.
   *
   * @default {undefined}
   */
  onError?: (error: unknown) => void;
}

/** Options for {@linkcode ClientIdFetcher.fromChannel}. */
export interface ClientIdFetcherChannelOptions extends ClientIdFetcherOptions {
  /**
   * The deadline of each `GetId` call, in milliseconds; a call that takes
   * longer gives `null` (and `DEADLINE_EXCEEDED` to `onError`).
   *
   * @default {undefined} (no deadline)
   */
  deadlineMs?: number;
  /**
   * Request metadata (headers) sent with each call.
   *
   * @default {{}}
   */
  metadata?: Readonly<Record<string, string>>;
}

/** Options for {@linkcode ClientIdFetcher.getId}. */
export interface ClientIdFetcherGetIdOptions {
  /**
   * Stops this caller waiting: its promise rejects with `signal.reason`. The
   * call itself goes on for other callers; it is aborted once every caller
   * waiting for it has given up.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

interface InFlight {
  readonly promise: Promise<CallerId | null>;
  readonly controller: AbortController;
  /** Callers still waiting for this fetch. */
  waiting: number;
}

/**
 * Fetches this client's caller id from a server once, and caches it.
 *
 * - Concurrent first callers share one call: five at once make one RPC.
 * - The first valid id is cached: later calls return that same object
 *   without calling again.
 * - A failed call, or a response whose id is missing or not a UUID, gives
 *   `null` to every caller that waited for it and is reported to `onError`;
 *   nothing is cached, so the next {@linkcode ClientIdFetcher.getId} calls
 *   again.
 *
 * The call is injected, so the fetcher works with any channel: pass
 * `(signal) => channel.unary(getIdMethod, {}, { signal })` or a test double.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CallerId, ClientIdFetcher } from "@tsercom/tsercom/rpc";
 *
 * const issued = CallerId.random();
 * let calls = 0;
 * const fetcher = new ClientIdFetcher(() => {
 *   calls++;
 *   return Promise.resolve({ id: { id: issued.toString() } });
 * });
 * const ids = await Promise.all([fetcher.getId(), fetcher.getId(), fetcher.getId()]);
 * assert(ids.every((id) => id === ids[0] && id?.equals(issued)));
 * assert.equal(await fetcher.getId(), ids[0]);
 * assert.equal(calls, 1);
 * ```
 */
export class ClientIdFetcher {
  readonly #call: GetIdCall;
  readonly #onError: ((error: unknown) => void) | undefined;
  #id: CallerId | null = null;
  #inFlight: InFlight | undefined;

  /**
   * Creates a fetcher; nothing is called until {@linkcode ClientIdFetcher.getId}.
   *
   * @param call Makes one `GetId` call.
   * @param options Where to report why a fetch gave no id.
   * @throws {TypeError} When `call` or `onError` is not a function.
   */
  constructor(call: GetIdCall, options: ClientIdFetcherOptions = {}) {
    if (typeof call !== "function") {
      throw new TypeError(
        `Cannot create a ClientIdFetcher as 'call' must be a function: current value is ${
          show(call)
        }`,
      );
    }
    const { onError } = options ?? {};
    if (onError !== undefined && typeof onError !== "function") {
      throw new TypeError(
        `Cannot create a ClientIdFetcher as 'onError' must be a function: current value is ${
          show(onError)
        }`,
      );
    }
    this.#call = call;
    this.#onError = onError;
  }

  /**
   * Creates a fetcher that calls `tsercom.IdService/GetId`
   * ({@linkcode GrpcIdService}) on a channel.
   *
   * @example
   * ```ts ignore
   * const channel = await connectChannel("127.0.0.1", port);
   * const fetcher = ClientIdFetcher.fromChannel(channel, { deadlineMs: 2_000 });
   * const id = await fetcher.getId(); // null if the server could not give one
   * ```
   *
   * @param channel The channel to the server.
   * @param options The deadline and metadata of each call, and where to
   * report why a fetch gave no id.
   * @returns The fetcher.
   * @throws {TypeError} When `channel` is not a GrpcChannel, or an option has
   * the wrong type.
   * @throws {RangeError} When `deadlineMs` is out of range.
   */
  static fromChannel(
    channel: GrpcChannel,
    options: ClientIdFetcherChannelOptions = {},
  ): ClientIdFetcher {
    const operation = "create a ClientIdFetcher";
    if (!(channel instanceof GrpcChannel)) {
      throw new TypeError(
        `Cannot ${operation} as 'channel' must be a GrpcChannel: current value is ${show(channel)}`,
      );
    }
    const { deadlineMs, metadata, onError } = options ?? {};
    if (
      deadlineMs !== undefined &&
      (typeof deadlineMs !== "number" || !(deadlineMs > 0 && deadlineMs <= MAX_DELAY_MS))
    ) {
      throw new RangeError(
        `Cannot ${operation} as 'deadlineMs' must be a number in (0, ${MAX_DELAY_MS}]: current value is ${
          show(deadlineMs)
        }`,
      );
    }
    if (metadata !== undefined && (typeof metadata !== "object" || metadata === null)) {
      throw new TypeError(
        `Cannot ${operation} as 'metadata' must be an object: current value is ${show(metadata)}`,
      );
    }
    return new ClientIdFetcher(
      (signal) => channel.unary(GrpcIdService.methods.GetId, {}, { signal, deadlineMs, metadata }),
      { onError },
    );
  }

  /** The cached caller id, or `null` before a fetch has succeeded. */
  get id(): CallerId | null {
    return this.#id;
  }

  /**
   * Returns the cached caller id, or fetches it (sharing a fetch already in
   * flight).
   *
   * @param options A signal to stop waiting.
   * @returns The caller id, or `null` when the call failed or its response
   * held no valid id.
   * @throws {TypeError} When `signal` is not an AbortSignal.
   */
  getId(options: ClientIdFetcherGetIdOptions = {}): Promise<CallerId | null> {
    const { signal } = options ?? {};
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError(
        `Cannot fetch a caller id as 'signal' must be an AbortSignal: current value is ${
          show(signal)
        }`,
      );
    }
    if (this.#id !== null) return Promise.resolve(this.#id);
    if (signal?.aborted) return Promise.reject(signal.reason);
    const inFlight = this.#inFlight ?? (this.#inFlight = this.#fetch());
    inFlight.waiting++;
    if (signal === undefined) return inFlight.promise;
    return new Promise<CallerId | null>((resolve, reject) => {
      const onAbort = () => {
        reject(signal.reason);
        if (--inFlight.waiting === 0) {
          // Nobody waits any more: cancel the call, and let the next caller start afresh.
          if (this.#inFlight === inFlight) this.#inFlight = undefined;
          inFlight.controller.abort(signal.reason);
        }
      };
      signal.addEventListener("abort", onAbort, { once: true });
      inFlight.promise.then((id) => {
        signal.removeEventListener("abort", onAbort);
        resolve(id);
      });
    });
  }

  #fetch(): InFlight {
    const controller = new AbortController();
    const inFlight: InFlight = {
      controller,
      waiting: 0,
      promise: this.#run(controller.signal).then((id) => {
        if (this.#inFlight === inFlight) this.#inFlight = undefined;
        return id;
      }),
    };
    return inFlight;
  }

  async #run(signal: AbortSignal): Promise<CallerId | null> {
    let response: unknown;
    try {
      response = await this.#call(signal);
    } catch (error) {
      if (!signal.aborted) this.#report(error);
      return null;
    }
    const field = typeof response === "object" && response !== null
      ? (response as { readonly id?: unknown }).id
      : undefined;
    let id: CallerId;
    try {
      id = CallerId.parse(
        typeof field === "object" && field !== null
          ? field as { readonly id?: unknown }
          : field === undefined || field === null
          ? field
          : { id: field },
      );
    } catch (error) {
      this.#report(error);
      return null;
    }
    // An abandoned fetch may finish after a newer one: the first id wins.
    this.#id ??= id;
    return this.#id;
  }

  #report(error: unknown): void {
    try {
      this.#onError?.(error);
    } catch {
      // A failing error reporter must not turn a null answer into a crash.
    }
  }
}
