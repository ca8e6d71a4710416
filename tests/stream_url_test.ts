/** Table tests for lib/stream/url.ts: LIVE_STREAM_URL, a firehose or a Jetstream by path. */
import { assert, assertEquals } from "./_assert.ts";
import { parseStreamUrl } from "../lib/stream/url.ts";
import { InputError } from "../lib/util/mod.ts";

Deno.test("parseStreamUrl: firehose and Jetstream by path; everything else refused, table", () => {
  const ok: [string, string, string][] = [
    [
      "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos",
      "firehose",
      "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos",
    ],
    [
      "ws://127.0.0.1:2750/xrpc/com.atproto.sync.subscribeRepos/",
      "firehose",
      "ws://127.0.0.1:2750/xrpc/com.atproto.sync.subscribeRepos",
    ],
    [
      " wss://jetstream2.us-east.bsky.network/subscribe ",
      "jetstream",
      "wss://jetstream2.us-east.bsky.network/subscribe",
    ],
    ["wss://proxy.example/relay/subscribe", "jetstream", "wss://proxy.example/relay/subscribe"],
  ];
  for (const [input, kind, url] of ok) {
    const e = parseStreamUrl(input);
    assertEquals([e.kind, e.url], [kind, url], input);
  }
  const bad = [
    "",
    "bsky.network",
    "https://bsky.network/xrpc/com.atproto.sync.subscribeRepos",
    "wss://bsky.network/",
    "wss://bsky.network/xrpc/com.atproto.sync.listRepos",
    "wss://u:p@bsky.network/subscribe",
    "wss://bsky.network/subscribe?cursor=5",
    "wss://bsky.network/subscribe#x",
    "wss://" + "a".repeat(600) + "/subscribe",
    "ws://[::1/subscribe",
  ];
  for (const input of bad) {
    let err: unknown;
    try {
      parseStreamUrl(input);
    } catch (e) {
      err = e;
    }
    assert(err instanceof InputError && err.field === "LIVE_STREAM_URL", input);
  }
});
