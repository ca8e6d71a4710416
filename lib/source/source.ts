/** Parsing and naming of source relays: a bare host (`bsky.network`) or an http(s) URL. */
import { InputError } from "../util/mod.ts";

/** A validated source relay. `name` is how progress rows record it; `baseUrl` is where requests go. */
export interface Source {
  readonly name: string;
  readonly baseUrl: string;
  /** Host (with port) that the per-host rate limit applies to. */
  readonly host: string;
}

const MAX_SOURCE_LENGTH = 512;
const LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
const BARE_HOST_RE = new RegExp(`^${LABEL}(\\.${LABEL})*(:[0-9]{1,5})?$`);

/** Parses a source given by a user; throws InputError naming the value when it is not acceptable. */
export function parseSource(input: string): Source {
  const raw = input.trim();
  const shown = JSON.stringify(raw.length > 80 ? raw.slice(0, 80) + "…" : raw);
  if (raw === "") throw new InputError("source is empty", "source");
  if (raw.length > MAX_SOURCE_LENGTH) {
    throw new InputError(
      `source ${shown} is longer than ${MAX_SOURCE_LENGTH} characters`,
      "source",
    );
  }
  if (!raw.includes("://")) {
    const host = raw.toLowerCase();
    if (!BARE_HOST_RE.test(host) || !validPort(host)) {
      throw new InputError(
        `source ${shown} is neither a host name (like bsky.network) nor an http(s):// URL`,
        "source",
      );
    }
    return { name: host, baseUrl: `https://${host}`, host };
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch (cause) {
    throw new InputError(`source ${shown} is not a valid URL`, "source", { cause });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InputError(`source ${shown} must use http:// or https://`, "source");
  }
  if (url.username || url.password) {
    throw new InputError(`source ${shown} must not carry credentials`, "source");
  }
  if (url.search || url.hash) {
    throw new InputError(`source ${shown} must not have a query or fragment`, "source");
  }
  const path = url.pathname.replace(/\/+$/, "");
  const baseUrl = `${url.protocol}//${url.host}${path}`;
  // `https://bsky.network` is the same source as `bsky.network`, and its cursors are the same.
  const bare = url.protocol === "https:" && path === "" && url.username === "";
  return { name: bare ? url.host : baseUrl, baseUrl, host: url.host };
}

function validPort(host: string): boolean {
  const i = host.indexOf(":");
  if (i < 0) return true;
  const port = Number(host.slice(i + 1));
  return port >= 1 && port <= 65535;
}

/**
 * True when `source`'s host is on the allow-list: an entry with a port must match host and port, an
 * entry without one matches the host on any port.
 */
export function sourceAllowed(source: Source, hosts: readonly string[]): boolean {
  const host = source.host.toLowerCase();
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.split(":")[0];
  return hosts.some((h) => h === host || h === name);
}
