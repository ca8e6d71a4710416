/** lib/sim/repo.ts: a real MST per account, committed as sync v1.1 `#commit` bodies. */
import fc from "fast-check";
import { fromUint8Array } from "@atcute/car";
import { decode, encode, fromBytes } from "@atcute/cbor";
import * as CID from "@atcute/cid";
import { P256PrivateKey } from "@atcute/crypto";
import * as TID from "@atcute/tid";
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import {
  PROOF_MODES,
  SEED_RKEY,
  SIM_SIGNING_KEY,
  SimRepo,
  SimRepos,
  type SimWrite,
} from "../lib/sim/repo.ts";
import { proveCommit } from "../lib/stream/proof.ts";

const DID = "did:plc:simreposimreposimreposim";
const RUNS = Number(Deno.env.get("FUZZ_RUNS") ?? 40);
const SEED = Deno.env.get("FUZZ_SEED") ? Number(Deno.env.get("FUZZ_SEED")) : undefined;

function blocksOf(car: Uint8Array) {
  const reader = fromUint8Array(car);
  const blocks = new Map<string, Uint8Array>();
  for (const e of reader) blocks.set(CID.toString(e.cid), e.bytes);
  return { roots: reader.roots.map((r) => r.$link), blocks };
}

Deno.test("sim repo: a commit has the sync v1.1 shape and a real, signed commit object", async () => {
  let t = Date.UTC(2025, 5, 1);
  const repo = new SimRepo(DID, { now: () => (t += 1000) });
  const c1 = await repo.commit([{
    action: "create",
    collection: "app.bsky.feed.post",
    rkey: "a1",
  }]);
  assertEquals(c1.since, null);
  assertEquals([c1.tooBig, c1.rebase, c1.blobs], [false, false, []]);
  assertEquals(c1.ops.map((o) => [o.action, o.path, o.prev]), [[
    "create",
    "app.bsky.feed.post/a1",
    undefined,
  ]]);
  const { roots, blocks } = blocksOf(c1.blocks);
  assertEquals(roots, [c1.commit.$link]);

  const commit = decode(blocks.get(c1.commit.$link)!);
  assertEquals(Object.keys(commit).sort(), ["data", "did", "prev", "rev", "sig", "version"]);
  assertEquals([commit.did, commit.version, commit.rev, commit.prev], [DID, 3, c1.rev, null]);
  assertEquals(commit.data.$link, repo.data);
  const sig = fromBytes(commit.sig);
  assertEquals(sig.length, 64);
  const { sig: _, ...unsigned } = commit;
  const key = await P256PrivateKey.importRaw(SIM_SIGNING_KEY);
  assert(await key.verify(sig, encode(unsigned)), "signature verifies with the sim key");
  assert(TID.validate(c1.rev));

  // The record block is carried, under the op's CID.
  const record = decode(blocks.get(c1.ops[0].cid!.$link)!);
  assertEquals(record.$type, "app.bsky.feed.post");

  const c2 = await repo.commit([
    { action: "update", collection: "app.bsky.feed.post", rkey: "a1" },
    { action: "create", collection: "app.bsky.feed.like", rkey: "b1" },
  ]);
  assertEquals(c2.since, c1.rev);
  assert(c2.rev > c1.rev, "revs increase");
  assertEquals(c2.prevData!.$link, commit.data.$link, "prevData is the previous tree");
  assertEquals(
    c2.ops[0].prev!.$link,
    c1.ops[0].cid!.$link,
    "an update names the record it replaces",
  );
  const c3 = await repo.commit([{
    action: "delete",
    collection: "app.bsky.feed.like",
    rkey: "b1",
  }]);
  assertEquals([c3.ops[0].cid, c3.ops[0].prev!.$link], [null, c2.ops[1].cid!.$link]);
  assertEquals(repo.collections(), new Map([["app.bsky.feed.post", 1]]));
});

Deno.test("sim repo: the tree's root is the MST of exactly the records (a known vector)", async () => {
  // Same keys and values in any order give the same root: the MST is deterministic.
  const orders = [["a", "b", "c", "d"], ["d", "c", "b", "a"], ["b", "d", "a", "c"]];
  const roots = new Set<string>();
  for (const order of orders) {
    const repo = new SimRepo(DID, { sign: false });
    for (const rkey of order) {
      await repo.commit([{
        action: "create",
        collection: "com.example.x",
        rkey,
        record: { rkey },
      }]);
    }
    roots.add(repo.data!);
  }
  assertEquals(roots.size, 1);
  // The empty repo's tree is the empty MST node (a well-known CID).
  const repo = new SimRepo(DID, { sign: false });
  await repo.commit([{ action: "create", collection: "com.example.x", rkey: "a" }]);
  await repo.commit([{ action: "delete", collection: "com.example.x", rkey: "a" }]);
  assertEquals(repo.data, "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm");
});

