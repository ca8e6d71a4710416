/** Table tests for lib/index/keys.ts: ids, compacted DIDs and version 1 keys. */
import {
  assert,
  assertEquals,
  assertNotStrictEquals,
  assertStrictEquals,
  assertThrows,
} from "./_assert.ts";
import {
  compactDid,
  decodeId,
  encodeId,
  END,
  expandDid,
  MAX_COLLECTIONS,
  parseV1Rbc,
} from "../lib/index/keys.ts";

Deno.test("encodeId/decodeId round-trip, stay fixed-width, keep order and avoid NUL", () => {
  const ns = [0, 1, 126, 127, 128, 16_128, 16_129, 1_000_000, MAX_COLLECTIONS - 1];
  let prev = "";
  for (const n of ns) {
    const id = encodeId(n);
    assertStrictEquals(id.length, 3, `${n}`);
    assert(!id.includes("\x00"), `${n}: no NUL`);
    assert([...id].every((c) => c.charCodeAt(0) < 0x80), `${n}: one UTF-8 byte per char`);
    assertStrictEquals(decodeId(id), n);
    assert(id > prev, `${n}: ids sort like their numbers`);
    assert(id < END);
    prev = id;
  }
  for (const bad of [-1, MAX_COLLECTIONS, 1.5, NaN]) {
    assertThrows(() => encodeId(bad), /collection number out of range/);
  }
  for (const bad of ["", "ab", "abcd", "\x00\x01\x01", "\x80\x01\x01"]) {
    assertStrictEquals(decodeId(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("compactDid keeps atproto DIDs in order, shortens plc, round-trips", () => {
  const dids = [
    "did:plc:aaaa",
    "did:plc:aaaa:x",
    "did:plc:aaab",
    "did:web:example.com",
    "did:web:example.com%3A8080",
  ];
  for (const d of [...dids, "did:key:z6Mk", "did:ion:x"]) {
    assertStrictEquals(expandDid(compactDid(d)), d);
  }
  const stored = dids.map(compactDid);
  assertEquals([...stored].sort(), stored, "same order as the DIDs");
  assertStrictEquals(compactDid("did:plc:aaaa"), "\x01aaaa");
  assertStrictEquals(compactDid("did:web:example.com"), "web:example.com");
  assert(compactDid("did:key:z6Mk") > compactDid("did:plc:zzzz"), "other methods after plc");
  // Not a DID: cannot collide with a stored DID.
  assertStrictEquals(compactDid("plc:aaaa"), "\x00plc:aaaa");
  assertNotStrictEquals(compactDid("plc:aaaa"), compactDid("did:plc:aaaa"));
});

Deno.test("parseV1Rbc", () => {
  const cases: [string, ReturnType<typeof parseV1Rbc>][] = [
    ["r\x00app.bsky.feed.like\x00did:plc:a", {
      collection: "app.bsky.feed.like",
      did: "did:plc:a",
    }],
    ["r\x00a.b\x00did:web:x:y", { collection: "a.b", did: "did:web:x:y" }],
    ["r\x00a.b", undefined],
    ["c\x00did:plc:a\x00a.b", undefined],
    ["rabc", undefined],
  ];
  for (const [key, want] of cases) assertEquals(parseV1Rbc(key), want, JSON.stringify(key));
});
