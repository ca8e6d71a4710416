/** Help texts for the command lines, in one place. */

/** `deno task status help`. */
export const STATUS_USAGE = [
  "usage: deno task status [command]",
  "",
  "commands:",
  "  status                      summary of the collection backfill (the default)",
  "  start [source]              start a backfill from source (the server's default if omitted)",
  "  catch-up [source]           resume completed collections from their last cursor for new DIDs",
  "  full                        the raw status JSON",
  "  watch [--interval SECONDS]  live progress until the run ends (Ctrl-C to quit)",
  "  stop                        stop the running backfill",
  "  reset <collection>...       forget the progress of these collections (NSIDs)",
  "  help                        this text",
  "",
  "environment: RELAY_URL (the server), RELAY_ADMIN_PASSWORD (the admin token)",
];
