/**
 * The error for bytes that are not the protobuf message they should be.
 *
 * @module
 */

/** Thrown when bytes received from a peer are not a valid serialisation of the expected message. */
export class ProtoDecodeError extends Error {
  /** The full protobuf name of the message that was expected, e.g. `tsercom.TensorChunk`. */
  readonly typeName: string;

  /**
   * Creates the error.
   *
   * @param typeName The full protobuf name of the expected message.
   * @param byteLength How many bytes were given.
   * @param cause What the protobuf runtime reported.
   */
  constructor(typeName: string, byteLength: number, cause: unknown) {
    super(
      `Cannot decode ${byteLength} bytes as ${typeName}: ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
    this.name = "ProtoDecodeError";
    this.typeName = typeName;
  }
}
