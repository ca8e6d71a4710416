/** The few typed errors the service raises; each carries context and, where there is one, a `cause`. */

/** Bad input from a user, a flag or the environment: maps to HTTP 400 or a usage error. */
export class InputError extends Error {
  override name = "InputError";
  constructor(message: string, readonly field?: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** A request to the source relay failed; `retryable` says whether trying again can help. */
export class SourceError extends Error {
  override name = "SourceError";
  constructor(
    message: string,
    readonly context: { url?: string; collection?: string; status?: number; retryable: boolean },
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The index or the progress store could not be opened, read or written. */
export class StoreError extends Error {
  override name = "StoreError";
  constructor(message: string, readonly store: "index" | "progress", options?: ErrorOptions) {
    super(message, options);
  }
}

/** A collection cannot go on: the source answered something the loop guards refuse. */
export class StuckError extends Error {
  override name = "StuckError";
  constructor(message: string, readonly context: { collection: string; cursor: string }) {
    super(message);
  }
}

/**
 * Something is held by another: a backfill holds the run lock (HTTP 409), or another process has
 * the server's port.
 */
export class BusyError extends Error {
  override name = "BusyError";
}

/** The API parameter and CLI flag that confirm restarting completed collections on another source. */
export const CONFIRM_SOURCE_SWITCH = "confirm-source-switch";

/**
 * A request that would undo finished work and lacks its explicit confirmation (`parameter`): HTTP
 * 409, exit code 2. `details` says what it would undo.
 */
export class ConfirmationError extends Error {
  override name = "ConfirmationError";
  constructor(
    message: string,
    readonly parameter: string,
    readonly details: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** Short text for an unknown thrown value, for logs and the progress row's `last_error`. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
