/**
 * Tests for lib/source/discovery.ts: parseLlmsTxt as tables against noisy lexicon.garden-style
 * markdown, and discoverCollections against a list that stalls.
 */
import { assert, assertEquals } from "./_assert.ts";
import { discoverCollections, parseLlmsTxt } from "../lib/source/discovery.ts";
import { silentLogger } from "../lib/util/log.ts";

const G = "https://lexicon.garden/lexicon";
const PLC = "did:plc:4v4y5r3lwsbtmsxhkg4ffovq";
const WEB = "did:web:lexicon.example.com";

// [description, document, expected NSIDs in order of first appearance]
const CASES: [string, string, string[]][] = [
  ["empty document", "", []],
  ["markdown link", `- [app.bsky.feed.post](${G}/${PLC}/app.bsky.feed.post)`, [
    "app.bsky.feed.post",
  ]],
  ["bare link", `${G}/${PLC}/app.bsky.feed.like`, ["app.bsky.feed.like"]],
  ["autolink in angle brackets", `<${G}/${PLC}/app.bsky.graph.follow>`, ["app.bsky.graph.follow"]],
  ["link with a /docs suffix", `[docs](${G}/${PLC}/app.bsky.actor.profile/docs)`, [
    "app.bsky.actor.profile",
  ]],
  ["link with a deeper suffix", `${G}/${PLC}/com.example.thing/docs/v2`, ["com.example.thing"]],
  ["trailing slash", `${G}/${PLC}/com.example.slash/`, ["com.example.slash"]],
  ["fragment", `[x](${G}/${PLC}/com.example.frag#main)`, ["com.example.frag"]],
  ["query", `[x](${G}/${PLC}/com.example.query?tab=schema)`, ["com.example.query"]],
  ["http scheme", `http://lexicon.garden/lexicon/${PLC}/com.example.plain`, [
    "com.example.plain",
  ]],
  ["did:web authority", `[w](${G}/${WEB}/com.example.web)`, ["com.example.web"]],
  ["percent-encoded DID", `[e](${G}/did%3Aplc%3Aabc123/com.example.encdid)`, [
    "com.example.encdid",
  ]],
  ["percent-encoded NSID", `[e](${G}/${PLC}/com%2Eexample%2Eencnsid)`, ["com.example.encnsid"]],
  ["percent-encoded space makes it invalid", `[e](${G}/${PLC}/not%20an%20nsid)`, []],
  ["broken percent-encoding is skipped, not fatal", `[e](${G}/${PLC}/com.example.%E0%A4%A)`, []],
  ["encoded slash is not an NSID", `[e](${G}/${PLC}/com.example%2Fbad.thing)`, []],
  ["about page", "[About](https://lexicon.garden/about)", []],
  ["search page", "[Search](https://lexicon.garden/search?q=app.bsky.feed.post)", []],
  ["docs page", "[Docs](https://lexicon.garden/docs/com.example.notlinked)", []],
  ["lexicon index without NSID", `[All](${G}/)`, []],
  ["authority page without NSID", `[Auth](${G}/${PLC})`, []],
  ["other host", `[x](https://example.com/lexicon/${PLC}/com.example.other)`, []],
  ["look-alike host", `[x](https://lexicon.garden.evil.example/lexicon/${PLC}/com.evil.thing)`, []],
  ["look-alike host prefix", `[x](https://notlexicon.garden/lexicon/${PLC}/com.evil.thing)`, []],
  ["NSID only in link text", `[com.example.textonly](https://lexicon.garden/about)`, []],
  ["link text with spaces", `[not an nsid](${G}/${PLC}/not an nsid)`, []],
  ["two segments", `[x](${G}/${PLC}/app.bsky)`, []],
  ["one segment", `[x](${G}/${PLC}/lexicons)`, []],
  ["hyphen in the name", `[x](${G}/${PLC}/com.example.foo-bar)`, []],
  ["hyphen in the authority is fine", `[x](${G}/${PLC}/com.ex-ample.foo)`, ["com.ex-ample.foo"]],
  ["name starting with a digit", `[x](${G}/${PLC}/com.example.3d)`, []],
  ["authority that is not a DID", `[x](${G}/alice.bsky.social/com.example.handle)`, []],
  ["authority that is a broken DID", `[x](${G}/did:plc:/com.example.brokendid)`, []],
  [
    "duplicates across authorities, links and suffixes",
    [
      `- [app.bsky.feed.post](${G}/${PLC}/app.bsky.feed.post)`,
      `- ${G}/${WEB}/app.bsky.feed.post`,
      `- [docs](${G}/${PLC}/app.bsky.feed.post/docs)`,
      `- [like](${G}/${PLC}/app.bsky.feed.like)`,
      `- [post again](${G}/${PLC}/app.bsky.feed.post)`,
    ].join("\n"),
    ["app.bsky.feed.post", "app.bsky.feed.like"],
  ],
  [
    "several links on one line",
    `[a](${G}/${PLC}/a.b.c) [b](${G}/${PLC}/a.b.cd), [c](${G}/${PLC}/a.b.c.d)`,
    ["a.b.c", "a.b.cd", "a.b.c.d"],
  ],
  ["case of the NSID is kept", `[x](${G}/${PLC}/com.Example.fooBar)`, ["com.Example.fooBar"]],
];

