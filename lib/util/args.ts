/** Command lines, read with node:util's parseArgs; its mistakes become InputErrors in our words. */
import { parseArgs } from "node:util";
import { InputError } from "./errors.ts";

/** Flags a command line accepts: `--name VALUE` (string, maybe repeated) or `--name` (boolean). */
export type FlagSpec = Record<
  string,
  { type: "string" | "boolean"; multiple?: boolean; short?: string }
>;

/** What {@link parseCommandLine} read: flag values by name, and the positional arguments. */
export interface CommandLine {
  readonly values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  readonly positionals: string[];
}

/**
 * Reads `args` against `flags`. Throws InputError for an unknown flag (`unknown argument "--x"`), a
 * string flag without a value (`--x needs a value`), a value given to a boolean flag, and — unless
 * `positionals` is set — any argument that is not a flag.
 */
export function parseCommandLine(
  args: readonly string[],
  flags: FlagSpec,
  opts: { positionals?: boolean } = {},
): CommandLine {
  // Not strict: the tokens are checked here, so every mistake gets a message naming the argument.
  const { values, positionals, tokens } = parseArgs({
    args: [...args],
    options: flags,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  for (const t of tokens) {
    if (t.kind === "option-terminator") throw new InputError('unknown argument "--"', "argv");
    if (t.kind === "positional") {
      if (opts.positionals) continue;
      throw new InputError(`unknown argument ${JSON.stringify(t.value)}`, "argv");
    }
    const spec = Object.hasOwn(flags, t.name) ? flags[t.name] : undefined;
    if (!spec) throw new InputError(`unknown argument ${JSON.stringify(args[t.index])}`, "argv");
    if (spec.type === "string" && t.value === undefined) {
      throw new InputError(`${t.rawName} needs a value`, t.rawName);
    }
    if (spec.type === "boolean" && t.inlineValue) {
      throw new InputError(
        `${t.rawName} takes no value, got ${JSON.stringify(args[t.index])}`,
        t.rawName,
      );
    }
  }
  return { values, positionals };
}
