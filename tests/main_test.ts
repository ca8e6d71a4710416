import { assert, assertEquals } from "./_assert.ts";
import { makeWorld } from "../lib/sim/world.ts";
import { startSimRelay } from "../lib/sim/relay.ts";
import { exists, freePort, freshDatabase, spawnMain } from "./_child.ts";
import { TEST_DATABASE_URL, until } from "./_helpers.ts";

/**
 * Runs `main.ts` in a child process with exactly the given environment (plus PATH/HOME). A child
 * still running after `ms` is killed and the test fails saying so (a hang is a failure, not a wait).
 */
async function run(args: string[], env: Record<string, string>, ms = 120_000) {
  const child = spawnMain(args, env);
  const status = await child.waitFor(ms);
  if (!status) {
    child.kill("SIGKILL");
    await child.status;
    throw new Error(`main.ts ${args.join(" ")} did not exit within ${ms / 1000} s`);
  }
  return { code: status.code, stdout: await child.stdout, stderr: await child.stderr };
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
    // LevelDB creates LOCK when it opens the index, before anything else (see openRuntime).
    await until(() => exists(`${dataDir}/index/LOCK`), {
      timeoutMs: 60_000,
      what: "the first process to hold the index",
      everyMs: 50,
    });
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

/** A TCP port that accepts connections and never answers: Postgres hanging mid-connect. */
function silentListener() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const first = listener.accept().then((conn) => {
    conns.push(conn);
  });
  return {
    port: (listener.addr as Deno.NetAddr).port,
    /** Resolves once a client has connected. */
    connected: first,
    close() {
      listener.close();
      for (const c of conns) c.close();
    },
  };
}

