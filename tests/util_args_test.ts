/** Table test for lib/util/args.ts: parseArgs underneath, mistakes as InputErrors that name them. */
import { assertEquals, assertThrows } from "./_assert.ts";
import { type FlagSpec, parseCommandLine } from "../lib/util/args.ts";
import { InputError } from "../lib/util/errors.ts";

const FLAGS: FlagSpec = {
  name: { type: "string" },
  tag: { type: "string", multiple: true },
  dry: { type: "boolean", short: "n" },
};

Deno.test("parseCommandLine: accepted forms", () => {
  const table: [string[], Record<string, unknown>, string[]][] = [
    [[], {}, []],
    [["--name", "x"], { name: "x" }, []],
    [["--name=x=y"], { name: "x=y" }, []],
    [["--name", "--dry"], { name: "--dry" }, []], // a string flag takes the next argument
    [["--tag", "a", "--tag=b"], { tag: ["a", "b"] }, []],
    [["-n"], { dry: true }, []],
    [["--dry", "p", "q"], { dry: true }, ["p", "q"]],
  ];
  for (const [args, values, positionals] of table) {
    const got = parseCommandLine(args, FLAGS, { positionals: true });
    assertEquals({ ...got.values }, values, args.join(" "));
    assertEquals(got.positionals, positionals, args.join(" "));
  }
});

Deno.test("parseCommandLine: rejected forms name the argument", () => {
  const table: [string[], string][] = [
    [["--bogus"], 'unknown argument "--bogus"'],
    [["--bogus=1"], 'unknown argument "--bogus=1"'],
    [["-x"], 'unknown argument "-x"'],
    [["--Name", "x"], 'unknown argument "--Name"'],
    [["p"], 'unknown argument "p"'],
    [["--"], 'unknown argument "--"'],
    [["--name"], "--name needs a value"],
    [["--dry=yes"], '--dry takes no value, got "--dry=yes"'],
  ];
  for (const [args, message] of table) {
    assertThrows(
      () => parseCommandLine(args, FLAGS),
      (err: unknown) => err instanceof InputError && err.message === message,
      args.join(" "),
    );
  }
});
