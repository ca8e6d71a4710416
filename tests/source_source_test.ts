/** Table tests for lib/source/source.ts: bare hosts and http(s) URLs as source relays. */
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { parseSource, type Source } from "../lib/source/source.ts";
import { InputError } from "../lib/util/errors.ts";

const GOOD: [string, Source][] = [
  ["bsky.network", { name: "bsky.network", baseUrl: "https://bsky.network", host: "bsky.network" }],
  ["  bsky.network\n", {
    name: "bsky.network",
    baseUrl: "https://bsky.network",
    host: "bsky.network",
  }],
  ["BSKY.Network", { name: "bsky.network", baseUrl: "https://bsky.network", host: "bsky.network" }],
  ["localhost", { name: "localhost", baseUrl: "https://localhost", host: "localhost" }],
  ["relay1.us-east.bsky.network", {
    name: "relay1.us-east.bsky.network",
    baseUrl: "https://relay1.us-east.bsky.network",
    host: "relay1.us-east.bsky.network",
  }],
  ["localhost:2470", {
    name: "localhost:2470",
    baseUrl: "https://localhost:2470",
    host: "localhost:2470",
  }],
  ["relay.example.com:65535", {
    name: "relay.example.com:65535",
    baseUrl: "https://relay.example.com:65535",
    host: "relay.example.com:65535",
  }],
  ["relay.example.com:1", {
    name: "relay.example.com:1",
    baseUrl: "https://relay.example.com:1",
    host: "relay.example.com:1",
  }],
  ["127.0.0.1:2470", {
    name: "127.0.0.1:2470",
    baseUrl: "https://127.0.0.1:2470",
    host: "127.0.0.1:2470",
  }],
  ["https://relay.example.com", {
    name: "relay.example.com",
    baseUrl: "https://relay.example.com",
    host: "relay.example.com",
  }],
  ["https://relay.example.com/", {
    name: "relay.example.com",
    baseUrl: "https://relay.example.com",
    host: "relay.example.com",
  }],
  ["https://relay.example.com///", {
    name: "relay.example.com",
    baseUrl: "https://relay.example.com",
    host: "relay.example.com",
  }],
  ["HTTPS://Relay.Example.COM", {
    name: "relay.example.com",
    baseUrl: "https://relay.example.com",
    host: "relay.example.com",
  }],
  ["https://relay.example.com:443/", {
    name: "relay.example.com",
    baseUrl: "https://relay.example.com",
    host: "relay.example.com",
  }],
  ["http://127.0.0.1:2470", {
    name: "http://127.0.0.1:2470",
    baseUrl: "http://127.0.0.1:2470",
    host: "127.0.0.1:2470",
  }],
  ["http://[::1]:8080/", {
    name: "http://[::1]:8080",
    baseUrl: "http://[::1]:8080",
    host: "[::1]:8080",
  }],
  ["https://example.com/relay/", {
    name: "https://example.com/relay",
    baseUrl: "https://example.com/relay",
    host: "example.com",
  }],
  ["https://example.com/a/b", {
    name: "https://example.com/a/b",
    baseUrl: "https://example.com/a/b",
    host: "example.com",
  }],
];

Deno.test("parseSource: accepted inputs", () => {
  for (const [input, want] of GOOD) {
    assertEquals(parseSource(input), want, `parseSource(${JSON.stringify(input)})`);
  }
});

const BAD: [string, RegExp][] = [
  ["", /empty/],
  ["   ", /empty/],
  ["bsky network", /"bsky network" is neither a host name/],
  ["bsky_network", /neither a host name/],
  ["-bsky.network", /neither a host name/],
  ["bsky-.network", /neither a host name/],
  [".bsky.network", /neither a host name/],
  ["bsky.network.", /neither a host name/],
  ["bsky..network", /neither a host name/],
  [`${"a".repeat(64)}.network`, /neither a host name/],
  ["bsky.network/xrpc", /neither a host name/],
  ["bsky.network:", /neither a host name/],
  ["bsky.network:abc", /neither a host name/],
  ["bsky.network:0", /neither a host name/],
  ["bsky.network:65536", /neither a host name/],
  ["bsky.network:123456", /neither a host name/],
  ["bsky.network?x=1", /neither a host name/],
  ["bsky.nétwork", /neither a host name/],
  ["ftp://bsky.network", /must use http:\/\/ or https:\/\//],
  ["wss://bsky.network", /must use http:\/\/ or https:\/\//],
  ["https://user:pw@bsky.network", /must not carry credentials/],
  ["https://user@bsky.network", /must not carry credentials/],
  ["https://bsky.network/?x=1", /must not have a query or fragment/],
  ["https://bsky.network/#top", /must not have a query or fragment/],
  ["https://", /is not a valid URL/],
  ["http://[::1", /is not a valid URL/],
  ["https://bsky.network:99999", /is not a valid URL/],
  ["a".repeat(513), /longer than 512 characters/],
  [`https://example.com/${"p".repeat(600)}`, /longer than 512 characters/],
];

Deno.test("parseSource: rejected inputs throw InputError naming the value", () => {
  for (const [input, message] of BAD) {
    assertThrows(
      () => parseSource(input),
      (err: unknown) => {
        assert(err instanceof InputError, `${JSON.stringify(input)}: ${err}`);
        assertEquals(err.field, "source");
        assert(message.test(err.message), `${JSON.stringify(input)}: ${err.message}`);
        return true;
      },
      `parseSource(${JSON.stringify(input)}) should throw`,
    );
  }
});

Deno.test("parseSource: a long bad value is shortened in the message", () => {
  const input = "x y".repeat(100); // 300 chars, under the length limit, not a host
  assertThrows(() => parseSource(input), (err: unknown) => {
    assert(err instanceof InputError);
    assert(err.message.includes("…"), err.message);
    assert(err.message.length < 200, `message is ${err.message.length} chars`);
    return true;
  });
});

Deno.test("parseSource: the same host as a bare name and as a URL keeps one baseUrl", () => {
  const bare = parseSource("bsky.network");
  const url = parseSource("https://bsky.network/");
  assertEquals(bare.baseUrl, url.baseUrl);
  assertEquals(bare.host, url.host);
});
