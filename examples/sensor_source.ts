/**
 * The demo's data source, a runtime for {@linkcode RuntimeManager}: it
 * serves two tensor streams over gRPC (a 6-axis IMU at 200 Hz and a 64×64
 * depth camera at 10 Hz, both with jittered, out-of-order delivery), hands
 * out caller ids, serves time over SNTP, and advertises itself over mDNS.
 *
 * Register it with `delivery: "stream"`, `role: "server"` and a
 * `timeSyncPort` (0 picks a free one): it emits a {@linkcode SourceStats}
 * every second.
 *
 * @module
 */

import { InstancePublisher, Mdns } from "../discovery/mod.ts";
import {
  CallerId,
  getIdHandler,
  GrpcIdService,
  GrpcServicePublisher,
  SystemClock,
} from "../rpc/mod.ts";
import type { Runtime, RuntimeContext } from "../runtime/mod.ts";
import { routeTensorStreams, TensorStreamServer } from "../tensor/mod.ts";
import {
  DEPTH_HEIGHT,
  DEPTH_WIDTH,
  depthFrame,
  imuSample,
  JitteredSchedule,
  seededRandom,
} from "./_signals.ts";

/** The DNS-SD service type the demo's sources advertise. */
export const SENSOR_SERVICE_TYPE = "_tsercom-demo._tcp";

/** The parameters of {@linkcode SensorSource} (structured-clonable). */
export interface SensorSourceParams {
  /** The readable name it advertises, e.g. `"sensor-1"`. */
  name: string;
  /** Its stable caller id (a UUID): aggregators know it by this id across restarts. */
  id: string;
  /** The address its gRPC server binds ("0.0.0.0" for every interface). */
  host: string;
  /** Seeds the signals and the jitter. */
  seed: number;
  /**
   * How late a sample may be delivered, milliseconds: up to this much
   * jitter, so neighbouring samples arrive out of order.
   */
  jitterMs: number;
}

/** What a source emits once a second. */
export interface SourceStats {
  /** Its readable name. */
  readonly name: string;
  /** Its gRPC port. */
  readonly port: number;
  /** Its SNTP port. */
  readonly timePort: number | undefined;
  /** IMU samples sent so far. */
  readonly imu: number;
  /** Depth frames sent so far. */
  readonly depth: number;
  /** Subscribers connected now, over both streams. */
  readonly subscribers: number;
  /** Caller ids handed out so far. */
  readonly idsIssued: number;
}

const IMU_PERIOD_MICROS = 5_000; // 200 Hz
const DEPTH_PERIOD_MICROS = 100_000; // 10 Hz
const TICK_MS = 5;

/**
 * Creates the data source. See the module documentation.
 *
 * @param context The runtime's context; `params` are {@linkcode SensorSourceParams}.
 * @returns The runtime.
 */
export function SensorSource(context: RuntimeContext<SourceStats>): Runtime {
  const params = context.params as SensorSourceParams;
  const id = CallerId.parse(params.id);
  const clock = new SystemClock();
  const random = seededRandom(params.seed);
  const phase = random() * 100;
  const imu = new TensorStreamServer(new Float32Array(6), {
    dtype: "float32",
    name: "imu",
    sparse: false,
    dataTimeoutMicros: 2_000_000,
    keyframeIntervalMs: 1_000,
  });
  const depth = new TensorStreamServer(new Int16Array(DEPTH_WIDTH * DEPTH_HEIGHT), {
    dtype: "int16",
    name: "depth",
    dataTimeoutMicros: 2_000_000,
    keyframeIntervalMs: 1_000,
    lz4MinBytes: 1_024,
  });
  const publisher = new GrpcServicePublisher({ addresses: params.host, port: 0 });
  let idsIssued = 0;
  publisher.addService(GrpcIdService, { GetId: getIdHandler({ onIdCreated: () => idsIssued++ }) });
  publisher.addService(TensorStreamServer.service, { Subscribe: routeTensorStreams([imu, depth]) });
  let mdns: Mdns | undefined;
  let advert: InstancePublisher | undefined;
  let ticker: ReturnType<typeof setInterval> | undefined;
  let reporter: ReturnType<typeof setInterval> | undefined;
  let port = 0;
  const sent = { imu: 0, depth: 0 };

  const tick = (imuSchedule: JitteredSchedule, depthSchedule: JitteredSchedule) => {
    const now = clock.now();
    const values = new Float32Array(6);
    for (const t of imuSchedule.due(now)) {
      imuSample(t, phase, random, values);
      imu.update(values, t).then(() => sent.imu++, context.reportError);
    }
    const frame = new Int16Array(DEPTH_WIDTH * DEPTH_HEIGHT);
    for (const t of depthSchedule.due(now)) {
      depthFrame(t, phase, frame);
      depth.update(frame, t).then(() => sent.depth++, context.reportError);
    }
  };

  return {
    async start() {
      ({ port } = await publisher.start());
      mdns = await Mdns.open();
      advert = new InstancePublisher(port, SENSOR_SERVICE_TYPE, {
        mdns,
        readableName: params.name,
        id,
        txt: {
          streams: "imu,depth",
          time_port: context.timeServerPort === undefined ? null : String(context.timeServerPort),
        },
      });
      await advert.publish();
      const start = clock.now();
      const jitter = params.jitterMs * 1_000;
      const imuSchedule = new JitteredSchedule(start, IMU_PERIOD_MICROS, jitter, random);
      const depthSchedule = new JitteredSchedule(start, DEPTH_PERIOD_MICROS, jitter, random);
      ticker = setInterval(() => {
        try {
          tick(imuSchedule, depthSchedule);
        } catch (error) {
          context.reportError(error);
        }
      }, TICK_MS);
      const report = () =>
        context.emit({
          name: params.name,
          port,
          timePort: context.timeServerPort,
          imu: sent.imu,
          depth: sent.depth,
          subscribers: imu.subscribers + depth.subscribers,
          idsIssued,
        }, clock.now());
      reporter = setInterval(() => {
        Promise.resolve(report()).catch(context.reportError);
      }, 1_000);
    },
    async stop() {
      clearInterval(ticker);
      clearInterval(reporter);
      // Goodbye packets first, so that aggregators drop this source at once.
      await advert?.close();
      await mdns?.close();
      imu.close();
      depth.close();
      // Forced: a graceful GOAWAY can abort a still-connected Deno client (see README).
      await publisher.stop({ graceMs: 0 });
    },
  };
}
