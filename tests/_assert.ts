/** The tests' one assertion module (JSR's @std/assert is out of reach here), built on node:assert. */
import nodeAssert from "node:assert/strict";

/** Fails unless `cond` is truthy. */
export function assert(cond: unknown, msg?: string): asserts cond {
  nodeAssert.ok(cond, msg);
}

/** Deep, strict equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}

/** Fails when the two are deeply, strictly equal. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, msg);
}

/** `Object.is` equality: the same primitive, or the same object. */
export function assertStrictEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.strictEqual(actual, expected, msg);
}

/** Fails when the two are `Object.is` equal. */
export function assertNotStrictEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.notStrictEqual(actual, expected, msg);
}

/** Fails unless `text` matches `re`. */
export function assertMatch(text: string, re: RegExp, msg?: string): void {
  nodeAssert.match(text, re, msg);
}

/** Fails unless `fn` throws an error matching `expected` (a class, RegExp or predicate), as node:assert. */
export const assertThrows: typeof nodeAssert.throws = nodeAssert.throws;

/** What a rejection must match: an error class, a RegExp for its message, or a predicate. */
// deno-lint-ignore no-explicit-any
type Expected = (new (...args: any[]) => Error) | RegExp | ((err: unknown) => boolean);

/**
 * Fails unless `subject` (a promise, or a function returning one) rejects with an error matching
 * `expected`, whose message includes `includes`; returns the error.
 */
export async function assertRejects(
  subject: Promise<unknown> | (() => Promise<unknown>),
  expected?: Expected,
  includes?: string,
): Promise<Error> {
  try {
    await (typeof subject === "function" ? subject() : subject);
  } catch (err) {
    const e = err as Error;
    if (expected instanceof RegExp) {
      if (!expected.test(e?.message)) throw new Error(`expected ${expected}, got ${err}`);
    } else if (expected && (expected === Error || expected.prototype instanceof Error)) {
      if (!(err instanceof expected)) {
        throw new Error(`expected ${expected.name}, got ${err}`);
      }
    } else if (expected && !(expected as (err: unknown) => boolean)(err)) {
      throw new Error(`rejection did not match: ${err}`);
    }
    if (includes && !e.message.includes(includes)) {
      throw new Error(
        `expected message to include ${JSON.stringify(includes)}, got ${e.message}`,
      );
    }
    return e;
  }
  throw new Error("expected a rejection");
}
