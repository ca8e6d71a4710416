/** The project's deno.json: settings a new user's first run depends on. */
import { assert, assertEquals } from "./_assert.ts";

const ROOT = new URL("../", import.meta.url);

Deno.test("deno.json: every npm package with install scripts is denied them explicitly, so the first run prints no 'Ignored build scripts' box", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const lock = JSON.parse(await Deno.readTextFile(new URL("deno.lock", ROOT)));
  const withScripts = Object.entries(lock.npm as Record<string, { scripts?: boolean }>)
    .filter(([, p]) => p.scripts === true)
    .map(([key]) => `npm:${key.slice(0, key.indexOf("@", 1))}`);
  assert(withScripts.includes("npm:classic-level"), withScripts.join(", "));
  // Global-cache mode (no nodeModulesDir) cannot run them, and the index needs none: its
  // prebuilt binaries ship in the package. Deny them, so Deno has nothing to warn about.
  assertEquals(config.nodeModulesDir, undefined);
  const denied: string[] = config.allowScripts?.deny ?? [];
  assertEquals(withScripts.filter((p) => !denied.includes(p)), [], "not denied explicitly");
});

Deno.test("deno.json: the tasks that run without read access start with only the permissions they are given", async (t) => {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  // `status` runs from a laptop (and as the catch-up trigger), so it must never load the index's
  // native module, which reads files it is not allowed to.
  const runs: { task: string; args: string[]; env?: Record<string, string>; want: RegExp }[] = [
    {
      task: "status",
      args: [],
      env: { RELAY_URL: "http://127.0.0.1:1" },
      want: /cannot reach backfill server at http:\/\/127\.0\.0\.1:1/,
    },
    { task: "sim-relay", args: ["--help"], want: /^usage: sim-relay/ },
  ];
  for (const { task, args, env, want } of runs) {
    await t.step(task, async () => {
      assert(!/ -A | --allow-all | --allow-read/.test(config.tasks[task]), config.tasks[task]);
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["task", "-q", task, ...args],
        cwd: ROOT,
        env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert(!/NotCapable|Requires \w+ access/.test(text), `${task}: ${text.slice(0, 400)}`);
      assert(want.test(text), `${task} ${args.join(" ")} printed: ${text.slice(0, 400)}`);
    });
  }
});
