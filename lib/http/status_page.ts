/** The browser status page at `GET /` and its live feed, `GET /admin/backfill-collections/events` (SSE). */
import type { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { adminAuth } from "./admin_auth.ts";
import type { Backfiller } from "../run/mod.ts";
import { errorMessage, sleep } from "../util/mod.ts";
import type { ProgressStore } from "../progress/mod.ts";
import { buildStatus } from "../status/mod.ts";
import type { LiveStatus } from "../stream/mod.ts";

/** Where the page reads its events; behind the admin token like the rest of `/admin`. */
export const STATUS_EVENTS_PATH = "/admin/backfill-collections/events";

/** The sessionStorage key the page keeps the admin token under. */
export const TOKEN_STORAGE_KEY = "backfill-admin-token";

/** What the status page needs. */
export interface StatusPageOptions {
  readonly backfiller: Backfiller;
  readonly progress: ProgressStore;
  readonly adminPassword?: string;
  /** The live stream's status, when there is one. */
  readonly live?: () => Promise<LiveStatus | null>;
  /** Time between status events (default 1000 ms). */
  readonly intervalMs?: number;
  readonly now?: () => number;
  /** Ends every open event stream when it aborts. A graceful `server.shutdown()` waits for open
   * responses and an event stream never ends by itself (`Deno.serve({ signal })` cuts them). */
  readonly signal?: AbortSignal;
}

/** Routes for `createApp({ extend })`: the public page and the admin-only event stream. */
export function statusPageRoutes(opts: StatusPageOptions): (app: Hono) => void {
  const intervalMs = Math.max(10, opts.intervalMs ?? 1000);
  const now = opts.now ?? Date.now;
  let page: Promise<{ html: string; csp: string }> | undefined;
  const open = new Set<{ abort(): void }>();
  // One listener for all streams, so connections do not pile up listeners on a long-lived signal.
  opts.signal?.addEventListener("abort", () => {
    for (const stream of open) stream.abort();
  }, { once: true });
  return (app) => {
    app.get("/", async (c) => {
      const p = await (page ??= renderPage());
      c.header("Content-Security-Policy", p.csp);
      c.header("X-Content-Type-Options", "nosniff");
      c.header("Referrer-Policy", "no-referrer");
      c.header("X-Frame-Options", "DENY");
      c.header("Cache-Control", "no-cache");
      return c.html(p.html);
    });
    app.get(STATUS_EVENTS_PATH, adminAuth(opts.adminPassword), (c) => {
      // Stop nginx-style proxies from buffering the stream.
      c.header("X-Accel-Buffering", "no");
      return streamSSE(c, async (stream) => {
        const aborted = new AbortController();
        // Fires on client disconnect (the response body is cancelled) and on stream.abort().
        stream.onAbort(() => aborted.abort());
        if (opts.signal?.aborted) return;
        open.add(stream);
        try {
          let last = "";
          while (!stream.aborted) {
            let data: string;
            try {
              const [rows, record] = await Promise.all([
                opts.progress.list(),
                opts.progress.indexRecord(),
              ]);
              const b = opts.backfiller;
              const live = (await opts.live?.().catch(() => null)) ?? null;
              data = JSON.stringify(buildStatus(rows, b.state, b.running, now(), live, record));
            } catch (err) {
              data = "";
              await stream.writeSSE({
                event: "error",
                data: JSON.stringify({ message: `status unavailable: ${errorMessage(err)}` }),
              });
            }
            if (stream.aborted) break;
            if (data !== "" && data !== last) await stream.writeSSE({ event: "status", data });
            // An unchanged document (an idle server) is not worth resending in full.
            else if (data !== "") await stream.write(": keepalive\n\n");
            last = data;
            await sleep(intervalMs, aborted.signal).catch(() => {});
          }
        } finally {
          open.delete(stream);
        }
      });
    });
  };
}

async function sha256(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return btoa(String.fromCharCode(...new Uint8Array(d)));
}

/** The page's files, read from disk next to this module (they ship with the code, no build step). */
const PAGE_FILES = {
  html: new URL("./page/status.html", import.meta.url),
  style: new URL("./page/status.css", import.meta.url),
  script: new URL("./page/status.js", import.meta.url),
};

/** The modules the page shares with the server and the CLI, so there is one copy of each rule. */
const SHARED_MODULES = [
  new URL("../status/format.js", import.meta.url),
  new URL("../status/state.js", import.meta.url),
  new URL("../util/async.js", import.meta.url),
];

/**
 * The page's one script: its constants, the shared modules, then its own code. The modules are
 * inlined rather than loaded, so the CSP can allow exactly one script by its hash.
 */
async function pageScript(): Promise<string> {
  const shared = await Promise.all(
    SHARED_MODULES.map(async (url) => inlineModule(url, await Deno.readTextFile(url))),
  );
  return [
    `"use strict";`,
    `const KEY = ${JSON.stringify(TOKEN_STORAGE_KEY)};`,
    `const EVENTS = ${JSON.stringify(STATUS_EVENTS_PATH)};`,
    ...shared,
    await Deno.readTextFile(PAGE_FILES.script),
  ].join("\n");
}

/**
 * A self-contained ES module (no imports) as a classic-script block that declares its exports:
 * `const { a, b } = (() => { …body without "export"…; return { a, b }; })();`.
 */
export function inlineModule(url: URL, source: string): string {
  const names = [...source.matchAll(/^export (?:async )?(?:function|const|class) (\w+)/gm)]
    .map((m) => m[1]);
  const body = source.replace(/^export (?=(?:async )?(?:function|const|class) )/gm, "");
  if (/^\s*(?:import|export)\b/m.test(body)) {
    throw new Error(
      `${url.pathname} cannot be inlined into the status page: it imports or re-exports`,
    );
  }
  const list = names.join(", ");
  return `// ${
    url.pathname.split("/lib/").pop()
  }\nconst { ${list} } = (() => {\n${body}\nreturn { ${list} };\n})();`;
}

async function renderPage(): Promise<{ html: string; csp: string }> {
  const [template, style, script] = await Promise.all([
    Deno.readTextFile(PAGE_FILES.html),
    Deno.readTextFile(PAGE_FILES.style),
    pageScript(),
  ]);
  const csp = [
    "default-src 'self'",
    `script-src 'sha256-${await sha256(script)}'`,
    `style-src 'sha256-${await sha256(style)}'`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
  // The CSP hashes cover the element's whole text, so the placeholder's surrounding whitespace
  // goes too. Replacer functions, so "$&"-style patterns in the inserted text stay literal.
  const html = template
    .replace(/<style>\s*\/\*STYLE\*\/\s*<\/style>/, () => `<style>${style}</style>`)
    .replace(/<script>\s*\/\*SCRIPT\*\/\s*<\/script>/, () => `<script>${script}</script>`);
  return { html, csp };
}
