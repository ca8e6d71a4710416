/**
 * The index's write path alone, without the service: pages of 10,000 sim DIDs written into a
 * LevelDB opened as the IndexStore opens it, each page sorted and read (getMany) before its batch as
 * applyPage does, or written blind (--blind). Every --every pairs it prints the process's CPU per
 * pair and the table files per level, which tells the cost of reading absent keys in a deeper tree
 * from the rest of the pipeline (HTTP, JSON, progress). Linux only: CPU comes from /proc.
 *
 *   deno task bench:lsm [--pairs 47M] [--collections 7] [--blind] [--block-size N] [--write-buffer N]
 */
import { ClassicLevel } from "classic-level";
import { parseCommandLine } from "../lib/util/args.ts";
import { CKPT, compactDid, encodeId, rbcPrefix } from "../lib/index/keys.ts";
import { levelOptions } from "../lib/index/store.ts";
import { DidFilter } from "../lib/index/live.ts";
import { formatDid } from "../lib/sim/world.ts";
import { numberFlag, parsePairs } from "./bench_scale.ts";
import { processCpuS } from "./bench_child.ts";

const PAGE = 10_000;

/** What to run. */
export interface LsmFlags {
  readonly pairs: number;
  /** Collections written at once, each one page after another (the service's largest run so). */
  readonly collections: number;
  readonly blind: boolean;
  readonly blockSize?: number;
  readonly writeBuffer?: number;
  /**
   * MiB of a fixed Bloom filter per collection of the DIDs it has written: pages read from LevelDB
   * only the DIDs it may hold (what an in-memory filter would save a first generation).
   */
  readonly filterMib?: number;
  readonly every: number;
}

/** One stretch of the run. */
export interface LsmRow {
  /** Pairs written at its end. */
  readonly pairs: number;
  readonly pairsPerS: number;
  /** The whole process's CPU (all threads) per pair written in the stretch, in µs. */
  readonly cpuUsPerPair: number;
  /** Table files at levels 0..4. */
  readonly levels: readonly number[];
  /** Share of the stretch's pairs read from LevelDB before their write. */
  readonly readShare: number;
}

const USAGE = `usage: deno task bench:lsm [flags]
  --pairs N          pairs to write: 47M, 1.5M, 500k or an integer (47M)
  --collections N    collections written at once (7, the network's large ones)
  --blind            write without reading first
  --block-size N     LevelDB block size in bytes (LevelDB's 4096)
  --write-buffer N   LevelDB write buffer in bytes (the index's)
  --filter-mib N     read only DIDs a fixed N MiB Bloom filter per collection may hold
  --every N          pairs per printed row (2M)`;

