/** lib/stream/proof.ts: what a #commit proves, checked against the sim repo's full truth. */
import fc from "fast-check";
import { fromUint8Array, writeCarStream } from "@atcute/car";
import { decode, encode, toBytes } from "@atcute/cbor";
import * as CID from "@atcute/cid";
import { assert, assertEquals } from "./_assert.ts";
import { type ProofMode, type SimCommitBody, SimRepo, type SimWrite } from "../lib/sim/repo.ts";
import { type CommitProof, type ProofReason, proveCommit } from "../lib/stream/proof.ts";

const DID = "did:plc:proofproofproofproofproo";
const RUNS = Number(Deno.env.get("FUZZ_RUNS") ?? 60);
const SEED = Deno.env.get("FUZZ_SEED") ? Number(Deno.env.get("FUZZ_SEED")) : undefined;

// Collections whose keys sort next to each other: "-" < "/" < "s", so `like-b/…` < `like/…` < `likes/…`.
const COLLECTIONS = ["app.x.like", "app.x.likes", "app.x.like-b", "app.y.post"];

let clock = Date.UTC(2025, 0, 1);
const now = () => (clock += 7);

function newRepo(): SimRepo {
  return new SimRepo(DID, { now, sign: false });
}

function proven(p: CommitProof) {
  if (!p.proven) throw new Error(`expected a proof, got ${p.reason}: ${p.detail}`);
  return p;
}

/** A repo holding `n` records in each of `collections`. */
async function seeded(collections: string[], n: number): Promise<SimRepo> {
  const repo = newRepo();
  for (let i = 0; i < n; i++) {
    await repo.commit(collections.map((collection) => ({ action: "create", collection })));
  }
  return repo;
}

/** The CAR's blocks as a map, and a CAR rebuilt from such a map. */
function carBlocks(car: Uint8Array): { root: CID.CidLink; blocks: Map<string, Uint8Array> } {
  const reader = fromUint8Array(car);
  const blocks = new Map<string, Uint8Array>();
  for (const e of reader) blocks.set(CID.toString(e.cid), e.bytes);
  return { root: reader.roots[0], blocks };
}
async function rebuildCar(root: CID.CidLink, blocks: Map<string, Uint8Array>): Promise<Uint8Array> {
  const chunks = await Array.fromAsync(
    writeCarStream(
      [root],
      [...blocks].map(([c, data]) => ({ cid: CID.fromString(c).bytes, data })),
    ),
  );
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) out.set(c, at), at += c.length;
  return out;
}

Deno.test("proof: a delete of a collection's last record is proven, other deletes are not", async () => {
  const repo = await seeded(["app.x.like", "app.y.post"], 1);
  const [post] = repo.rkeys("app.y.post");
  await repo.commit([{ action: "create", collection: "app.y.post" }]);
  const c1 = await repo.commit([{ action: "delete", collection: "app.y.post", rkey: post }]);
  const p1 = proven(await proveCommit(c1));
  assertEquals(p1.ops[0].lastInCollection, false, "one post remains");
  assertEquals(p1.emptied, []);

  const [like] = repo.rkeys("app.x.like");
  const c2 = await repo.commit([{ action: "delete", collection: "app.x.like", rkey: like }]);
  const p2 = proven(await proveCommit(c2));
  assertEquals(p2.ops[0].lastInCollection, true);
  assertEquals(p2.emptied, ["app.x.like"]);
  assertEquals(repo.hasRecordIn("app.x.like"), false);
});

Deno.test("proof: a create is the first record only when the collection was empty", async () => {
  const repo = await seeded(["app.x.likes"], 3);
  const first = proven(
    await proveCommit(await repo.commit([{ action: "create", collection: "app.x.like" }])),
  );
  assertEquals([first.ops[0].firstInCollection, first.entered], [true, ["app.x.like"]]);
  const second = proven(
    await proveCommit(await repo.commit([{ action: "create", collection: "app.x.like" }])),
  );
  assertEquals([second.ops[0].firstInCollection, second.entered], [false, []]);
});

