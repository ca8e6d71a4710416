/**
 * Issue 13's proof cost per commit, in CPU time, over the frames of the proof-checked live bench
 * (or its own when run alone: `deno run -A tests/bench_proof.ts [events]`): the full proof of each
 * commit with a delete, and for commits of creates only the cheap look at the commit's own tree
 * (`heldBefore`) and the full proof the consumer runs when neither that nor the index answers.
 */
import process from "node:process";
import { makeWorld, SimStream } from "../lib/sim/mod.ts";
import { decodeFirehoseFrame, type FirehoseCommit } from "../lib/stream/mod.ts";
import { heldBefore, proveCommit } from "../lib/stream/proof.ts";

/** Process CPU time (every thread) in µs. */
function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Per-commit proof costs over `frames`, in µs of CPU; logs one line. */
export async function proofCost(
  frames: readonly Uint8Array[],
  log: (l: string) => void,
): Promise<{ deleteProof: number; createCheck: number; createProof: number }> {
  const deletes: FirehoseCommit[] = [], creates: FirehoseCommit[] = [];
  for (const f of frames) {
    const ev = decodeFirehoseFrame(f);
    if (ev.type !== "commit" || !ev.firehose) continue;
    if (ev.ops.some((o) => o.action === "delete")) deletes.push(ev.firehose);
    else if (ev.ops.every((o) => o.action === "create")) creates.push(ev.firehose);
  }
  // A fresh object per call: the proof keeps what it read of a commit on its input object.
  const each = async (list: FirehoseCommit[], f: (c: FirehoseCommit) => Promise<unknown>) => {
    for (const c of list.slice(0, 200)) await f({ ...c }); // warm-up, not timed
    const t0 = cpuUs();
    for (const c of list) await f({ ...c });
    return list.length === 0 ? 0 : (cpuUs() - t0) / list.length;
  };
  const deleteProof = await each(deletes, proveCommit);
  let held = 0;
  const createCheck = await each(creates, async (c) => (await heldBefore(c)).size > 0 && held++);
  const createProof = await each(creates, proveCommit);
  log(
    `[live] proof cost per commit (CPU µs, same frames): ${deletes.length} with deletes, proof ${
      Math.round(deleteProof)
    }; ${creates.length} of creates only, own-tree check ${Math.round(createCheck)} (answers ${
      Math.round(100 * held / Math.max(1, creates.length))
    }%), proof ${Math.round(createProof)}`,
  );
  return { deleteProof, createCheck, createProof };
}

if (import.meta.main) {
  const n = Number(Deno.args[0] ?? 20_000);
  const world = makeWorld({ seed: 9, largeSizes: [4000, 3000, 2000], collections: 20 });
  const stream = new SimStream(world, { seed: 9, backlog: n, realRepos: true });
  await stream.generate(n);
  await proofCost(stream.frames(), console.log);
}
