/** The embedded default: PGlite in `$DATA_DIR/pg`, served on a loopback socket for postgres.js. */
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import { StoreError } from "../util/mod.ts";

/** A running embedded Postgres. */
export interface EmbeddedPostgres {
  /** Connection URL for postgres.js (loopback, one connection). */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Starts PGlite on `dir`. Only one process may use `dir`; callers open the index first, whose
 * LevelDB lock guards the whole data directory.
 */
export async function startEmbeddedPostgres(dir: string): Promise<EmbeddedPostgres> {
  let db: PGlite;
  try {
    await Deno.mkdir(dir, { recursive: true });
    db = await PGlite.create(dir);
  } catch (err) {
    throw new StoreError(
      `cannot open embedded Postgres in ${dir}: ${(err as Error).message}`,
      "progress",
      {
        cause: err,
      },
    );
  }
  const server = new PGLiteSocketServer({ db, port: 0, host: "127.0.0.1" });
  await server.start();
  const conn = server.getServerConn();
  const port = Number(conn.slice(conn.lastIndexOf(":") + 1));
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async close() {
      await server.stop();
      await db.close();
    },
  };
}
