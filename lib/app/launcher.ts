/**
 * Stopping together with the quick start's launcher. `npx -y deno@2 task …` runs
 * `npm exec` → `sh -c 'deno' task …` → `deno task` → this process; a SIGTERM to npx reaches the
 * shell, which dies without passing it on, and `deno task` and this process would go on alone.
 * So when started by `npm exec`, this process watches the processes between itself and npm, and
 * stops as on SIGTERM when one of them is gone. Linux only (it reads /proc); elsewhere a no-op.
 */

/** One process, as /proc/<pid>/stat tells it. */
export interface ProcInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly comm: string;
  /** Start time in clock ticks since boot: tells a process from a later one with the same pid. */
  readonly start: string;
}

/** Reads a process's stat line; undefined when it is gone. */
export type StatReader = (pid: number) => string | undefined;

/** The real reader, over /proc. */
export const procStat: StatReader = (pid) => {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
};

/** Parses a /proc/<pid>/stat line (the command name may hold spaces and parentheses). */
export function parseStat(line: string): ProcInfo | undefined {
  const open = line.indexOf("("), close = line.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  const rest = line.slice(close + 2).split(" ");
  // Fields after the name: state(3) ppid(4) … starttime(22).
  const ppid = Number(rest[1]), start = rest[19];
  if (!Number.isInteger(ppid) || start === undefined) return undefined;
  return {
    pid: Number(line.slice(0, open).trim()),
    ppid,
    comm: line.slice(open + 1, close),
    start,
  };
}

/**
 * The processes from `ppid` up to and including the nearest `npm`/`npx`/`node` one (the launcher),
 * or undefined when none is found within a few levels (not started by npx; nothing to watch).
 */
export function launcherChain(ppid: number, read: StatReader = procStat): ProcInfo[] | undefined {
  const chain: ProcInfo[] = [];
  let pid = ppid;
  for (let depth = 0; depth < 6 && pid > 1; depth++) {
    const raw = read(pid);
    const info = raw === undefined ? undefined : parseStat(raw);
    if (!info) return undefined;
    chain.push(info);
    if (/^(npm|npx|node)\b/.test(info.comm)) return chain;
    pid = info.ppid;
  }
  return undefined;
}

/** True while every process of the chain is still the same running process. */
export function chainAlive(chain: readonly ProcInfo[], read: StatReader = procStat): boolean {
  return chain.every((p) => {
    const raw = read(p.pid);
    const now = raw === undefined ? undefined : parseStat(raw);
    return now !== undefined && now.start === p.start;
  });
}

/**
 * Calls `onGone` once when a process between this one and npm is gone; checks every `everyMs`.
 * Returns a function that stops watching. Does nothing unless `npmExec` and /proc are there.
 */
export function watchLauncher(opts: {
  npmExec: boolean;
  ppid: number;
  onGone: () => void;
  everyMs?: number;
  read?: StatReader;
}): () => void {
  const read = opts.read ?? procStat;
  if (!opts.npmExec) return () => {};
  const chain = launcherChain(opts.ppid, read);
  if (!chain) return () => {};
  const timer = setInterval(() => {
    if (chainAlive(chain, read)) return;
    clearInterval(timer);
    opts.onGone();
  }, opts.everyMs ?? 1_000);
  // Never the reason the process stays alive.
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}
