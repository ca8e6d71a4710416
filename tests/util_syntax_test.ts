/** Table tests for lib/util/syntax.ts: NSID and DID syntax per the atproto specs. */
import { assertEquals } from "./_assert.ts";
import { isDid, isNsid } from "../lib/util/syntax.ts";

const seg = (n: number, c = "a") => c.repeat(n);

// An authority of exactly `len` characters made of 63-char labels (plus a shorter last one).
function authority(len: number): string {
  const labels: string[] = [];
  let left = len;
  while (left > 0) {
    const take = Math.min(63, left);
    labels.push(seg(take));
    left -= take + 1;
    if (left === 0) throw new Error("authority length would end on a dot");
  }
  const out = labels.join(".");
  if (out.length !== len) throw new Error(`built ${out.length}, wanted ${len}`);
  return out;
}

const NSIDS: [unknown, boolean, string][] = [
  ["app.bsky.feed.post", true, "typical"],
  ["com.atproto.sync.listReposByCollection", true, "camelCase name"],
  ["a.b.c", true, "minimal three one-letter segments"],
  ["com.example.fooBar2", true, "digits after the first letter of the name"],
  ["com.ex-ample.foo", true, "hyphen inside an authority segment"],
  ["com.3example.foo", true, "authority segment (not the first) may start with a digit"],
  ["COM.EXAMPLE.Foo", true, "upper case authority"],
  ["net.users.bob.ping", true, "four segments"],
  ["a.b.cd", true, "two-letter name"],
  ["a.b.c.d", true, "name after a three-segment authority"],
  [`com.${seg(63)}.foo`, true, "63-char authority segment"],
  [`com.${seg(64)}.foo`, false, "64-char authority segment"],
  [`com.example.${seg(63)}`, true, "63-char name"],
  [`com.example.${seg(64)}`, false, "64-char name"],
  [`${authority(253)}.${seg(63)}`, true, "253-char authority and 63-char name: 317 in total"],
  [`${authority(253)}.b`, true, "253-char authority"],
  [`${authority(254)}.b`, false, "254-char authority"],
  [`${authority(255)}.b`, false, "255-char authority"],
  ["a.b", false, "two segments"],
  ["app.bsky", false, "two segments, realistic"],
  ["com", false, "one segment"],
  ["", false, "empty"],
  ["not an nsid", false, "spaces"],
  ["com.example.foo-bar", false, "hyphen in the name segment"],
  ["com.example.-foo", false, "name starts with a hyphen"],
  ["com.example.3foo", false, "name starts with a digit"],
  ["1com.example.foo", false, "first segment starts with a digit"],
  ["com.-example.foo", false, "authority segment starts with a hyphen"],
  ["com.example-.foo", false, "authority segment ends with a hyphen"],
  ["com..example.foo", false, "empty segment"],
  [".com.example.foo", false, "leading dot"],
  ["com.example.foo.", false, "trailing dot"],
  ["com.example.foo ", false, "trailing space"],
  [" com.example.foo", false, "leading space"],
  ["com.example.foo\n", false, "trailing newline"],
  ["com.exa_mple.foo", false, "underscore"],
  ["com.example.foo_bar", false, "underscore in name"],
  ["com.example.*", false, "wildcard"],
  ["com.example.foo#main", false, "fragment"],
  ["com.example.foo/docs", false, "path"],
  ["com.exämple.foo", false, "non-ASCII"],
  ["com.example.fóo", false, "non-ASCII name"],
  ["com/example/foo", false, "slashes"],
  [undefined, false, "undefined"],
  [null, false, "null"],
  [42, false, "number"],
  [{ toString: () => "a.b.c" }, false, "object that stringifies to an NSID"],
  [["a.b.c"], false, "array"],
];

Deno.test("isNsid: table", () => {
  const wrong = NSIDS.filter(([input, want]) => isNsid(input) !== want)
    .map(([input, want, why]) =>
      `${why}: isNsid(${JSON.stringify(input)?.slice(0, 60)}) should be ${want}`
    );
  assertEquals(wrong, []);
});

const DIDS: [unknown, boolean, string][] = [
  ["did:plc:z72i7hdynmk6r22z27h6tvur", true, "plc"],
  ["did:web:example.com", true, "web"],
  ["did:web:localhost%3A8080", true, "percent-encoded port"],
  ["did:web:example.com:user:alice", true, "colons inside the identifier"],
  ["did:method:val-ue_x.y", true, "hyphen, underscore, dot"],
  ["did:ex:a", true, "one-character identifier"],
  ["did:plc:ABCdef123", true, "mixed case identifier"],
  [`did:plc:${seg(2048 - 8)}`, true, "exactly 2048 characters"],
  [`did:plc:${seg(2049 - 8)}`, false, "2049 characters"],
  ["did:plc:", false, "empty identifier"],
  ["did::abc", false, "empty method"],
  ["did:PLC:abc", false, "upper-case method"],
  ["did:pl2:abc", false, "digit in method"],
  ["DID:plc:abc", false, "upper-case scheme"],
  ["did:plc", false, "no identifier part"],
  ["plc:abc", false, "no scheme"],
  ["did:web:example.com:", false, "ends with a colon"],
  ["did:web:foo%", false, "ends with a percent"],
  ["did:web:foo%2", false, "percent with one hex digit"],
  ["did:web:foo%zz", false, "percent with non-hex"],
  ["did:web:foo%2x1", false, "percent followed by a non-hex"],
  ["did:plc:ab cd", false, "space"],
  ["did:plc:abc/def", false, "slash"],
  ["did:plc:abc#frag", false, "fragment"],
  ["did:plc:abc?q=1", false, "query"],
  ["did:plc:abc\n", false, "trailing newline"],
  [" did:plc:abc", false, "leading space"],
  ["did:plc:äbc", false, "non-ASCII"],
  ["", false, "empty"],
  ["not-a-did", false, "not a DID"],
  [undefined, false, "undefined"],
  [null, false, "null"],
  [7, false, "number"],
  [{ did: "did:plc:abc" }, false, "object"],
];

Deno.test("isDid: table", () => {
  const wrong = DIDS.filter(([input, want]) => isDid(input) !== want)
    .map(([input, want, why]) =>
      `${why}: isDid(${JSON.stringify(input)?.slice(0, 60)}) should be ${want}`
    );
  assertEquals(wrong, []);
});
