/**
 * A custom error class shared by the worker protocol tests and their echo
 * worker (each side imports its own copy, as a real runtime would).
 *
 * @module
 */

/** A failure of a (pretend) sensor, with a numeric code. */
export class SensorFault extends Error {
  /** The fault code. */
  readonly code: number;

  /**
   * Creates the error.
   *
   * @param message What failed.
   * @param code The fault code.
   * @param options `cause`, if any.
   */
  constructor(message: string, code: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "SensorFault";
    this.code = code;
  }
}
