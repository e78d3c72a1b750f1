/**
 * Regenerates the TypeScript code for the wire protos in `rpc/proto/` with
 * `buf` and `protoc-gen-es` (both from the npm registry, pinned here).
 *
 * Usage:
 *   deno task proto            # rewrite rpc/proto/gen/
 *   deno task proto --check    # exit 1 when rpc/proto/gen/ is stale
 *
 * @module
 */

const BUF = "npm:@bufbuild/buf@1.75.0";
const PROTOC_GEN_ES = "npm:@bufbuild/protoc-gen-es@2.17.0";

const root = new URL("../", import.meta.url);
const protoDir = new URL("rpc/proto/", root);
const genDir = new URL("rpc/proto/gen/", root);

/** Runs buf generate into `outDir` and returns the generated files by name. */
async function generate(outDir: string): Promise<Map<string, string>> {
  const template = {
    version: "v2",
    plugins: [{
      local: [Deno.execPath(), "run", "-A", "--no-config", PROTOC_GEN_ES],
      out: outDir,
      opt: ["target=ts", "import_extension=ts"],
    }],
  };
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--no-config",
      BUF,
      "generate",
      protoDir.pathname,
      "--template",
      JSON.stringify(template),
    ],
    cwd: protoDir.pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `buf generate failed with code ${output.code}:\n${new TextDecoder().decode(output.stderr)}`,
    );
  }
  const files = new Map<string, string>();
  for await (const entry of Deno.readDir(outDir)) {
    if (entry.isFile && entry.name.endsWith(".ts")) {
      files.set(entry.name, await Deno.readTextFile(`${outDir}/${entry.name}`));
    }
  }
  return files;
}

/** Reads the committed generated files by name. */
async function committed(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  try {
    for await (const entry of Deno.readDir(genDir)) {
      if (entry.isFile && entry.name.endsWith("_pb.ts")) {
        files.set(entry.name, await Deno.readTextFile(new URL(entry.name, genDir)));
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return files;
}

async function main(args: string[]): Promise<number> {
  const check = args.includes("--check");
  const tmp = await Deno.makeTempDir({ prefix: "tsercom-proto-" });
  try {
    const fresh = await generate(tmp);
    const old = await committed();
    if (check) {
      const stale = [...new Set([...fresh.keys(), ...old.keys()])].filter((name) =>
        fresh.get(name) !== old.get(name)
      ).sort();
      if (stale.length > 0) {
        console.error(`rpc/proto/gen/ is stale (${stale.join(", ")}): run \`deno task proto\``);
        return 1;
      }
      console.log(`rpc/proto/gen/ is up to date (${fresh.size} files)`);
      return 0;
    }
    await Deno.mkdir(genDir, { recursive: true });
    for (const name of old.keys()) {
      if (!fresh.has(name)) await Deno.remove(new URL(name, genDir));
    }
    for (const [name, text] of fresh) {
      await Deno.writeTextFile(new URL(name, genDir), text);
    }
    console.log(`wrote ${fresh.size} files to rpc/proto/gen/`);
    return 0;
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
