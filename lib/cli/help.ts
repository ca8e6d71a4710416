/** Help texts for the service's command lines, in one place (the simulator's is in lib/sim/cli.ts). */

/** `deno task` with no mode, or with `help`, or any mode with `--help`. */
export const MAIN_USAGE = `usage: deno task <mode>
  migrate                      apply database migrations
  start                        run the server (admin API, XRPC, backfill loop)
  backfill [--source S] [--collection NSID]... [--catch-up [--confirm-source-switch]] [--reset]
                               run a backfill to the end and exit
  status [status|start [source]|catch-up [source] [--confirm-source-switch]|full|watch|stop|
          reset NSID...]
                               talk to a running server
  sim-relay [--help]           start the simulated source relay`;

/** `deno task status help`. */
export const STATUS_USAGE = [
  "usage: deno task status [command]",
  "",
  "commands:",
  "  status                      summary of the collection backfill (the default)",
  "  start [source]              start a backfill from source (the server's default if omitted)",
  "  catch-up [source]           resume completed collections from their last cursor for new DIDs",
  "    --confirm-source-switch   allow restarting completed collections another source imported",
  "  full                        the raw status JSON",
  "  watch [--interval SECONDS]  live progress until the run ends (Ctrl-C to quit)",
  "  stop                        stop the running backfill",
  "  reset <collection>...       forget the progress of these collections (NSIDs)",
  "  help                        this text",
  "",
  "environment: RELAY_URL (the server), RELAY_ADMIN_PASSWORD (the admin token)",
];