Deno.test("proof: the last record of the repo, and the first of an empty repo", async () => {
  const repo = newRepo();
  const c1 = await repo.commit([{ action: "create", collection: "app.y.post" }]);
  assertEquals(proven(await proveCommit(c1)).entered, ["app.y.post"]);
  const [rkey] = repo.rkeys("app.y.post");
  const c2 = await repo.commit([{ action: "delete", collection: "app.y.post", rkey }]);
  assertEquals(proven(await proveCommit(c2)).emptied, ["app.y.post"]);
  assertEquals(repo.size, 0);
});

Deno.test("proof: multi-op commits decide on the commit's end state", async () => {
  const repo = await seeded(["app.x.like", "app.x.likes", "app.y.post"], 2);
  const likes = repo.rkeys("app.x.like");
  const post = repo.rkeys("app.y.post")[0];
  const writes: SimWrite[] = [
    // both likes go: the collection empties, proven by either delete
    { action: "delete", collection: "app.x.like", rkey: likes[0] },
    { action: "delete", collection: "app.x.like", rkey: likes[1] },
    // a post goes and another comes: the collection never empties
    { action: "delete", collection: "app.y.post", rkey: post },
    { action: "create", collection: "app.y.post" },
    // two firsts in one commit
    { action: "create", collection: "app.x.like-b" },
    { action: "create", collection: "app.x.like-b" },
  ];
  const p = proven(await proveCommit(await repo.commit(writes)));
  assertEquals(p.emptied, ["app.x.like"]);
  assertEquals(p.entered, ["app.x.like-b"]);
  assertEquals(
    p.ops.map((o) => [o.action, o.collection, o.lastInCollection, o.firstInCollection]),
    [
      ["delete", "app.x.like", true, false],
      ["delete", "app.x.like", true, false],
      ["delete", "app.y.post", false, false],
      ["create", "app.y.post", false, false],
      ["create", "app.x.like-b", false, true],
      ["create", "app.x.like-b", false, true],
    ],
  );
});

Deno.test("proof: a deep repo (hundreds of records) proves deletes down to the last", async () => {
  const repo = await seeded(["app.x.like", "app.x.likes", "app.y.post"], 150);
  const rkeys = repo.rkeys("app.x.likes");
  for (let i = 0; i < rkeys.length; i++) {
    const body = await repo.commit([{
      action: "delete",
      collection: "app.x.likes",
      rkey: rkeys[i],
    }]);
    if (i % 15 !== 14 && i !== rkeys.length - 1) continue; // prove a sample, and the last
    const p = proven(await proveCommit(body));
    assertEquals(p.ops[0].lastInCollection, i === rkeys.length - 1, `delete ${i}`);
  }
});