Deno.test("parseLlmsTxt: table", () => {
  const wrong: string[] = [];
  for (const [why, doc, want] of CASES) {
    const got = parseLlmsTxt(doc);
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      wrong.push(`${why}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    }
  }
  assertEquals(wrong, []);
});

Deno.test("parseLlmsTxt: a realistic noisy document", () => {
  const doc = `# Lexicon Garden

> Lexicon Garden is a directory of AT Protocol lexicons. See [about](https://lexicon.garden/about)
> or [search](https://lexicon.garden/search). Source: https://github.com/example/lexicon-garden

## Lexicons

- [app.bsky.feed.post](${G}/${PLC}/app.bsky.feed.post): A post.
- [app.bsky.feed.like](${G}/${PLC}/app.bsky.feed.like): A like. ([docs](${G}/${PLC}/app.bsky.feed.like/docs))
- [app.bsky.actor.profile](${G}/${PLC}/app.bsky.actor.profile)
- [sh.tangled.repo.issue](${G}/did:plc:wshs7t2adsemcrrd4snkeqli/sh.tangled.repo.issue)
- [blue.linkat.board](${G}/did%3Aplc%3Aabcdefgh/blue.linkat.board)
- [Broken](${G}/${PLC}/not%20an%20nsid)
- [Too short](${G}/${PLC}/app.bsky)
- [Hyphen](${G}/${PLC}/com.example.bad-name)
- [Other host](https://lexicon.example.org/lexicon/${PLC}/org.example.elsewhere)
- [Duplicate](${G}/${WEB}/app.bsky.feed.post)

## Optional

- [All lexicons](https://lexicon.garden/lexicons)
- ${G}/${PLC}/fyi.unravel.frontpage.post
`;
  assertEquals(parseLlmsTxt(doc), [
    "app.bsky.feed.post",
    "app.bsky.feed.like",
    "app.bsky.actor.profile",
    "sh.tangled.repo.issue",
    "blue.linkat.board",
    "fyi.unravel.frontpage.post",
  ]);
});

Deno.test("parseLlmsTxt: a large list is parsed completely and de-duplicated", () => {
  const lines: string[] = [];
  const want: string[] = [];
  for (let i = 0; i < 1500; i++) {
    const nsid = `com.example${i % 700}.record`;
    if (i < 700) want.push(nsid);
    lines.push(`- [${nsid}](${G}/did:plc:auth${i % 13}/${nsid}${i % 2 ? "/docs" : ""})`);
  }
  assertEquals(parseLlmsTxt(lines.join("\n")), want);
});

Deno.test({
  name: "parseLlmsTxt: a bare link followed by sentence punctuation still counts",
  fn() {
    const doc =
      `See ${G}/${PLC}/app.bsky.feed.post.\nAlso ${G}/${PLC}/com.example.a, ${G}/${PLC}/com.example.b`;
    assertEquals(parseLlmsTxt(doc), ["app.bsky.feed.post", "com.example.a", "com.example.b"]);
  },
});

Deno.test("parseLlmsTxt: an explicit link target is taken as written, punctuation and all", () => {
  const doc = `- [post](${G}/${PLC}/app.bsky.feed.post,)\n- <${G}/${PLC}/com.example.a.>\n` +
    `bare ${G}/${PLC}/com.example.b.`;
  assertEquals(parseLlmsTxt(doc), ["com.example.b"]);
});

Deno.test("discovery gives up on a list whose body stalls, and goes on with the index", async () => {
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, () =>
    new Response(
      new ReadableStream({
        start(ctrl) {
          ctrl.enqueue(new TextEncoder().encode("# Lexicon Garden\n"));
          // never closes
        },
      }),
    ));
  try {
    // How soon it gives up is a figure of `deno task bench` (bench_timings.ts).
    const found = await discoverCollections({
      listUrl: `http://127.0.0.1:${server.addr.port}/llms.txt`,
      indexCollections: () => Promise.resolve(["com.example.indexed"]),
      log: silentLogger,
      timeoutMs: 500,
    });
    assertEquals(found.collections, ["com.example.indexed"]);
    assert(found.listError);
  } finally {
    await server.shutdown();
  }
});
