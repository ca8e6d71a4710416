import { assert, assertEquals } from "./_assert.ts";
import { runOneShot } from "../lib/cli/oneshot.ts";
import { makeWorld } from "../lib/sim/world.ts";
import { backfillFixture } from "./_helpers.ts";

Deno.test("one-shot: the summary shows the invalid count and a flagged line saying how to fetch it again", async () => {
  const world = makeWorld({ seed: 53, largeSizes: [47], collections: 3 });
  const bad = [...world.collections()].sort((a, b) => world.size(b) - world.size(a))[0];
  await using f = await backfillFixture({
    label: "oneshot",
    relay: { world, malformed: { [bad]: "non-object-entries" } },
  });
  const lines: string[] = [];
  const { code } = await runOneShot({
    backfiller: f.backfiller,
    request: { source: f.source },
    out: (l) => lines.push(l),
    signal: new AbortController().signal,
  });
  assertEquals(code, 0, lines.join("\n"));
  const done = lines.find((l) => l.startsWith("done in "));
  assert(done?.endsWith(", 47 invalid entries skipped"), done);
  const flagged = lines.filter((l) => l.startsWith("flagged: "));
  assertEquals(flagged.length, 1, lines.join("\n"));
  assert(
    flagged[0].startsWith(`flagged: ${bad}: 47 entries from the source were not valid DIDs`),
  );
  assert(flagged[0].includes(`deno task backfill --reset --collection ${bad}`), flagged[0]);
});
