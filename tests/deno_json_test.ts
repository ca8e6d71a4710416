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
