/** Stage 5, status: the one status contract (document, collection state) and its formatting rules. */
export * from "./document.ts";
export * from "./format.js";
export * from "./state.js";
