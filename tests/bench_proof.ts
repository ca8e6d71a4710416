/**
 * Issue 13's proof cost per commit, in CPU time, over the frames of the proof-checked live bench
 * (or its own when run alone: `deno run -A tests/bench_proof.ts [events]`): the proof of each
 * commit with a delete, and of each commit of creates only (which the consumer proves when the
 * index lacks one of its pairs).
 */
import process from "node:process";
import { makeWorld, SimStream } from "../lib/sim/mod.ts";
import { decodeFirehoseFrame, type FirehoseCommit } from "../lib/stream/mod.ts";
import { proveCommit } from "../lib/stream/proof.ts";

/** Process CPU time (every thread) in µs. */
function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Per-commit proof costs over `frames`, in µs of CPU; logs one line. */
export async function proofCost(
  frames: readonly Uint8Array[],
  log: (l: string) => void,
): Promise<{ deleteProof: number; createProof: number }> {
  const deletes: FirehoseCommit[] = [], creates: FirehoseCommit[] = [];
  for (const f of frames) {
    const ev = decodeFirehoseFrame(f);
    if (ev.type !== "commit" || !ev.firehose) continue;
    if (ev.ops.some((o) => o.action === "delete")) deletes.push(ev.firehose);
    else if (ev.ops.every((o) => o.action === "create")) creates.push(ev.firehose);
  }
  const each = async (list: FirehoseCommit[]) => {
    for (const c of list.slice(0, 200)) await proveCommit(c); // warm-up, not timed
    const t0 = cpuUs();
    for (const c of list) await proveCommit(c);
    return list.length === 0 ? 0 : (cpuUs() - t0) / list.length;
  };
  const deleteProof = await each(deletes);
  const createProof = await each(creates);
  log(
    `[live] proof cost per commit (CPU, same frames): ${deletes.length} commits with deletes ${
      Math.round(deleteProof)
    } µs each, ${creates.length} of creates only ${Math.round(createProof)} µs each`,
  );
  return { deleteProof, createProof };
}

if (import.meta.main) {
  const n = Number(Deno.args[0] ?? 20_000);
  const world = makeWorld({ seed: 9, largeSizes: [4000, 3000, 2000], collections: 20 });
  const stream = new SimStream(world, { seed: 9, backlog: n, realRepos: true });
  await stream.generate(n);
  await proofCost(stream.frames(), console.log);
}
