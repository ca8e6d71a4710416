/** Parsing of LIVE_STREAM_URL: a ws(s):// firehose or Jetstream, told apart by the path. */
import { InputError } from "../util/errors.ts";

/** Which protocol a live stream speaks. */
export type StreamKind = "firehose" | "jetstream";

/** A validated live stream endpoint. */
export interface StreamEndpoint {
  readonly kind: StreamKind;
  /** The URL without a query: the name its cursor is saved under. */
  readonly url: string;
  readonly host: string;
}

const MAX_LENGTH = 512;
const FIREHOSE_PATH = "/xrpc/com.atproto.sync.subscribeRepos";
const JETSTREAM_PATH = "/subscribe";

/**
 * Parses a stream URL the way sources are parsed: ws:// or wss://, no credentials, query or
 * fragment, at most 512 characters; the path says the kind (a prefix before it is kept, for proxies).
 */
export function parseStreamUrl(input: string): StreamEndpoint {
  const raw = input.trim();
  const shown = JSON.stringify(raw.length > 80 ? raw.slice(0, 80) + "…" : raw);
  if (raw === "") throw new InputError("live stream URL is empty", "LIVE_STREAM_URL");
  if (raw.length > MAX_LENGTH) {
    throw new InputError(
      `live stream URL ${shown} is longer than ${MAX_LENGTH} characters`,
      "LIVE_STREAM_URL",
    );
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch (cause) {
    throw new InputError(`live stream URL ${shown} is not a valid URL`, "LIVE_STREAM_URL", {
      cause,
    });
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new InputError(`live stream URL ${shown} must use ws:// or wss://`, "LIVE_STREAM_URL");
  }
  if (url.username || url.password) {
    throw new InputError(`live stream URL ${shown} must not carry credentials`, "LIVE_STREAM_URL");
  }
  if (url.search || url.hash) {
    throw new InputError(
      `live stream URL ${shown} must not have a query or fragment (the cursor is added by the consumer)`,
      "LIVE_STREAM_URL",
    );
  }
  const path = url.pathname.replace(/\/+$/, "");
  const kind: StreamKind | undefined = path.endsWith(FIREHOSE_PATH)
    ? "firehose"
    : path.endsWith(JETSTREAM_PATH)
    ? "jetstream"
    : undefined;
  if (kind === undefined) {
    throw new InputError(
      `live stream URL ${shown} must end in ${FIREHOSE_PATH} (a relay's firehose) or ${JETSTREAM_PATH} (a Jetstream)`,
      "LIVE_STREAM_URL",
    );
  }
  return { kind, url: `${url.protocol}//${url.host}${path}`, host: url.host };
}

/** The URL to connect to, resuming after `cursor` when there is one. */
export function connectUrl(endpoint: StreamEndpoint, cursor: number | undefined): string {
  return cursor === undefined ? endpoint.url : `${endpoint.url}?cursor=${cursor}`;
}
