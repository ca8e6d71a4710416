/** Structured JSON-lines logging with levels. */

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** A logger: one JSON object per line, with `time`, `level` and `msg`. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Creates a logger writing lines at or above `level` through `write`. */
export function createLogger(
  opts: { level: LogLevel; write: (line: string) => void; now?: () => Date },
): Logger {
  const now = opts.now ?? (() => new Date());
  const emit = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (RANK[level] < RANK[opts.level]) return;
    opts.write(JSON.stringify({ time: now().toISOString(), level, msg, ...fields }));
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/** A logger that drops everything, for tests and quiet tools. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};
