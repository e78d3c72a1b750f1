/**
 * The clock interface every tsercom component takes, so that time can be
 * injected and tests never have to wait for it to pass.
 *
 * @module
 */

/**
 * A clock on a shared timeline. Every value is an integer number of
 * microseconds since the Unix epoch, UTC.
 *
 * "Local" time is this machine's clock; "synchronised" time is the timeline
 * agreed with a time server. A server's own clock maps one to one; a client's
 * clock adds the measured offset (`synced = local + offset`, positive when the
 * client is behind the server).
 */
export interface SynchronizedClock {
  /** The current synchronised time, in microseconds since the Unix epoch. */
  now(): number;
  /**
   * Converts a local time to synchronised time.
   *
   * @param localMicros Local microseconds since the Unix epoch.
   * @returns Synchronised microseconds since the Unix epoch.
   */
  sync(localMicros: number): number;
  /**
   * Converts a synchronised time back to local time; the inverse of
   * {@linkcode SynchronizedClock.sync}.
   *
   * @param syncedMicros Synchronised microseconds since the Unix epoch.
   * @returns Local microseconds since the Unix epoch.
   */
  desync(syncedMicros: number): number;
}
