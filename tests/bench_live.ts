/**
 * Live indexing figures for `deno task bench`: (1) decode + index throughput, a consumer catching up
 * on a firehose backlog from cursor 0 (its own process, over a loopback WebSocket); (2) lag at
 * 2,000 events/s while `main.ts start` also runs a zero-latency backfill of the bench world.
 */
import process from "node:process";
import { freePort, freshDatabase, shippedV8Flags, spawnMain } from "./_child.ts";
import { makeWorld, startSimRelay } from "../lib/sim/mod.ts";
import { IndexStore, type LiveStep } from "../lib/index/mod.ts";
import { decideCommit, decodeFirehoseFrame, newPlanCounts, planEvent } from "../lib/stream/mod.ts";
import { proofCost } from "./bench_proof.ts";

/** One figure: name, target, measured, pass. */
export interface LiveFigure {
  readonly name: string;
  readonly target: string;
  readonly measured: string;
  readonly ok: boolean;
}

/** Options; defaults give the figures the README quotes. */
export interface LiveBenchOptions {
  /** Backlog events for the throughput run. */
  readonly backlog?: number;
  /** Events of real sync v1.1 commits for the proof-checked run. */
  readonly proofBacklog?: number;
  /** Events per second for the lag run. */
  readonly rate?: number;
  /** Seconds of stream during the lag run. */
  readonly seconds?: number;
  readonly log?: (line: string) => void;
}

/** Runs the live measurements. */
export async function runLiveBench(opts: LiveBenchOptions = {}): Promise<LiveFigure[]> {
  const log = opts.log ?? ((l: string) => console.error(l));
  return [
    await decodeIndex(opts.backlog ?? 100_000, log),
    await proofChecked(opts.proofBacklog ?? 20_000, log),
    await throughput(opts.backlog ?? 100_000, log),
    ...await lag(opts, log),
  ];
}

/** Process CPU time (every thread: LevelDB's too) in seconds. */
function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** A process's CPU time (user + system, every thread) in seconds, from /proc; 0 when unreadable. */
async function processCpuSeconds(pid: number): Promise<number> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** The 1-minute load average: the machine is shared, so wall-clock rates depend on it. */
function load(): string {
  return Deno.loadavg()[0].toFixed(1);
}

/**
 * The consumer's path without the socket, over frames built beforehand (the generator costs
 * nothing here): decode each frame, plan, write batches with a cursor. Wall-clock ops/s is the
 * figure; ops per CPU-second (all threads) shows the path's cost apart from the machine's load.
 */
