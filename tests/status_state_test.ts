/** Table test for lib/status/state.js: the one rule for a collection's state. */
import { assertEquals } from "./_assert.ts";
import { COLLECTION_STATES, type CollectionState, collectionState } from "../lib/status/state.js";

Deno.test("collectionState: completed, then active, then failed, else pending", () => {
  const table: [completed: boolean, active: boolean, error: string | undefined, CollectionState][] =
    [
      [true, false, undefined, "completed"],
      [true, true, undefined, "completed"], // a catch-up paging it again
      [false, true, undefined, "active"],
      [false, true, "HTTP 502", "active"], // retried after a failure, running now
      [false, false, "HTTP 502", "failed"],
      [false, false, "", "failed"],
      [false, false, undefined, "pending"],
    ];
  for (const [completed, active, error, expected] of table) {
    const c = error === undefined ? { completed, active } : { completed, active, error };
    assertEquals(collectionState(c), expected, JSON.stringify(c));
  }
  assertEquals(COLLECTION_STATES, ["completed", "active", "failed", "pending"]);
});
