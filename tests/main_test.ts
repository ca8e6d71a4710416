import { assert, assertEquals } from "./_assert.ts";
import { makeWorld } from "../lib/sim/world.ts";
import { startSimRelay } from "../lib/sim/relay.ts";
import { freshDatabase } from "./_child.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Runs `main.ts` in a child process with exactly the given environment (plus PATH/HOME). */
async function run(args: string[], env: Record<string, string>, signal?: AbortSignal) {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    signal,
  });
  const out = await cmd.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("cli: backfill exits 0 when all complete, non-zero naming the failed ones; migrate is idempotent", async () => {
  const world = makeWorld({ seed: 41, largeSizes: [900], collections: 6 });
  const bad = world.collections()[3];
  const relay = await startSimRelay({ world, forbidden: [bad] });
  const db = await freshDatabase("cli");
  const dataDir = await Deno.makeTempDir();
  const env = {
    DATABASE_URL: db.url,
    DATA_DIR: dataDir,
    BACKFILL_SOURCE: relay.url,
    LEXICON_LIST_URL: `${relay.url}/llms.txt`,
    LOG_LEVEL: "warn",
  };
  try {
    for (let i = 0; i < 2; i++) {
      const m = await run(["migrate"], env);
      assertEquals(m.code, 0, m.stderr);
    }
    const failing = await run(["backfill"], env);
    assertEquals(failing.code, 1, failing.stderr);
    assert(failing.stdout.includes(`failed: ${bad}`), failing.stdout);
    relay.setFaults({ forbidden: [] });
    const ok = await run(["backfill", "--collection", bad], env);
    assertEquals(ok.code, 0, ok.stdout + ok.stderr);
    assert(ok.stdout.includes("1 completed, 0 failed"), ok.stdout);
    const usage = await run(["backfill", "--source", "ftp://nope"], env);
    assertEquals(usage.code, 2);
    assertEquals(usage.stderr.trim().split("\n").length, 1, usage.stderr);
    assert(usage.stderr.includes("ftp://nope"));
  } finally {
    await relay.close();
    await Deno.remove(dataDir, { recursive: true });
    await db.drop();
  }
});

Deno.test("cli: embedded Postgres needs no setup; a second process on the same data directory gets one line", async () => {
  const world = makeWorld({ seed: 43, largeSizes: [3000], collections: 5 });
  const relay = await startSimRelay({ world, latencyMs: 30 });
  const dataDir = await Deno.makeTempDir();
  const env = {
    DATA_DIR: dataDir,
    BACKFILL_SOURCE: relay.url,
    LEXICON_LIST_URL: `${relay.url}/llms.txt`,
    BACKFILL_PAGE_LIMIT: "100",
    LOG_LEVEL: "warn",
  };
  try {
    const first = run(["backfill"], env);
    // Wait until the first process holds the index, then start a second one.
    for (let i = 0; i < 200 && (relay.stats.requests === 0); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const second = await run(["backfill"], env);
    assertEquals(second.code, 1);
    const lines = second.stderr.trim().split("\n");
    assertEquals(lines.length, 1, second.stderr);
    assert(lines[0].includes(`${dataDir}/index`) && lines[0].includes("another process"), lines[0]);
    const done = await first;
    assertEquals(done.code, 0, done.stderr);
    assert(done.stdout.includes("0 failed"), done.stdout);
    const again = await run(["backfill"], env);
    assertEquals(again.code, 0, again.stderr);
    assert(again.stdout.includes("0 to page"), again.stdout);
  } finally {
    await relay.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
