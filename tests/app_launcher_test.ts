import { assert, assertEquals } from "./_assert.ts";
import { chainAlive, launcherChain, parseStat, type StatReader } from "../lib/app/launcher.ts";
import { makeWorld } from "../lib/sim/world.ts";
import { startSimRelay } from "../lib/sim/relay.ts";
import { freshDatabase } from "./_child.ts";
import { until } from "./_helpers.ts";

const stat = (pid: number, comm: string, ppid: number, start = "100") =>
  `${pid} (${comm}) S ${ppid} 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 ${start} 0 0`;

Deno.test("parseStat: names with spaces and parentheses, and what is not a stat line", () => {
  assertEquals(parseStat(stat(7, "npm exec deno@2", 3, "555")), {
    pid: 7,
    ppid: 3,
    comm: "npm exec deno@2",
    start: "555",
  });
  assertEquals(parseStat(stat(8, "a) b (c", 2))?.comm, "a) b (c");
  assertEquals(parseStat(""), undefined);
  assertEquals(parseStat("12 (x"), undefined);
});

Deno.test("launcherChain: from deno task up to npm; none without npm; a replaced process is not alive", () => {
  const procs = new Map([
    [40, stat(40, "deno", 30)],
    [30, stat(30, "sh", 20)],
    [20, stat(20, "npm exec deno@2", 10)],
    [10, stat(10, "bash", 1)],
    [50, stat(50, "deno", 10)],
  ]);
  const read: StatReader = (pid) => procs.get(pid);
  const chain = launcherChain(40, read)!;
  assertEquals(chain.map((p) => p.comm), ["deno", "sh", "npm exec deno@2"]);
  assertEquals(launcherChain(50, read), undefined, "started from a shell, not npx");
  assert(chainAlive(chain, read));
  procs.delete(30);
  assert(!chainAlive(chain, read), "the shell npx ran is gone");
  procs.set(30, stat(30, "sh", 20, "999"));
  assert(!chainAlive(chain, read), "a new process took the pid");
});

/** Pids of running processes whose environment holds `marker`. */
function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^[0-9]+$/.test(e.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${e.name}/environ`).includes(marker)) {
        out.push(Number(e.name));
      }
    } catch { /* gone, or not ours */ }
  }
  return out;
}

Deno.test({
  name: "quick start: SIGTERM to `npx -y deno@2 task backfill` stops the backfill too",
  async fn() {
    // 300 pages of 100 at 200 ms each: a minute of work, far longer than the wait below.
    const world = makeWorld({ seed: 89, largeSizes: [30_000], collections: 3 });
    const relay = await startSimRelay({ world, latencyMs: 200 });
    const db = await freshDatabase("npx");
    const dataDir = await Deno.makeTempDir({ prefix: "backfill-npx-" });
    const npx = new Deno.Command("npx", {
      args: ["-y", "deno@2", "task", "backfill"],
      cwd: new URL("..", import.meta.url).pathname,
      env: {
        DATABASE_URL: db.url,
        DATA_DIR: dataDir,
        BACKFILL_SOURCE: relay.url,
        LEXICON_LIST_URL: `${relay.url}/llms.txt`,
        BACKFILL_PAGE_LIMIT: "100",
        LOG_LEVEL: "warn",
      },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    let left: number[] = [];
    try {
      await until(() => relay.stats.pages > 0, { timeoutMs: 60_000, what: "the backfill to page" });
      npx.kill("SIGTERM");
      await npx.status;
      await until(() => (left = processesWith(`DATA_DIR=${dataDir}`)).length === 0, {
        timeoutMs: 15_000,
        what: "every process of the run to exit after npx was stopped",
        everyMs: 100,
      }).catch((err) => {
        throw new Error(`${err.message}: still running ${left.join(", ")}`);
      });
      const total = world.collections().reduce((n, c) => n + world.size(c), 0);
      assert(relay.stats.didsServed < total, "it stopped early, not because it was done");
    } finally {
      for (const pid of left) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await relay.close();
      await db.drop();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
