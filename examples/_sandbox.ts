/**
 * The demo's network sandbox (private): a private Linux network namespace
 * whose only interface is `lo`, with multicast routed to it, so that the
 * demo's mDNS and gRPC traffic never reaches a real network.
 *
 * @module
 */

/** The shell prelude run inside the new namespace before the demo. */
const SETUP = 'ip link set lo up && ip route add 224.0.0.0/4 dev lo src 127.0.0.1 && exec "$@"';

/** How to start a command inside a sandbox, or why there is none. */
export type SandboxPlan =
  | { readonly ok: true; readonly prefix: readonly string[] }
  | { readonly ok: false; readonly reason: string };

/**
 * Finds out whether this machine can run the demo in a private network
 * namespace: Linux, `unshare` and `ip`, and either root or unprivileged user
 * namespaces (then `--map-root-user`). It tries it once, with a time limit.
 */
export async function planSandbox(): Promise<SandboxPlan> {
  if (Deno.build.os !== "linux") {
    return { ok: false, reason: `network namespaces need Linux (this is ${Deno.build.os})` };
  }
  const root = Deno.uid() === 0;
  const prefix = [
    "unshare",
    "--net",
    ...(root ? [] : ["--map-root-user"]),
    "--",
    "sh",
    "-c",
    SETUP,
    "sh",
  ];
  try {
    const probe = await new Deno.Command(prefix[0], {
      args: [...prefix.slice(1), "true"],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      signal: AbortSignal.timeout(5_000),
    }).output();
    if (probe.success) return { ok: true, prefix };
    const why = new TextDecoder().decode(probe.stderr).trim().split("\n")[0];
    return { ok: false, reason: `unshare failed: ${why || `exit code ${probe.code}`}` };
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound
      ? "'unshare' (util-linux) is not installed"
      : error instanceof Error
      ? error.message
      : String(error);
    return { ok: false, reason: why };
  }
}
