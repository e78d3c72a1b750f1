/**
 * What the demo's sandboxed part tells its launcher, one JSON object per
 * line on its stdout (private to the demo). The launcher prints these in
 * the terminal and relays them to the dashboard's browsers.
 *
 * @module
 */

/** Where the demo's runtimes run. */
export type DemoSandbox = "netns" | "lan";

/** How far the aggregator got with one data source. */
export type PeerState = "discovered" | "connected" | "synced" | "streaming" | "lost";

/** One data source as the aggregator sees it, in a summary. */
export interface PeerSummary {
  /** The source's stable caller id (from its mDNS TXT record). */
  readonly id: string;
  /** Its readable name, e.g. `"sensor-1"`. */
  readonly name: string;
  /** The address and gRPC port the aggregator connected to. */
  readonly address: string;
  /** The gRPC port. */
  readonly port: number;
  /** How far the aggregator got. */
  readonly state: PeerState;
  /** The measured clock offset of the source, microseconds (source minus aggregator), or null before the first measurement. */
  readonly offsetMicros: number | null;
  /** Smoothed IMU frames received in the last second. */
  readonly imuHz: number;
  /** Depth frames received in the last second. */
  readonly depthHz: number;
  /** Median age of the IMU frames received in the last second, milliseconds (arrival minus sample time, on the aggregator's clock). */
  readonly latencyMs: number | null;
  /** Updates the source has sent over its streams so far. */
  readonly updates: number;
  /** Resynchronisations (gaps, late joins) so far. */
  readonly resyncs: number;
}

/** A line of the demo's protocol. */
export type DemoEvent =
  | {
    /** The runtimes are up. */
    readonly type: "started";
    readonly sandbox: DemoSandbox;
    readonly sources: number;
    /** Milliseconds since the Unix epoch. */
    readonly at: number;
  }
  | {
    /** A source's state changed. */
    readonly type: "peer";
    readonly peer: PeerSummary;
    readonly at: number;
  }
  | {
    /** Once a second: every source. */
    readonly type: "summary";
    readonly peers: readonly PeerSummary[];
    readonly at: number;
  }
  | {
    /** About ten times a second: the smoothed IMU frames of one source since the last such line. */
    readonly type: "imu";
    /** The source's caller id. */
    readonly peer: string;
    /** Sample times, milliseconds since the Unix epoch (aggregator's clock). */
    readonly t: readonly number[];
    /** For each time, the six axes: ax, ay, az (m/s²), gx, gy, gz (rad/s). */
    readonly v: readonly (readonly number[])[];
  }
  | {
    /** About twice a second: the newest depth frame of one source, downsampled. */
    readonly type: "depth";
    readonly peer: string;
    /** Sample time, milliseconds since the Unix epoch (aggregator's clock). */
    readonly t: number;
    readonly width: number;
    readonly height: number;
    /** Depth in millimetres, row-major, `width * height` values. */
    readonly mm: readonly number[];
  }
  | {
    /** Something went wrong in a runtime (the demo goes on where it can). */
    readonly type: "error";
    readonly message: string;
    readonly at: number;
  }
  | {
    /** The runtimes stopped. */
    readonly type: "stopped";
    readonly at: number;
  };

/**
 * Parses one line of the protocol; `undefined` for anything else (a stray
 * log line is not an event).
 */
export function parseDemoEvent(line: string): DemoEvent | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const value = JSON.parse(line);
    return typeof value === "object" && value !== null && typeof value.type === "string"
      ? value as DemoEvent
      : undefined;
  } catch {
    return undefined;
  }
}
