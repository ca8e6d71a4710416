// DidFilter: never a false "no"; growable keeps false "maybe"s near 1%, a fixed table lets them rise.
import { assert, assertEquals } from "./_assert.ts";
import { DidFilter } from "../lib/index/live.ts";
import { compactDid } from "../lib/index/keys.ts";
import { formatDid } from "../lib/sim/world.ts";

const did = (i: number) => compactDid(formatDid(i, 7));

function falseShare(f: DidFilter, from: number, n: number): number {
  let hits = 0;
  for (let i = from; i < from + n; i++) if (f.mayHave(did(i))) hits++;
  return hits / n;
}

Deno.test("DidFilter", async (t) => {
  await t.step("an empty filter holds nothing", () => {
    assertEquals(new DidFilter().mayHave(did(1)), false);
    assertEquals(new DidFilter({ fixedBits: 1024 }).mayHave(did(1)), false);
  });
  await t.step("growable: every added DID, and about 1% others", () => {
    const f = new DidFilter();
    for (let i = 0; i < 200_000; i++) f.add(did(i));
    assertEquals(f.count, 200_000);
    for (let i = 0; i < 200_000; i++) assert(f.mayHave(did(i)), `lost ${i}`);
    const share = falseShare(f, 1_000_000, 20_000);
    assert(share < 0.03, `false maybe ${share}`);
  });
  await t.step("fixed: every added DID, with false maybes that rise as it fills", () => {
    const f = new DidFilter({ fixedBits: 1 << 20 });
    for (let i = 0; i < 20_000; i++) f.add(did(i));
    const light = falseShare(f, 1_000_000, 20_000);
    for (let i = 20_000; i < 200_000; i++) f.add(did(i));
    for (let i = 0; i < 200_000; i++) assert(f.mayHave(did(i)), `lost ${i}`);
    const heavy = falseShare(f, 1_000_000, 20_000);
    assert(light < 0.01, `false maybe at 20,000: ${light}`);
    // 200,000 DIDs in 2^20 bits (5 a DID) with 7 probes: (1 - e^(-7/5.2))^7 ≈ 11%.
    assert(heavy > 0.05 && heavy < 0.25, `false maybe at 200,000: ${heavy}`);
  });
});
