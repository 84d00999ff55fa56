// Turns any error of a call into what the console shows: a plain-words
// message from the ErrorInfo reason (dictionary first, the server's message as
// the fallback), the BadRequest field violations keyed by field path, and
// flags for the cases the UI treats specially (sign-in again, retry banner,
// stale etag).
import { Code, ConnectError } from "@connectrpc/connect";
import { errorInfo, fieldViolations } from "@client/errors";
import { hasKey, t } from "./i18n";

export interface UiError {
  /** gRPC status code (Code.Unknown for a non-Connect error). */
  code: Code;
  /** ErrorInfo reason, when the server sent one. */
  reason?: string;
  /** ErrorInfo metadata (e.g. `cursor`). */
  metadata: Record<string, string>;
  /** What to tell the user, in the current language. */
  message: string;
  /** Field path (`reason`, `applicant.email`...) -> message for that field. */
  fields: Record<string, string>;
  /** The server could not be reached: offer a retry. */
  unavailable: boolean;
  /** The key is no longer accepted: back to sign-in. */
  unauthenticated: boolean;
  /** The request changed since it was read (ABORTED, ETAG_MISMATCH). */
  stale: boolean;
}

/** Describes an error for display. */
export function describeError(err: unknown): UiError {
  const connectErr = ConnectError.from(err);
  const info = errorInfo(connectErr);
  const reason = info?.reason || undefined;
  const fields: Record<string, string> = {};
  for (const v of fieldViolations(connectErr)) {
    const key = `reason.${v.reason}`;
    // The server's descriptions are English; the commonest one is translated.
    const text =
      v.reason && hasKey(key)
        ? t(key)
        : v.description === "is required"
          ? t("field.required")
          : v.description;
    fields[v.field] = fields[v.field] ? `${fields[v.field]} ${text}` : text;
  }
  // A fetch that never reached the server (offline, connection refused)
  // surfaces as UNKNOWN with the browser's TypeError: it is UNAVAILABLE.
  const code = isNetworkFailure(connectErr) ? Code.Unavailable : connectErr.code;
  return {
    code,
    reason,
    metadata: { ...(info?.metadata ?? {}) },
    message: messageFor(code, reason, connectErr.rawMessage),
    fields,
    unavailable: code === Code.Unavailable,
    unauthenticated: code === Code.Unauthenticated,
    stale: code === Code.Aborted && (reason === "ETAG_MISMATCH" || reason === undefined),
  };
}

/** Whether the call failed in the browser's network layer, before any answer. */
export function isNetworkFailure(err: ConnectError): boolean {
  if (err.code !== Code.Unknown) return false;
  return err.cause instanceof TypeError || /failed to fetch|networkerror|load failed|network error/i.test(err.rawMessage);
}

/** The message for a status code and reason, falling back to the server's text. */
export function messageFor(code: Code, reason: string | undefined, serverMessage: string): string {
  if (reason) {
    const key = `reason.${reason}`;
    if (hasKey(key)) return t(key);
  }
  switch (code) {
    case Code.Unavailable:
      return t("error.unavailable");
    case Code.Unauthenticated:
      return t("error.unauthenticated");
    case Code.PermissionDenied:
      return t("error.permissionDenied");
    case Code.DeadlineExceeded:
      return t("error.deadline");
    case Code.Unimplemented:
      return t("error.unimplemented");
    case Code.InvalidArgument:
      if (!serverMessage) return t("error.invalid");
      break;
    case Code.NotFound:
      if (!serverMessage) return t("error.notFound");
      break;
    default:
      break;
  }
  return t("error.generic", { message: serverMessage || Code[code] || "unknown" });
}
