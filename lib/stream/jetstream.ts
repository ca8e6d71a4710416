/** Decodes Jetstream `/subscribe` JSON messages into LiveEvents (a thin reader: three kinds, one op each). */
import { isDid } from "../util/syntax.ts";
import { cursorOf, type LiveEvent, malformed } from "./event.ts";
import { parseOp } from "./firehose.ts";

type Rec = Record<string, unknown>;

function isRec(v: unknown): v is Rec {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Decodes one text WebSocket message of a Jetstream. Never throws: bad messages are `malformed`. */
export function decodeJetstreamMessage(text: string): LiveEvent {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return malformed("not JSON");
  }
  if (!isRec(msg)) return malformed("not a JSON object");
  const cursor = cursorOf(msg.time_us);
  if (cursor === undefined) return malformed("no valid time_us");
  const timeMs = cursor / 1000;
  if (!isDid(msg.did)) return malformed("no valid did", cursor);
  switch (msg.kind) {
    case "commit": {
      const c = msg.commit;
      if (!isRec(c)) return malformed("commit event without commit", cursor);
      const op = parseOp(
        c.operation,
        typeof c.collection === "string" && typeof c.rkey === "string"
          ? `${c.collection}/${c.rkey}`
          : undefined,
      );
      if (op === undefined) return malformed("commit event with a malformed op", cursor);
      return { type: "commit", cursor, timeMs, did: msg.did, ops: [op] };
    }
    case "account": {
      const a = msg.account;
      if (!isRec(a) || typeof a.active !== "boolean") {
        return malformed("account event without account.active", cursor);
      }
      const did = isDid(a.did) ? a.did : msg.did;
      const status = typeof a.status === "string" ? a.status : undefined;
      return { type: "account", cursor, timeMs, did, active: a.active, status };
    }
    case "identity":
      return { type: "skip", kind: "identity", cursor, timeMs };
    default:
      return {
        type: "skip",
        kind: "unknown",
        cursor,
        timeMs,
        detail: String(msg.kind).slice(0, 64),
      };
  }
}
