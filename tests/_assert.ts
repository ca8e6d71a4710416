/** Minimal assertions (JSR's @std/assert is out of reach here), built on node:assert. */
import nodeAssert from "node:assert/strict";

/** Fails unless `cond` is truthy. */
export function assert(cond: unknown, msg?: string): asserts cond {
  nodeAssert.ok(cond, msg);
}

/** Deep, strict equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}

/** Fails unless `fn` rejects with an instance of `cls` whose message includes `includes`. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  cls?: new (...args: any[]) => Error,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    if (cls && !(err instanceof cls)) throw new Error(`expected ${cls.name}, got ${err}`);
    if (includes && !(err as Error).message.includes(includes)) {
      throw new Error(
        `expected message to include ${JSON.stringify(includes)}, got ${(err as Error).message}`,
      );
    }
    return err as Error;
  }
  throw new Error("expected a rejection");
}

/** Fails unless `fn` throws an error matching `expected` (a class, RegExp or predicate), as node:assert. */
export const assertThrows: typeof nodeAssert.throws = nodeAssert.throws;
