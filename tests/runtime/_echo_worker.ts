/**
 * A tiny Worker speaking the worker protocol, for the tests:
 *
 * - `init`: replies `ready`, or `init-failed` with a {@linkcode SensorFault}
 *   (whose cause is a `RangeError`) when `exportName` is `"SensorFault"`;
 * - `start` / `stop` / `heartbeat`: replies `started` / `stopped` /
 *   `heartbeat-ack` with the same id;
 * - `data`: sends the items back in a `data` message with the same id,
 *   transferring their buffers again;
 * - anything invalid: replies `error` with the serialized `ProtocolError`,
 *   and keeps running.
 *
 * @module
 */

/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />

import {
  encodeForTransfer,
  type Message,
  PROTOCOL_VERSION,
  ProtocolError,
  serializeError,
  validateMessage,
} from "../../runtime/_worker_protocol.ts";
import { SensorFault } from "./_sensor_fault.ts";

let nextId = 1_000_000;

function post(message: Message): void {
  const { transfer } = encodeForTransfer(message);
  self.postMessage(message, transfer);
}

function handle(message: Message): void {
  const v = PROTOCOL_VERSION;
  const id = message.id;
  switch (message.type) {
    case "init":
      if (message.exportName === "SensorFault") {
        const error = new SensorFault("lidar offline", 7, {
          cause: new RangeError("angle out of range"),
        });
        post({ v, type: "init-failed", id, error: serializeError(error) });
      } else {
        post({ v, type: "ready", id });
      }
      return;
    case "start":
      post({ v, type: "started", id });
      return;
    case "stop":
      post({ v, type: "stopped", id });
      return;
    case "heartbeat":
      post({ v, type: "heartbeat-ack", id });
      return;
    case "data":
      post({ v, type: "data", id, items: message.items });
      return;
    default:
      throw new ProtocolError(
        "type",
        `Cannot handle the message as the echo worker must get a command: got ${message.type}`,
      );
  }
}

self.onmessage = (event: MessageEvent<unknown>) => {
  try {
    handle(validateMessage(event.data));
  } catch (error) {
    post({ v: PROTOCOL_VERSION, type: "error", id: nextId++, error: serializeError(error) });
  }
};