Deno.test("cli: an unreachable Postgres fails after DATABASE_WAIT_MS with one line naming the host", async () => {
  const port = freePort();
  const dataDir = await Deno.makeTempDir();
  try {
    // The deadline (30 s) fails a hang; how soon it gives up is a figure of `deno task bench`.
    const r = await run(["migrate"], {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/nowhere`,
      DATABASE_WAIT_MS: "1500",
      DATA_DIR: dataDir,
      LOG_LEVEL: "error",
    }, 30_000);
    assertEquals(r.code, 1, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assertEquals(lines.length, 1, r.stderr);
    assert(lines[0].startsWith(`error: Postgres at 127.0.0.1:${port}/nowhere`), lines[0]);
    assert(lines[0].includes("did not answer within 1.5 s (DATABASE_WAIT_MS)"), lines[0]);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("cli: the first SIGTERM ends the wait for Postgres, even mid-connect; a waiting server answers /healthz and a 503 /readyz", async () => {
  for (const mode of ["migrate", "backfill", "start"]) {
    const pg = silentListener();
    const dataDir = await Deno.makeTempDir();
    const httpPort = freePort();
    const child = spawnMain([mode], {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${pg.port}/x`,
      DATABASE_WAIT_MS: "600000",
      DATA_DIR: dataDir,
      PORT: String(httpPort),
      HOST: "127.0.0.1",
      LOG_LEVEL: "error",
    });
    try {
      await pg.connected;
      if (mode === "start") {
        const health = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
        assertEquals(health.status, 200, "alive while waiting");
        await health.body?.cancel();
        const ready = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
        assertEquals(ready.status, 503, "not ready while waiting");
        assertEquals((await ready.json()).ready, false);
      }
      child.kill("SIGTERM");
      const status = await child.waitFor(5_000);
      assert(status, `${mode} ignored the first SIGTERM`);
      assertEquals(status.code, 0, `${mode}: ${await child.stderr}`);
    } finally {
      child.kill("SIGKILL");
      await child.status;
      pg.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  }
});

Deno.test("cli: expected operational errors are one line naming the cause, without a stack", async () => {
  const dataDir = await Deno.makeTempDir();
  const file = await Deno.makeTempFile();
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const heldPort = (held.addr as Deno.NetAddr).port;
  const base = { DATABASE_URL: TEST_DATABASE_URL, DATA_DIR: dataDir, LOG_LEVEL: "error" };
  const cases: [string, string[], Record<string, string>, number, RegExp][] = [
    [
      "port in use",
      ["start"],
      { PORT: String(heldPort), HOST: "127.0.0.1" },
      1,
      new RegExp(`port ${heldPort} on 127\\.0\\.0\\.1 is already in use`),
    ],
    [
      "bad HOST",
      ["start"],
      { HOST: "no-such-host.invalid" },
      2,
      /^error: HOST "no-such-host\.invalid" cannot be bound/,
    ],
    [
      "unusable DATA_DIR",
      ["migrate"],
      { DATA_DIR: file },
      1,
      new RegExp(`cannot create index directory ${file}/index: Not a directory`),
    ],
    [
      "wrong database user",
      ["migrate"],
      { DATABASE_URL: "postgres://nobody@127.0.0.1:5432/test" },
      1,
      /^error: cannot use Postgres at 127\.0\.0\.1:5432\/test as nobody: .*"nobody"/,
    ],
  ];
  try {
    // Every case is run and every problem reported together.
    const problems: string[] = [];
    for (const [name, args, env, code, line] of cases) {
      const r = await run(args, { ...base, ...env });
      const lines = r.stderr.trim().split("\n");
      if (r.code !== code || lines.length !== 1 || !line.test(lines[0])) {
        problems.push(`${name}: exit ${r.code} (want ${code}): ${r.stderr.trim().slice(0, 300)}`);
      }
    }
    assertEquals(problems, []);
  } finally {
    held.close();
    await Deno.remove(file);
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("cli: a backfill whose discovery failed on an empty index exits 1 naming the list URL", async () => {
  const relay = await startSimRelay({
    world: makeWorld({ seed: 47, collections: 3 }),
    llmsStatus: 404,
  });
  const db = await freshDatabase("nolist");
  const dataDir = await Deno.makeTempDir();
  try {
    for (const listUrl of [`${relay.url}/llms.txt`, `http://127.0.0.1:${freePort()}/llms.txt`]) {
      const r = await run(["backfill"], {
        DATABASE_URL: db.url,
        DATA_DIR: dataDir,
        BACKFILL_SOURCE: relay.url,
        LEXICON_LIST_URL: listUrl,
        LOG_LEVEL: "error",
      });
      assertEquals(r.code, 1, r.stdout + r.stderr);
      const lines = r.stderr.trim().split("\n");
      assertEquals(lines.length, 1, r.stderr);
      assert(lines[0].startsWith(`error: cannot fetch collection list ${listUrl}`), lines[0]);
      assert(lines[0].endsWith("so there is nothing to backfill"), lines[0]);
    }
  } finally {
    await relay.close();
    await db.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("cli: a non-ASCII RELAY_ADMIN_PASSWORD is refused the same way by the server and the CLI", async () => {
  const dataDir = await Deno.makeTempDir();
  try {
    const lines: string[] = [];
    for (const args of [["start"], ["status"], ["status", "stop"]]) {
      const r = await run(args, {
        RELAY_ADMIN_PASSWORD: "pässwörd",
        DATA_DIR: dataDir,
        PORT: String(freePort()),
      }, 30_000);
      assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      const errs = r.stderr.trim().split("\n");
      assertEquals(errs.length, 1, r.stderr);
      assert(!r.stderr.includes("pässwörd"), "the password is not echoed");
      lines.push(errs[0]);
    }
    assertEquals(new Set(lines).size, 1, lines.join("\n"));
    assert(lines[0].startsWith("error: RELAY_ADMIN_PASSWORD must be printable ASCII"), lines[0]);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("cli: a one-shot catch-up from another source is refused until --confirm-source-switch", async () => {
  const world = makeWorld({ seed: 59, largeSizes: [300], collections: 3 });
  const relay = await startSimRelay({ world });
  const db = await freshDatabase("switch");
  const dataDir = await Deno.makeTempDir();
  const env = {
    DATABASE_URL: db.url,
    DATA_DIR: dataDir,
    BACKFILL_SOURCE: relay.url,
    LEXICON_LIST_URL: `${relay.url}/llms.txt`,
    LOG_LEVEL: "error",
  };
  // Another relay that refuses every collection at once (403), so the run fails quickly.
  const other = await startSimRelay({ world, forbidden: ["*"] });
  const dead = other.url;
  try {
    assertEquals((await run(["backfill"], env)).code, 0);
    const refused = await run(["backfill", "--source", dead, "--catch-up"], env);
    assertEquals(refused.code, 2, refused.stdout + refused.stderr);
    const lines = refused.stderr.trim().split("\n");
    assertEquals(lines.length, 1, refused.stderr);
    assert(lines[0].includes("would restart 3 completed collection(s)"), lines[0]);
    assert(lines[0].includes("confirm-source-switch"), lines[0]);
    const confirmed = await run(
      ["backfill", "--source", dead, "--catch-up", "--confirm-source-switch"],
      env,
    );
    assertEquals(confirmed.code, 1, "every collection failed against the refusing source");
    const again = await run(["backfill"], env);
    assertEquals(again.code, 0, again.stdout);
    assert(again.stdout.includes("0 to page"), "the completed collections were left as they were");
  } finally {
    await other.close();
    await relay.close();
    await db.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
