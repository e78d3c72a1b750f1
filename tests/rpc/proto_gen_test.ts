import { assert } from "../_assert.ts";

Deno.test("the committed generated proto code matches rpc/proto/*.proto", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../tools/proto.ts", import.meta.url).pathname, "--check"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  assert(output.success, `deno task proto --check failed:\n${text}`);
  assert(text.includes("rpc/proto/gen/ is up to date (5 files)"), text);
});