Deno.test("proof: reasons, table", async (t) => {
  const base = await seeded(["app.x.like", "app.y.post"], 20);
  const rkey = () => base.rkeys("app.x.like")[0];
  const del = (): SimWrite => ({ action: "delete", collection: "app.x.like", rkey: rkey() });

  const cases: [string, () => Promise<SimCommitBody | Record<string, unknown>>, ProofReason][] = [
    ["no prevData", () => base.commit([del()], { proof: "no-prev-data" }), "no_prev_data"],
    ["delete without prev", async () => {
      const b = await base.commit([del()]);
      return { ...b, ops: b.ops.map(({ action, path, cid }) => ({ action, path, cid })) };
    }, "no_prev_data"],
    ["tooBig", async () => ({ ...await base.commit([del()]), tooBig: true }), "too_big"],
    ["no MST nodes", () => base.commit([del()], { proof: "withheld" }), "missing_blocks"],
    ["root node corrupted", () => base.commit([del()], { proof: "corrupted" }), "bad_block"],
    [
      "prevData of another tree",
      () => base.commit([del()], { proof: "wrong-prev-data" }),
      "not_inverting",
    ],
    ["commit block missing", async () => {
      const b = await base.commit([del()]);
      const { root, blocks } = carBlocks(b.blocks);
      blocks.delete(b.commit.$link);
      return { ...b, blocks: await rebuildCar(root, blocks) };
    }, "missing_blocks"],
    ["only the commit and the root node carried", async () => {
      const b = await base.commit([del()]);
      const { root, blocks } = carBlocks(b.blocks);
      const data = decode(blocks.get(b.commit.$link)!).data.$link;
      for (const c of [...blocks.keys()]) if (c !== data && c !== b.commit.$link) blocks.delete(c);
      return { ...b, blocks: await rebuildCar(root, blocks) };
    }, "missing_blocks"],
    [
      "CAR is garbage",
      async () => ({ ...await base.commit([del()]), blocks: new Uint8Array([1, 2, 3]) }),
      "bad_block",
    ],
    [
      "commit for another DID",
      async () => ({ ...await base.commit([del()]), repo: "did:plc:other" }),
      "not_inverting",
    ],
    [
      "rev does not match the commit",
      async () => ({ ...await base.commit([del()]), rev: "2222222222222" }),
      "not_inverting",
    ],
    ["create claims another record CID", async () => {
      const b = await base.commit([{ action: "create", collection: "app.y.post" }]);
      const other = CID.toCidLink(await CID.create(0x71, encode({ other: true })));
      return { ...b, ops: [{ ...b.ops[0], cid: other }] };
    }, "not_inverting"],
    ["delete claims the wrong prev", async () => {
      const b = await base.commit([del()]);
      const other = CID.toCidLink(await CID.create(0x71, encode({ other: true })));
      return { ...b, ops: [{ ...b.ops[0], prev: other }] };
    }, "not_inverting"],
    ["an op left out", async () => {
      const b = await base.commit([del(), { action: "create", collection: "app.y.post" }]);
      return { ...b, ops: b.ops.slice(0, 1) };
    }, "not_inverting"],
    ["a delete of a key still in the tree", async () => {
      const b = await base.commit([{ action: "create", collection: "app.y.post" }]);
      return {
        ...b,
        ops: [{ action: "delete", path: b.ops[0].path, cid: null, prev: b.ops[0].cid }],
      };
    }, "not_inverting"],
    ["duplicate path", async () => {
      const b = await base.commit([del()]);
      return { ...b, ops: [b.ops[0], b.ops[0]] };
    }, "malformed"],
    ["unknown action", async () => {
      const b = await base.commit([del()]);
      return { ...b, ops: [{ ...b.ops[0], action: "remove" }] };
    }, "malformed"],
    ["path without a collection", async () => {
      const b = await base.commit([del()]);
      return { ...b, ops: [{ ...b.ops[0], path: "noslash" }] };
    }, "malformed"],
    ["create with a prev", async () => {
      const b = await base.commit([{ action: "create", collection: "app.y.post" }]);
      return { ...b, ops: [{ ...b.ops[0], prev: b.ops[0].cid }] };
    }, "malformed"],
    ["delete with a cid", async () => {
      const b = await base.commit([del()]);
      return { ...b, ops: [{ ...b.ops[0], cid: b.ops[0].prev }] };
    }, "malformed"],
  ];
  for (const [name, make, reason] of cases) {
    await t.step(name, async () => {
      const p = await proveCommit((await make()) as SimCommitBody);
      assertEquals(p.proven ? "proven" : p.reason, reason, p.proven ? "" : p.detail);
    });
  }
});

Deno.test("proof: accepts the blocks as DAG-CBOR decodes them (a Bytes wrapper)", async () => {
  const repo = await seeded(["app.x.like"], 3);
  const b = await repo.commit([{ action: "create", collection: "app.y.post" }]);
  const decoded = decode(encode({ ...b, blocks: toBytes(b.blocks) }));
  assertEquals(proven(await proveCommit(decoded)).entered, ["app.y.post"]);
});

