#!/bin/sh
# Entrypoint of the stand-in for denoland/deno:debian-<version>, behaving as the official one does:
# `docker run IMAGE run main.ts` and `docker run IMAGE --version` go to deno; any other command
# (`deno run …`, `sh -c …`) runs as given. `exec` lets tini's signals reach the process itself.
set -e

case "$1" in
  -*)
    exec deno "$@"
    ;;
  # The subcommands the official entrypoint recognises (the same set, so the same behaviour).
  add | bench | bundle | cache | compile | completions | coverage | doc | eval | fmt | help | info | \
    init | install | jupyter | lint | lsp | publish | remove | repl | run | serve | task | test | \
    types | uninstall | upgrade | vendor)
    exec deno "$@"
    ;;
esac

exec "$@"
