/** The simulated lexicon.garden llms.txt: the collection list that discovery scrapes. */
import { fnv1a, formatDid, type SimWorld } from "./world.ts";

/** lexicon.garden-style llms.txt: every collection linked (some with /docs, some twice) among noise. */
export function renderLlmsTxt(world: SimWorld, extra: string[] = []): string {
  const authorityDid = (nsid: string) =>
    formatDid(fnv1a(nsid.slice(0, nsid.lastIndexOf("."))), world.salt);
  const lines = [
    "# Lexicon Garden",
    "",
    "> Lexicon Garden indexes AT Protocol lexicon schemas published across the network.",
    "",
    "- [About](https://lexicon.garden/about)",
    "- [Search](https://lexicon.garden/search?q=app.bsky.feed)",
    "- [Lexicon spec](https://atproto.com/specs/lexicon)",
    "",
    "## Lexicons",
    "",
  ];
  [...world.collections(), ...extra].forEach((nsid, i) => {
    const base = `https://lexicon.garden/lexicon/${authorityDid(nsid)}/${nsid}`;
    lines.push(`- [${nsid}](${base}${i % 3 === 1 ? "/docs" : ""}): record schema`);
    if (i % 5 === 2) lines.push(`- [${nsid} (docs)](${base}/docs)`);
  });
  lines.push(
    "",
    "## Elsewhere",
    "",
    "- [Broken entry](https://lexicon.garden/lexicon/did:plc:x/not an nsid)",
    "- [Empty entry](https://lexicon.garden/lexicon/did:plc:x/)",
    "- [Identity](https://lexicon.garden/identity/did:plc:x)",
    "- [app.bsky.feed.like elsewhere](https://docs.bsky.app/docs/api/app-bsky-feed-like)",
    "- [Source](https://github.com/example/lexicon-garden)",
    "",
  );
  return lines.join("\n");
}