// An abstract workload step, interpreted against the repo's current state.
const stepArb = fc.record({
  writes: fc.array(
    fc.record({
      kind: fc.constantFrom("create", "create", "update", "delete", "delete"),
      c: fc.nat(COLLECTIONS.length - 1),
      pick: fc.nat(),
    }),
    { minLength: 1, maxLength: 4 },
  ),
  mode: fc.constantFrom<ProofMode>("full", "full", "full", "diff-only", "corrupted", "withheld"),
});

function toWrites(
  repo: SimRepo,
  step: { kind: string; c: number; pick: number }[],
) {
  const writes: SimWrite[] = [];
  const taken = new Set<string>();
  for (const w of step) {
    const collection = COLLECTIONS[w.c];
    const free = repo.rkeys(collection).filter((k) => !taken.has(`${collection}/${k}`));
    if (w.kind === "create" || free.length === 0) {
      writes.push({ action: "create", collection });
      continue;
    }
    const rkey = free[w.pick % free.length];
    taken.add(`${collection}/${rkey}`);
    writes.push({ action: w.kind as "update" | "delete", collection, rkey });
  }
  return writes;
}

Deno.test("proof property: every verdict equals the truth from the full repo; doubt never removes", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 40 }), async (steps) => {
      const repo = newRepo();
      for (const step of steps) {
        const before = new Set(repo.collections().keys());
        const writes = toWrites(repo, step.writes);
        const body = await repo.commit(writes, { proof: step.mode });
        const after = new Set(repo.collections().keys());
        const p = await proveCommit(body);
        if (step.mode === "full") assert(p.proven, `full proof refused: ${!p.proven && p.detail}`);
        // With no MST node carried, only a commit that leaves the repo empty can still be proven.
        if (step.mode === "withheld" && repo.size > 0) assert(!p.proven);
        if (step.mode === "corrupted") assert(!p.proven);
        if (!p.proven) continue;
        for (const op of p.ops) {
          if (op.action === "delete") assertEquals(op.lastInCollection, !after.has(op.collection));
          else assertEquals(op.lastInCollection, false);
          if (op.action === "create") {
            assertEquals(op.firstInCollection, !before.has(op.collection));
          } else assertEquals(op.firstInCollection, false);
        }
        const emptied = [...before].filter((c) => !after.has(c));
        const touchedDeletes = new Set(
          p.ops.filter((o) => o.action === "delete").map((o) => o.collection),
        );
        assertEquals(new Set(p.emptied), new Set(emptied.filter((c) => touchedDeletes.has(c))));
        assertEquals(new Set(p.entered), after.difference(before));
      }
    }),
    { numRuns: RUNS, seed: SEED },
  );
});

Deno.test("proof property: a flipped byte anywhere in the CAR never yields a wrong verdict", async () => {
  const repo = await seeded(["app.x.like", "app.x.likes"], 6);
  await fc.assert(
    fc.asyncProperty(fc.nat(), fc.nat(255), fc.boolean(), async (at, xor, del) => {
      const rkeys = repo.rkeys("app.x.like");
      const writes: SimWrite[] = del && rkeys.length > 0
        ? [{ action: "delete", collection: "app.x.like", rkey: rkeys[0] }]
        : [{ action: "create", collection: "app.x.like" }];
      const before = repo.hasRecordIn("app.x.like");
      const body = await repo.commit(writes);
      const blocks = body.blocks.slice();
      blocks[at % blocks.length] ^= xor || 1;
      const p = await proveCommit({ ...body, blocks });
      if (!p.proven) return;
      const op = p.ops[0];
      if (op.action === "delete") {
        assertEquals(op.lastInCollection, !repo.hasRecordIn("app.x.like"));
      } else assertEquals(op.firstInCollection, !before);
    }),
    { numRuns: RUNS * 3, seed: SEED },
  );
});