/** Parses the flags; throws naming the flag and value at fault. */
export function parseLsmFlags(args: readonly string[]): LsmFlags | "help" {
  const { values } = parseCommandLine(args, {
    pairs: { type: "string" },
    collections: { type: "string" },
    blind: { type: "boolean" },
    "block-size": { type: "string" },
    "write-buffer": { type: "string" },
    "filter-mib": { type: "string" },
    every: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) return "help";
  const int = (k: string, min: number, max: number) => numberFlag(values, k, min, max, true);
  return {
    pairs: parsePairs((values.pairs as string | undefined) ?? "47M"),
    collections: int("collections", 1, 64) ?? 7,
    blind: values.blind === true,
    blockSize: int("block-size", 1024, 4 * 1024 * 1024),
    writeBuffer: int("write-buffer", 1024 * 1024, 1024 * 1024 * 1024),
    filterMib: int("filter-mib", 1, 1024),
    every: (values.every as string | undefined) === undefined
      ? 2_000_000
      : parsePairs(values.every as string),
  };
}

/** Writes `flags.pairs` pairs into a new LevelDB at `dir`, calling `onRow` every `flags.every`. */
export async function runLsm(
  dir: string,
  flags: LsmFlags,
  onRow: (row: LsmRow) => void = () => {},
): Promise<LsmRow[]> {
  const db = new ClassicLevel<string, string>(dir, {
    ...levelOptions({ writeBufferSize: flags.writeBuffer }),
    ...(flags.blockSize === undefined ? {} : { blockSize: flags.blockSize }),
  });
  await db.open({ multithreading: true });
  const rows: LsmRow[] = [];
  let written = 0, next = 0, mark = 0, read = 0;
  let t = performance.now(), cpu = processCpuS();
  // The sim's DIDs of accounts 0, 1, 2, …: random-looking, never repeated.
  const did = () => formatDid(next++, 1);
  const row = () => {
    const now = performance.now(), c = processCpuS();
    const levels = [0, 1, 2, 3, 4].map((l) =>
      Number(db.getProperty(`leveldb.num-files-at-level${l}`))
    );
    const r: LsmRow = {
      pairs: written,
      pairsPerS: (written - mark) / ((now - t) / 1000),
      cpuUsPerPair: (c - cpu) * 1e6 / (written - mark),
      levels,
      readShare: read / (written - mark),
    };
    rows.push(r);
    onRow(r);
    mark = written, t = now, cpu = c, read = 0;
  };
  const collection = async (n: number) => {
    const prefix = rbcPrefix(encodeId(n));
    const filter = flags.filterMib === undefined
      ? undefined
      : new DidFilter({ fixedBits: flags.filterMib * 8 * 1024 * 1024 });
    while (next < flags.pairs) {
      const count = Math.min(PAGE, flags.pairs - next);
      const keys: string[] = [];
      for (let i = 0; i < count; i++) keys.push(prefix + compactDid(did()));
      keys.sort();
      const ask = flags.blind ? [] : filter ? keys.filter((k) => filter.mayHave(k)) : keys;
      if (ask.length > 0) await db.getMany(ask);
      const batch = db.batch();
      for (const k of keys) batch.put(k, "1");
      batch.put(CKPT + n, JSON.stringify({ cursor: String(next), imported: written }));
      await batch.write();
      for (const k of keys) filter?.add(k);
      // Counted with the write, so a stretch's share covers the pages it wrote.
      written += count, read += ask.length;
      if (written - mark >= flags.every || written === flags.pairs) row();
    }
  };
  try {
    await Promise.all(Array.from({ length: flags.collections }, (_, n) => collection(n)));
  } finally {
    await db.close();
  }
  return rows;
}

async function main(): Promise<void> {
  let flags: LsmFlags | "help";
  try {
    flags = parseLsmFlags(Deno.args);
  } catch (err) {
    console.error(`bench:lsm: ${(err as Error).message}\n${USAGE}`);
    Deno.exit(2);
  }
  if (flags === "help") {
    console.log(USAGE);
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "bench-lsm-" });
  console.log(
    `bench:lsm: ${flags.pairs.toLocaleString("en-US")} pairs, ${flags.collections} collections, ${
      flags.blind ? "blind writes" : "read before write"
    }, block ${flags.blockSize ?? 4096} B, write buffer ${flags.writeBuffer ?? "the index's"}${
      flags.filterMib === undefined ? "" : `, a ${flags.filterMib} MiB filter per collection`
    }; ${dir}`,
  );
  console.log("   pairs    pairs/s   CPU µs/pair   read   tables at L0/L1/L2/L3/L4");
  const t0 = performance.now(), c0 = processCpuS();
  try {
    await runLsm(dir, flags, (r) =>
      console.log(
        `${(r.pairs / 1e6).toFixed(1).padStart(7)}M ${
          Math.round(r.pairsPerS).toLocaleString("en-US").padStart(10)
        } ${r.cpuUsPerPair.toFixed(2).padStart(13)} ${
          (r.readShare * 100).toFixed(0).padStart(5)
        }%   ${r.levels.join("/")}`,
      ));
    const s = (performance.now() - t0) / 1000;
    console.log(
      `whole run: ${s.toFixed(1)} s, ${
        Math.round(flags.pairs / s).toLocaleString("en-US")
      } pairs/s, ${((processCpuS() - c0) * 1e6 / flags.pairs).toFixed(2)} CPU µs/pair`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
