// The queue's rows under live updates: a request read again after an event
// is put in place, moved out, or added, never twice.
import type { AccessRequest } from "@client/gen/sesame/v1/access_request_pb";
import { matchesQueueFilter, type QueueFilter } from "./filters";
import { timestampMs } from "./format";

export interface QueueView {
  rows: AccessRequest[];
  /** Token of the next page; non-empty when more rows exist past the loaded ones. */
  nextPageToken: string;
}

function created(r: AccessRequest): number {
  return timestampMs(r.createTime) ?? 0;
}

/**
 * The rows after `request` was read again: replaced when present and still
 * matching, removed when it no longer matches, inserted in order when new and
 * matching. A new row that sorts after the last loaded row while more pages
 * exist is left for those pages (it would otherwise show twice).
 */
export function mergeRow(view: QueueView, request: AccessRequest, filter: QueueFilter): AccessRequest[] {
  const index = view.rows.findIndex((r) => r.name === request.name);
  const matches = matchesQueueFilter(request, filter);
  if (index >= 0) {
    if (!matches) return view.rows.filter((_, i) => i !== index);
    const copy = view.rows.slice();
    copy[index] = request;
    return copy;
  }
  if (!matches) return view.rows;
  const t = created(request);
  const before = (r: AccessRequest) => (filter.order === "asc" ? created(r) > t : created(r) < t);
  const at = view.rows.findIndex(before);
  if (at < 0) {
    if (view.nextPageToken) return view.rows;
    return [...view.rows, request];
  }
  return [...view.rows.slice(0, at), request, ...view.rows.slice(at)];
}

/** Appends a page, skipping rows already shown (a live insert may have added one). */
export function appendPage(rows: AccessRequest[], page: AccessRequest[]): AccessRequest[] {
  const seen = new Set(rows.map((r) => r.name));
  return [...rows, ...page.filter((r) => !seen.has(r.name))];
}
