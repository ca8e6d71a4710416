/** Stage 2, paging: the pure core that pages one collection (what to ask next, when to stop, loop guards). */
export * from "./pager.ts";
