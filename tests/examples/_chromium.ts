/**
 * Headless Chromium for the dashboard tests (test helper): Debian's
 * `chromium`, driven by playwright-core, with a fresh profile that is
 * removed again, and the page's test probe (`window.__dashboard`).
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

/** Where Debian installs Chromium. */
export const CHROMIUM = "/usr/bin/chromium";

/** What examples/dashboard/app.js exposes for tests on `window.__dashboard`. */
export interface DashboardProbe {
  /** Peer names as listed, in table order. */
  peers(): string[];
  /** The table as shown: one object per row, keyed by column (and `id`). */
  rows(): Record<string, string>[];
  /** IMU samples plotted in a peer's chart. */
  points(peerId: string): number;
  /** Depth frames drawn for a peer. */
  depthFrames(peerId: string): number;
  /** Events received. */
  received(): number;
  /** Events that could not be shown. */
  ignored(): number;
}

/** `globalThis` in the page, with the probe. */
export type ProbeGlobal = typeof globalThis & { __dashboard?: DashboardProbe };

/** A browser context, as playwright-core makes it. */
export type BrowserContext = Awaited<ReturnType<typeof chromium.launchPersistentContext>>;

/** Where a screenshot named `name` goes: `$TSERCOM_SCREENSHOT_DIR` or tests/examples/out/. */
export function screenshotPath(name: string): string {
  const dir = Deno.env.get("TSERCOM_SCREENSHOT_DIR");
  if (dir) return `${dir.replace(/\/+$/, "")}/${name}`;
  return fileURLToPath(new URL(`./out/${name}`, import.meta.url));
}

/**
 * Runs `fn` with a headless Chromium (fresh profile), closing it and
 * removing the profile afterwards. Fails with a clear message when Debian's
 * `chromium` is not installed.
 */
export async function withChromium<T>(
  viewport: { width: number; height: number },
  fn: (context: BrowserContext) => Promise<T>,
): Promise<T> {
  try {
    await Deno.stat(CHROMIUM);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Error(
      `The dashboard's browser tests need Chromium at ${CHROMIUM}, which is missing: ` +
        "install Debian's `chromium` package (`apt-get install -y chromium`).",
    );
  }
  const profile = await Deno.makeTempDir({ prefix: "tsercom-chromium-" });
  let context: BrowserContext | undefined;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: 20_000,
      viewport,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    });
    return await fn(context);
  } finally {
    await context?.close();
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}
