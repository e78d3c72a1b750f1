/**
 * Validation of an {@linkcode InitializerRef} (private), shared by the
 * manager and the Worker host.
 *
 * @module
 */

import type { InitializerRef } from "./runtime.ts";

/**
 * Checks `ref`: an object with an absolute `module` URL and a non-empty
 * `export` name, and, when `clonable`, structured-clonable `params`.
 *
 * @param ref The reference to check.
 * @param action What the caller cannot do otherwise, e.g. `"spawn the runtime"`.
 * @param clonable Whether `params` must survive `structuredClone`.
 * @returns The module URL normalised, and the export name.
 * @throws {TypeError} Naming the field that is wrong.
 */
export function checkInitializerRef(
  ref: InitializerRef,
  action: string,
  clonable: boolean,
): { module: string; export: string } {
  if (typeof ref !== "object" || ref === null) {
    throw new TypeError(
      `Cannot ${action} as 'ref' must be an object: current value is ${String(ref)}`,
    );
  }
  let module: string;
  try {
    module = new URL(ref.module).href;
  } catch {
    throw new TypeError(
      `Cannot ${action} as 'module' must be an absolute URL (use import.meta.resolve): current value is ${
        String(ref.module)
      }`,
    );
  }
  if (typeof ref.export !== "string" || ref.export.length === 0) {
    throw new TypeError(
      `Cannot ${action} as 'export' must be a non-empty string: current value is ${
        String(ref.export)
      }`,
    );
  }
  if (clonable) {
    try {
      structuredClone(ref.params);
    } catch (error) {
      throw new TypeError(
        `Cannot ${action} as 'params' must be structured-clonable: it is not`,
        { cause: error },
      );
    }
  }
  return { module, export: ref.export };
}
