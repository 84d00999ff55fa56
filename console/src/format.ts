// Formatting of times, durations and enum values for display.
import { timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import { AccessRequestState, GatewayCodeState, UserType } from "@client/gen/sesame/v1/access_request_pb";
import { CallerRole } from "@client/gen/sesame/v1/caller_pb";
import { EmailDelivery, EmailState, EmailTemplate, SuppressionReason } from "@client/gen/sesame/v1/email_pb";
import { EventType } from "@client/gen/sesame/v1/event_pb";
import { getLang, hasKey, t, type MessageKey } from "./i18n";

/** Milliseconds of a protobuf Duration (0 when unset). */
export function durationMs(d: Duration | undefined): number {
  if (!d) return 0;
  return Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);
}

/** Milliseconds since the epoch of a protobuf Timestamp, or undefined when unset. */
export function timestampMs(ts: Timestamp | undefined): number | undefined {
  return ts ? timestampDate(ts).getTime() : undefined;
}

/**
 * A duration in at most two units, e.g. `3 d 4 h`, `2 h 5 min`, `45 s`
 * (`j` for days in French).
 */
export function formatDuration(ms: number, lang = getLang()): string {
  const negative = ms < 0;
  let s = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const day = lang === "fr" ? "j" : "d";
  let out: string;
  if (d > 0) out = h > 0 ? `${d} ${day} ${h} h` : `${d} ${day}`;
  else if (h > 0) out = m > 0 ? `${h} h ${m} min` : `${h} h`;
  else if (m > 0) out = s > 0 ? `${m} min ${s} s` : `${m} min`;
  else out = `${s} s`;
  return negative ? `-${out}` : out;
}

const dateTimeFormats = new Map<string, Intl.DateTimeFormat>();

/** A date and time in the user's language and time zone; empty for unset. */
export function formatTime(ts: Timestamp | Date | undefined, lang = getLang(), timeZone?: string): string {
  if (!ts) return "";
  const date = ts instanceof Date ? ts : timestampDate(ts);
  const cacheKey = `${lang}|${timeZone ?? ""}`;
  let fmt = dateTimeFormats.get(cacheKey);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat(lang === "fr" ? "fr-FR" : "en-GB", {
      dateStyle: "medium",
      timeStyle: "short",
      timeZone,
    });
    dateTimeFormats.set(cacheKey, fmt);
  }
  return fmt.format(date);
}

/** A percentage with at most one decimal, e.g. `12.5 %` / `12,5 %`. */
export function formatPercent(ratio: number, lang = getLang()): string {
  const value = Math.round(ratio * 1000) / 10;
  const text = lang === "fr" ? String(value).replace(".", ",") : String(value);
  return lang === "fr" ? `${text} %` : `${text}%`;
}

function enumLabel(prefix: string, name: string | undefined): string {
  const key = `${prefix}.${name ?? "UNSPECIFIED"}`;
  return hasKey(key) ? t(key as MessageKey) : (name ?? "?");
}

export const stateLabel = (s: AccessRequestState) => enumLabel("state", AccessRequestState[s]);
export const userTypeLabel = (u: UserType) => enumLabel("userType", UserType[u]);
export const eventLabel = (e: EventType) => enumLabel("event", EventType[e]);
export const emailStateLabel = (e: EmailState) => enumLabel("emailState", EmailState[e]);
export const deliveryLabel = (d: EmailDelivery) => enumLabel("delivery", EmailDelivery[d]);
export const suppressionLabel = (r: SuppressionReason) => enumLabel("suppression", SuppressionReason[r]);
export const templateLabel = (e: EmailTemplate) => enumLabel("template", EmailTemplate[e]);
export const codeStateLabel = (e: GatewayCodeState) => enumLabel("codeState", GatewayCodeState[e]);

export function roleLabel(role: CallerRole): string {
  switch (role) {
    case CallerRole.ADMIN:
      return t("role.admin");
    case CallerRole.AUDITOR:
      return t("role.auditor");
    case CallerRole.SUBMITTER:
      return t("role.submitter");
    case CallerRole.GATEWAY:
      return t("role.gateway");
    default:
      return t("role.unknown");
  }
}

/** The uuid of `accessRequests/{uuid}` (the name itself when it has no slash). */
export function shortName(name: string): string {
  const i = name.lastIndexOf("/");
  return i >= 0 ? name.slice(i + 1) : name;
}
