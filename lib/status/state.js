// @ts-check
/**
 * The one rule for a collection's state, shared by the status document, `/metrics`, the CLI and the
 * status page (the server inlines this module into it). Plain JavaScript with JSDoc types.
 */

/**
 * completed: paged to the end once (a catch-up may be paging it again); active: being paged now;
 * failed: its last attempt failed and none is running; pending: waiting for its turn.
 * @typedef {"completed" | "active" | "failed" | "pending"} CollectionState
 */

/** @type {readonly CollectionState[]} */
export const COLLECTION_STATES = ["completed", "active", "failed", "pending"];

/**
 * A collection's state from its status entry.
 * @param {{ completed: boolean, active: boolean, error?: string }} c
 * @returns {CollectionState}
 */
export function collectionState(c) {
  if (c.completed) return "completed";
  if (c.active) return "active";
  if (c.error !== undefined) return "failed";
  return "pending";
}
