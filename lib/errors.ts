/**
 * Typed errors with stable codes. Every error retask raises on purpose is a
 * {@link RetaskError}; its `exitCode` is what the CLI exits with.
 * @module
 */

/** Stable error codes; scripts may match on them. */
export type ErrorCode =
  | "usage" // bad flags or arguments
  | "invalid_input" // arguments parse but are rejected (bad JSON, unknown program, ...)
  | "database" // PostgreSQL failed for a reason that is not the input's fault
  | "embedded" // the embedded PostgreSQL could not be started
  | "internal";

/** An error with a stable code and a one-line message that says what to do. */
export class RetaskError extends Error {
  /** Stable code for scripts. */
  readonly code: ErrorCode;

  /** An error with `code` and a one-line `message`; `cause` keeps the underlying error. */
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RetaskError";
    this.code = code;
  }

  /** 2 for usage and input errors, 1 for runtime failures. */
  get exitCode(): 1 | 2 {
    return this.code === "usage" || this.code === "invalid_input" ? 2 : 1;
  }
}

/** Shape of a PostgreSQL error as postgres.js reports it. */
interface PgErrorLike {
  code: string;
  message: string;
  hint?: string;
}

/** True for errors PostgreSQL raised (they carry a five-character SQLSTATE). */
export function isPgError(error: unknown): error is PgErrorLike {
  const code = (error as Partial<PgErrorLike> | null)?.code;
  return error instanceof Error && typeof code === "string" && /^[0-9A-Z]{5}$/.test(code);
}

// SQLSTATEs retask's SQL raises for bad input, plus the ones PostgreSQL raises
// when a value does not fit its type or a constraint.
const INPUT_SQLSTATES = new Set([
  "22023", // invalid_parameter_value
  "22P02", // invalid_text_representation (bad JSON, bad number)
  "22007", // invalid_datetime_format
  "22008", // datetime_field_overflow
  "22003", // numeric_value_out_of_range
  "23514", // check_violation
  "23502", // not_null_violation
  "42883", // undefined_function (a program's function)
  "42809", // wrong_object_type
  "42P13", // invalid_function_definition
  "P0002", // no_data_found (unknown program or task)
]);

/**
 * Wraps any error in a {@link RetaskError}: PostgreSQL's input errors become
 * `invalid_input` (exit 2) keeping their SQLSTATE in `cause`, the rest `database`.
 */
export function toRetaskError(error: unknown): RetaskError {
  if (error instanceof RetaskError) return error;
  if (isPgError(error)) {
    const hint = error.hint ? ` (${error.hint})` : "";
    const code = INPUT_SQLSTATES.has(error.code) ? "invalid_input" : "database";
    return new RetaskError(code, `${error.message}${hint}`, { cause: error });
  }
  if (error instanceof Error) {
    return new RetaskError("internal", error.message, { cause: error });
  }
  return new RetaskError("internal", String(error));
}

/** The one-line reason of an error, for logs and task results. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
