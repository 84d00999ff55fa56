// CSV export of events (RFC 4180, CRLF line ends), safe to open in a
// spreadsheet: text cells starting with a formula character are prefixed
// with an apostrophe so they are not evaluated.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { AccessRequestState } from "@client/gen/sesame/v1/access_request_pb";
import { EventType, type Event } from "@client/gen/sesame/v1/event_pb";

export const EVENT_CSV_COLUMNS = [
  "sequence",
  "occur_time",
  "type",
  "actor",
  "access_request",
  "state",
  "reason",
  "automatic",
  "rule_id",
  "hash",
] as const;

/** One CSV cell: quoted when needed, formula-looking text neutralised. */
export function csvCell(value: string | number | bigint | boolean): string {
  let text = String(value);
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) {
    text = `'${text}`;
  }
  if (/[",\r\n]/.test(text)) {
    text = `"${text.replace(/"/g, '""')}"`;
  }
  return text;
}

/** The events as CSV text with a header line. */
export function eventsToCsv(events: readonly Event[]): string {
  const lines = [EVENT_CSV_COLUMNS.join(",")];
  for (const e of events) {
    lines.push(
      [
        e.sequence,
        e.occurTime ? timestampDate(e.occurTime).toISOString() : "",
        `${EventType[e.type] ?? e.type}`.toLowerCase(),
        e.actor,
        e.accessRequest,
        `${AccessRequestState[e.state] ?? e.state}`.toLowerCase(),
        e.reason,
        e.automatic,
        e.ruleId,
        e.hash,
      ]
        .map(csvCell)
        .join(","),
    );
  }
  return lines.join("\r\n") + "\r\n";
}