Deno.test("sim repo: proof modes shape the CAR and prevData", async () => {
  const repo = new SimRepo(DID, { sign: false });
  for (let i = 0; i < 30; i++) await repo.commit([{ action: "create", collection: "app.x.a" }]);
  const sizes: Record<string, number> = {};
  for (const mode of PROOF_MODES) {
    const body = await repo.commit([{ action: "create", collection: "app.x.b" }], { proof: mode });
    const { blocks } = blocksOf(body.blocks);
    sizes[mode] = blocks.size;
    const data = decode(blocks.get(body.commit.$link)!).data.$link;
    assertEquals(data, repo.data);
    if (mode === "withheld") assertEquals(blocks.size, 2, "commit and record only");
    if (mode === "corrupted") {
      const actual = CID.toString(await CID.create(0x71, blocks.get(data)!));
      assert(actual !== data, "the root node's bytes no longer hash to its CID");
    }
    if (mode === "no-prev-data") {
      assertEquals(body.prevData, undefined);
    } else {
      assert(body.prevData !== undefined);
    }
  }
  // Sizes compared on the same write to the same tree: the commits above each change the tree, and
  // their clock-made rkeys put the new record at a different depth from one run to the next.
  const sameWrite = async (proof: "full" | "diff-only") => {
    const twin = new SimRepo(DID, { sign: false });
    for (let i = 0; i < 30; i++) {
      await twin.commit([{ action: "create", collection: "app.x.a", rkey: `r${i}` }]);
    }
    const body = await twin.commit([{ action: "create", collection: "app.x.b", rkey: "k" }], {
      proof,
    });
    return blocksOf(body.blocks).blocks.size;
  };
  const [diffOnly, full] = [await sameWrite("diff-only"), await sameWrite("full")];
  assert(diffOnly <= full, `diff-only ${diffOnly} ≤ full ${full}`);
  assert(sizes["diff-only"] > 0 && sizes.full > 0);
});

Deno.test("sim repo: writes that cannot apply are refused and change nothing", async () => {
  const repo = new SimRepo(DID, { sign: false });
  await repo.commit([{ action: "create", collection: "app.x.a", rkey: "k" }]);
  const data = repo.data;
  const bad: [SimWrite[], string][] = [
    [[{ action: "create", collection: "app.x.a", rkey: "k" }], "exists"],
    [[{ action: "delete", collection: "app.x.a", rkey: "nope" }], "no such record"],
    [[{ action: "update", collection: "app.x.b", rkey: "k" }], "no such record"],
    [[
      { action: "create", collection: "app.x.b", rkey: "k" },
      { action: "delete", collection: "app.x.b", rkey: "k" },
    ], "twice"],
    [[], "no writes"],
  ];
  for (const [writes, msg] of bad) {
    await assertRejects(() => repo.commit(writes), Error, msg);
    assertEquals(repo.data, data);
  }
  assertEquals(repo.collections(), new Map([["app.x.a", 1]]));
});

Deno.test("sim repo property: the MST holds exactly the truth, and old blocks are dropped", async () => {
  const collections = ["app.x.like", "app.x.likes", "app.y.post"];
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.array(
          fc.record({ del: fc.boolean(), upd: fc.boolean(), c: fc.nat(2), pick: fc.nat() }),
          {
            minLength: 1,
            maxLength: 3,
          },
        ),
        { minLength: 1, maxLength: 30 },
      ),
      async (steps) => {
        const repo = new SimRepo(DID, { sign: false });
        const truth = new Map<string, string>();
        for (const step of steps) {
          const writes: SimWrite[] = [];
          const taken = new Set<string>();
          for (const w of step) {
            const collection = collections[w.c];
            const free = repo.rkeys(collection).filter((k) => !taken.has(`${collection}/${k}`));
            if ((!w.del && !w.upd) || free.length === 0) {
              writes.push({ action: "create", collection });
              continue;
            }
            const rkey = free[w.pick % free.length];
            taken.add(`${collection}/${rkey}`);
            writes.push({ action: w.del ? "delete" : "update", collection, rkey });
          }
          const body = await repo.commit(writes);
          for (const op of body.ops) {
            if (op.action === "delete") truth.delete(op.path);
            else truth.set(op.path, op.cid!.$link);
          }
        }
        assertEquals(await repo.treeEntries(), [...truth].sort(([a], [b]) => (a < b ? -1 : 1)));
        const counts = new Map<string, number>();
        for (const path of truth.keys()) {
          const c = path.split("/")[0];
          counts.set(c, (counts.get(c) ?? 0) + 1);
        }
        assertEquals(repo.collections(), counts);
        // Held blocks: the current tree's nodes plus one per distinct record, nothing older.
        const nodes = await repo.treeNodeCount();
        assertEquals(repo.blockCount, nodes + new Set(truth.values()).size);
      },
    ),
    { numRuns: RUNS, seed: SEED },
  );
});

Deno.test("sim repos: an account's history is committed first, unsent; queries answer before", async () => {
  const history: Record<string, string[]> = {
    "did:plc:a": ["app.x.like", "app.y.post"],
    "did:plc:b": [],
  };
  const repos = new SimRepos({ history: (did) => history[did] ?? [], sign: false });
  assertEquals(repos.holds("did:plc:a", "app.x.like"), true);
  assertEquals(repos.holds("did:plc:a", "app.z.other"), false);
  assertEquals(repos.rkeys("did:plc:a", "app.y.post"), [SEED_RKEY]);
  assertEquals(repos.written().size, 0);

  const time = "2025-03-01T00:00:00.000Z";
  const body = await repos.commit("did:plc:a", [
    { action: "delete", collection: "app.x.like", rkey: SEED_RKEY },
  ], time);
  assert(body.since !== null, "the history commit came first");
  assertEquals(body.time, time);
  const p = await proveCommit(body);
  assert(p.proven && p.emptied[0] === "app.x.like", "the seeded record was the last like");
  assertEquals(repos.holds("did:plc:a", "app.x.like"), false);
  assertEquals(repos.written().get("did:plc:a")!.collections(), new Map([["app.y.post", 1]]));

  // An account with no history starts from an empty repo.
  const b = await repos.commit("did:plc:b", [{ action: "create", collection: "app.x.like" }], time);
  assertEquals(b.since, null);
  const pb = await proveCommit(b);
  assert(pb.proven && pb.entered[0] === "app.x.like");
});