export async function decodeIndex(n: number, log: (l: string) => void): Promise<LiveFigure> {
  const relay = await startSimRelay({
    world: makeWorld({ seed: 8 }),
    stream: { seed: 8, backlog: n },
  });
  const dir = await Deno.makeTempDir({ prefix: "backfill-bench-decode-" });
  const index = await IndexStore.open({ path: dir });
  try {
    await relay.stream.generate(n);
    const frames = relay.stream.frames();
    const counts = newPlanCounts();
    const c0 = cpuSeconds(), t0 = performance.now();
    let steps: LiveStep[] = [], cursor = 0;
    for (const f of frames) {
      const ev = decodeFirehoseFrame(f);
      planEvent(ev, steps, counts);
      if ("cursor" in ev && ev.cursor !== undefined) cursor = ev.cursor;
      if (steps.length >= 4000) {
        await index.applyLive(steps, { stream: "bench", value: { cursor } });
        steps = [];
      }
    }
    await index.applyLive(steps, { stream: "bench", value: { cursor } });
    const s = (performance.now() - t0) / 1000, cpu = cpuSeconds() - c0;
    const rate = counts.ops / s, perCpu = counts.ops / cpu;
    log(
      `[live] decode + index in process: ${counts.ops} ops in ${s.toFixed(2)} s = ${
        Math.round(rate)
      } ops/s wall, ${Math.round(perCpu)} ops per CPU-second (load ${load()})`,
    );
    return {
      name: "live decode + index (no socket)",
      target: "≥ 50,000 ops/s",
      measured: `${Math.round(rate).toLocaleString("en-US")} ops/s over ${counts.ops} ops (${
        Math.round(perCpu).toLocaleString("en-US")
      }/CPU-s, load ${load()})`,
      ok: rate >= 50_000,
    };
  } finally {
    await index.close();
    await relay.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Issue 13: the same path with every delete (and every create of a pair the index lacks) proven
 * from the commit's blocks. Frames are real sync v1.1 commits of real MSTs (lib/sim/repo.ts) with
 * the network's mix (mostly creates by accounts writing again, ~10% deletes); the index starts
 * with the world's listing, as after a backfill. The same frames without proofs give the ratio.
 */
export async function proofChecked(n: number, log: (l: string) => void): Promise<LiveFigure> {
  const world = makeWorld({ seed: 9, largeSizes: [4000, 3000, 2000], collections: 20 });
  const relay = await startSimRelay({ world, stream: { seed: 9, backlog: n, realRepos: true } });
  try {
    const g0 = performance.now();
    await relay.stream.generate(n);
    const frames = relay.stream.frames();
    log(
      `[live] proof run: ${n} events of real commits built in ${
        ((performance.now() - g0) / 1000).toFixed(1)
      } s`,
    );
    const run = async (prove: boolean) => {
      const dir = await Deno.makeTempDir({ prefix: "backfill-bench-proof-" });
      const index = await IndexStore.open({ path: dir });
      try {
        for (const c of world.collections()) {
          const dids = world.dids(c);
          for (let i = 0; i < dids.length; i += 4000) {
            await index.applyLive(
              dids.slice(i, i + 4000).map((did) => ({ kind: "add", collection: c, did })),
            );
          }
        }
        const counts = newPlanCounts();
        let steps: LiveStep[] = [], cursor = 0, deletes = 0, proofs = 0;
        const holds = (c: string, did: string) => index.holds(c, did);
        const c0 = cpuSeconds(), t0 = performance.now();
        for (const f of frames) {
          const ev = decodeFirehoseFrame(f);
          let decision;
          if (ev.type === "commit") {
            deletes += ev.ops.filter((o) => o.action === "delete").length;
            if (prove) {
              decision = await decideCommit(ev, holds);
              if (decision.deletes.some((d) => d !== undefined) || decision.entered.size > 0) {
                proofs++;
              }
            }
          }
          planEvent(ev, steps, counts, decision);
          if ("cursor" in ev && ev.cursor !== undefined) cursor = ev.cursor;
          if (steps.length >= 4000) {
            await index.applyLive(steps, { stream: "bench", value: { cursor } });
            steps = [];
          }
        }
        await index.applyLive(steps, { stream: "bench", value: { cursor } });
        const s = (performance.now() - t0) / 1000, cpu = cpuSeconds() - c0;
        let removed = 0;
        for (const c of index.liveCounts().values()) removed += c.removedByProof ?? 0;
        return {
          rate: counts.ops / s,
          perCpu: counts.ops / cpu,
          ops: counts.ops,
          deletes,
          proofs,
          removed,
        };
      } finally {
        await index.close();
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    };
    await run(false); // warms the JIT and the page cache; not reported
    const proven = await run(true);
    const plain = await run(false);
    await proofCost(frames, log);
    const share = (100 * proven.deletes / proven.ops).toFixed(1);
    log(
      `[live] proof-checked: ${proven.ops} ops (${share}% deletes), ${proven.proofs} commits proven, ` +
        `${proven.removed} pairs removed by proof: ${Math.round(proven.rate)} ops/s wall, ${
          Math.round(proven.perCpu)
        } ops per CPU-second (load ${load()}); ` +
        `the same frames without proofs ${Math.round(plain.rate)} ops/s (ratio ${
          (proven.rate / plain.rate).toFixed(2)
        })`,
    );
    return {
      name: "live decode + proof-checked index",
      target: "≥ 20,000 ops/s",
      measured: `${Math.round(proven.rate).toLocaleString("en-US")} ops/s, ${share}% deletes, ${
        (proven.rate / plain.rate).toFixed(2)
      }× unproven (${Math.round(proven.perCpu).toLocaleString("en-US")}/CPU-s, load ${load()})`,
      ok: proven.rate >= 20_000,
    };
  } finally {
    await relay.close();
  }
}

/**
 * A consumer catching up on a firehose backlog from cursor 0, in its own process over a loopback
 * WebSocket, twice: into an empty index (every pair new, so most creates need a read and a proof)
 * and into one that holds the world's listing, as after the backfill (a day's backlog on a live
 * index). The figure is the second; both show ops per CPU-second (all threads), which do not depend
 * on what else the shared machine runs.
 */
export async function throughput(backlog: number, log: (l: string) => void): Promise<LiveFigure> {
  const world = makeWorld({ seed: 7 });
  const relay = await startSimRelay({ world, stream: { seed: 7, backlog } });
  try {
    const t0 = performance.now();
    await relay.stream.generate(backlog);
    log(
      `[live] backlog: ${backlog} events generated in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s`,
    );
    const url = relay.url.replace("http", "ws") + "/xrpc/com.atproto.sync.subscribeRepos";
    const run = async (seeded: boolean) => {
      const dir = await Deno.makeTempDir({ prefix: "backfill-bench-live-" });
      try {
        if (seeded) {
          const index = await IndexStore.open({ path: dir });
          for (const c of world.collections()) {
            const dids = world.dids(c);
            for (let i = 0; i < dids.length; i += 4000) {
              await index.applyLive(
                dids.slice(i, i + 4000).map((did) => ({ kind: "add", collection: c, did })),
              );
            }
          }
          await index.close();
        }
        const out = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            `--v8-flags=${
              shippedV8Flags(
                Deno.readTextFileSync(new URL("../deno.json", import.meta.url)),
                "start",
              )
            }`,
            new URL("./bench_live_child.ts", import.meta.url).pathname,
            url,
            dir,
            String(relay.stream.lastSeq),
          ],
          stdout: "piped",
          stderr: "inherit",
        }).output();
        const r = JSON.parse(new TextDecoder().decode(out.stdout)) as {
          ms: number;
          cpuMs: number;
          events: number;
          ops: number;
          reconnects: number;
        };
        const rate = r.ops / (r.ms / 1000), perCpu = r.ops / (r.cpuMs / 1000);
        log(
          `[live] catch-up into ${
            seeded ? "a backfilled" : "an empty"
          } index: ${r.events} events, ${r.ops} ops in ${(r.ms / 1000).toFixed(2)} s = ${
            Math.round(rate)
          } ops/s wall (${Math.round(r.events / (r.ms / 1000))} events/s), ${
            Math.round(perCpu)
          } ops per CPU-second, ${r.reconnects} reconnects (load ${load()})`,
        );
        return { rate, perCpu, ops: r.ops };
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    };
    const empty = await run(false);
    const seeded = await run(true);
    return {
      name: "live decode + index, sustained",
      target: "≥ 50,000 ops/s",
      measured: `${Math.round(seeded.rate).toLocaleString("en-US")} ops/s over ${seeded.ops} ops (${
        Math.round(seeded.perCpu).toLocaleString("en-US")
      }/CPU-s; into an empty index ${Math.round(empty.rate).toLocaleString("en-US")} ops/s, ${
        Math.round(empty.perCpu).toLocaleString("en-US")
      }/CPU-s; load ${load()})`,
      ok: seeded.rate >= 50_000,
    };
  } finally {
    await relay.close();
  }
}

/**
 * Lag at `rate` events/s while `main.ts start` also runs a full-speed backfill of a 1.5M-pair world
 * into the same index. The events are generated beforehand and held back (the generator is slower
 * than the rate on this machine); the relay releases them at the rate, each stamped with the time
 * it is sent. Lag is the consumer's: time made durable minus event time, as status reports it over
 * the last 10,000 events, sampled each second while the backfill runs.
 */
export async function lag(opts: LiveBenchOptions, log: (l: string) => void): Promise<LiveFigure[]> {
  const rate = opts.rate ?? 2000, seconds = opts.seconds ?? 20;
  const world = makeWorld({
    seed: 42,
    collections: 100,
    largeSizes: [600_000, 400_000, 300_000, 200_000],
    tailMax: 60,
  });
  const n = rate * (seconds + 10);
  const relay = await startSimRelay({ world, stream: { seed: 42, backlog: n + 1000 } });
  const g0 = performance.now();
  await relay.stream.hold(n);
  log(
    `[live] lag run: ${n} events generated ahead in ${
      ((performance.now() - g0) / 1000).toFixed(1)
    } s`,
  );
  const db = await freshDatabase("bench_live_lag");
  const dataDir = await Deno.makeTempDir({ prefix: "backfill-bench-lag-" });
  const port = freePort();
  const base = `http://127.0.0.1:${port}`;
  const auth = { authorization: "Bearer bench" };
  const child = spawnMain(["start"], {
    DATABASE_URL: db.url,
    DATA_DIR: dataDir,
    PORT: String(port),
    HOST: "127.0.0.1",
    RELAY_ADMIN_PASSWORD: "bench",
    BACKFILL_SOURCE: relay.url,
    LEXICON_LIST_URL: `${relay.url}/llms.txt`,
    LIVE_STREAM_URL: relay.url.replace("http", "ws") + "/xrpc/com.atproto.sync.subscribeRepos",
    BACKFILL_MAX_RPS: "10000",
    LOG_LEVEL: "error",
  });
  // deno-lint-ignore no-explicit-any
  const status = async (): Promise<any> => {
    const r = await fetch(`${base}/admin/backfill-collections`, { headers: auth });
    return r.ok ? await r.json() : undefined;
  };
  try {
    const deadline = performance.now() + 60_000;
    while (!(await status().catch(() => undefined))?.live?.connected) {
      if (child.exited || performance.now() > deadline) {
        throw new Error(`server did not connect: ${await child.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const r0 = performance.now(), cpu0 = await processCpuSeconds(child.pid);
    let releasing = true;
    const released = relay.stream.release(rate).then(() => releasing = false);
    await new Promise((r) => setTimeout(r, 2000));
    await fetch(`${base}/admin/backfill-collections`, { method: "POST", headers: auth })
      .then((r) => r.body?.cancel());
    const p50s: number[] = [], p99s: number[] = [], rates: number[] = [];
    let backfillS = 0, pairs0: number | undefined, pairs1 = 0;
    const t0 = performance.now();
    while (releasing && performance.now() - t0 < (seconds + 5) * 1000) {
      await new Promise((r) => setTimeout(r, 1000));
      const s = await status();
      if (!s?.live || !s.running) continue;
      backfillS = (performance.now() - t0) / 1000;
      const imported: number = s.total_imported ?? 0;
      pairs0 ??= imported;
      pairs1 = imported;
      if (s.live.lag_p99_seconds !== null) {
        p50s.push(s.live.lag_p50_seconds);
        p99s.push(s.live.lag_p99_seconds);
      }
      rates.push(s.live.events_per_sec);
    }
    await released;
    const releaseS = (performance.now() - r0) / 1000;
    const serverCpu = (await processCpuSeconds(child.pid)) - cpu0;
    const last = await status();
    relay.stream.stop();
    const worst = Math.max(...p99s);
    const p50 = [...p50s].sort((a, b) => a - b)[Math.floor(p50s.length / 2)] ?? NaN;
    const meanRate = rates.reduce((a, b) => a + b, 0) / Math.max(1, rates.length);
    log(
      `[live] lag at ${rate} events/s (released ${n} in ${
        releaseS.toFixed(1)
      } s) with a backfill ` +
        `running for ${backfillS.toFixed(0)} s of it (${
          (pairs1 - (pairs0 ?? 0)).toLocaleString("en-US")
        } DIDs imported meanwhile): per 10k-event window, p50 ${
          p50s.map((x) => x.toFixed(2)).join(" ")
        }; p99 ${p99s.map((x) => x.toFixed(2)).join(" ")}; durable ${
          Math.round(meanRate)
        } events/s; the server used ${serverCpu.toFixed(1)} CPU-s in those ${
          releaseS.toFixed(1)
        } s; ${last?.live?.queue_overflows ?? "?"} queue overflows (load ${load()})`,
    );
    return [{
      name: `live lag at ${rate} events/s + backfill`,
      target: "p99 ≤ 1 s",
      measured: p99s.length > 0
        ? `p50 ${p50.toFixed(3)} s, worst p99 ${worst.toFixed(3)} s (${p99s.length} windows)`
        : "the backfill did not run while events flowed",
      ok: p99s.length > 0 && worst <= 1,
    }];
  } finally {
    child.kill("SIGTERM");
    await child.waitFor(15_000);
    child.kill("SIGKILL");
    await relay.close();
    await db.drop().catch(() => {});
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const figures = await runLiveBench();
  for (const f of figures) {
    console.log(
      `${f.name.padEnd(42)} ${f.target.padEnd(16)} ${f.measured.padEnd(44)} ${
        f.ok ? "PASS" : "MISS"
      }`,
    );
  }
}
