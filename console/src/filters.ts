// Filters of the queue and of the event log: kept in the URL's query string
// (so a filtered view can be shared) and turned into list requests.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  AccessRequestState,
  ListAccessRequestsRequestSchema,
  UserType,
  type AccessRequest,
  type ListAccessRequestsRequest,
} from "@client/gen/sesame/v1/access_request_pb";
import { EventType, ListEventsRequestSchema, type ListEventsRequest } from "@client/gen/sesame/v1/event_pb";

export type Order = "asc" | "desc";

/** The queue's filters, as the user set them. */
export interface QueueFilter {
  state: AccessRequestState;
  userType: UserType;
  resource: string;
  email: string;
  /** `YYYY-MM-DD`, local day, inclusive; empty for no bound. */
  from: string;
  /** `YYYY-MM-DD`, local day, inclusive; empty for no bound. */
  to: string;
  order: Order;
}

/** The default queue: pending requests, oldest first. */
export const DEFAULT_QUEUE_FILTER: QueueFilter = {
  state: AccessRequestState.PENDING,
  userType: UserType.UNSPECIFIED,
  resource: "",
  email: "",
  from: "",
  to: "",
  order: "asc",
};

const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

function enumFromName<E extends Record<string, string | number>>(e: E, name: string | null, fallback: number): number {
  if (name === null) return fallback;
  if (name === "any") return 0;
  const value = e[name.toUpperCase()];
  return typeof value === "number" ? value : fallback;
}

/** Reads the queue filter from a query string; unknown values fall back to the defaults. */
export function queueFilterFromSearch(search: URLSearchParams): QueueFilter {
  const from = search.get("from") ?? "";
  const to = search.get("to") ?? "";
  return {
    state: enumFromName(AccessRequestState, search.get("state"), DEFAULT_QUEUE_FILTER.state),
    userType: enumFromName(UserType, search.get("user_type"), DEFAULT_QUEUE_FILTER.userType),
    resource: (search.get("resource") ?? "").trim(),
    email: (search.get("email") ?? "").trim(),
    from: DATE_RE.test(from) ? from : "",
    to: DATE_RE.test(to) ? to : "",
    order: search.get("order") === "desc" ? "desc" : "asc",
  };
}

/** The query string of a queue filter: only what differs from the defaults. */
export function queueFilterToSearch(f: QueueFilter): URLSearchParams {
  const out = new URLSearchParams();
  if (f.state !== DEFAULT_QUEUE_FILTER.state) {
    out.set("state", f.state === AccessRequestState.UNSPECIFIED ? "any" : AccessRequestState[f.state].toLowerCase());
  }
  if (f.userType !== UserType.UNSPECIFIED) out.set("user_type", UserType[f.userType].toLowerCase());
  if (f.resource.trim()) out.set("resource", f.resource.trim());
  if (f.email.trim()) out.set("email", f.email.trim());
  if (f.from) out.set("from", f.from);
  if (f.to) out.set("to", f.to);
  if (f.order !== DEFAULT_QUEUE_FILTER.order) out.set("order", f.order);
  return out;
}

/** Local midnight starting the day `YYYY-MM-DD`. */
export function startOfLocalDay(day: string): Date {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(y, m - 1, d);
}

/** Local midnight ending the day `YYYY-MM-DD` (the next day's start). */
export function endOfLocalDay(day: string): Date {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(y, m - 1, d + 1);
}

/** The ListAccessRequests request for a filter and page. */
export function queueRequest(f: QueueFilter, pageToken = "", pageSize = 50): ListAccessRequestsRequest {
  return create(ListAccessRequestsRequestSchema, {
    pageSize,
    pageToken,
    state: f.state,
    userType: f.userType,
    resource: f.resource.trim(),
    applicantEmail: f.email.trim(),
    createTimeStart: f.from ? timestampFromDate(startOfLocalDay(f.from)) : undefined,
    createTimeEnd: f.to ? timestampFromDate(endOfLocalDay(f.to)) : undefined,
    orderBy: f.order === "asc" ? "create_time asc" : "create_time desc",
  });
}

/** Whether a request belongs in the queue under a filter (for live updates). */
export function matchesQueueFilter(r: AccessRequest, f: QueueFilter): boolean {
  if (f.state !== AccessRequestState.UNSPECIFIED && r.state !== f.state) return false;
  if (f.userType !== UserType.UNSPECIFIED && r.userType !== f.userType) return false;
  if (f.resource.trim() && r.resource !== f.resource.trim()) return false;
  if (f.email.trim() && (r.applicant?.email ?? "").toLowerCase() !== f.email.trim().toLowerCase()) return false;
  const created = r.createTime ? Number(r.createTime.seconds) * 1000 + Math.floor(r.createTime.nanos / 1e6) : 0;
  if (f.from && created < startOfLocalDay(f.from).getTime()) return false;
  if (f.to && created >= endOfLocalDay(f.to).getTime()) return false;
  return true;
}

/** The event log's filters. */
export interface EventFilter {
  accessRequest: string;
  type: EventType;
  actor: string;
  from: string;
  to: string;
}

export const DEFAULT_EVENT_FILTER: EventFilter = {
  accessRequest: "",
  type: EventType.UNSPECIFIED,
  actor: "",
  from: "",
  to: "",
};

export function eventFilterFromSearch(search: URLSearchParams): EventFilter {
  const from = search.get("from") ?? "";
  const to = search.get("to") ?? "";
  const request = (search.get("request") ?? "").trim();
  return {
    accessRequest: request,
    type: enumFromName(EventType, search.get("type"), EventType.UNSPECIFIED),
    actor: (search.get("actor") ?? "").trim(),
    from: DATE_RE.test(from) ? from : "",
    to: DATE_RE.test(to) ? to : "",
  };
}

export function eventFilterToSearch(f: EventFilter): URLSearchParams {
  const out = new URLSearchParams();
  if (f.accessRequest.trim()) out.set("request", f.accessRequest.trim());
  if (f.type !== EventType.UNSPECIFIED) out.set("type", EventType[f.type].toLowerCase());
  if (f.actor.trim()) out.set("actor", f.actor.trim());
  if (f.from) out.set("from", f.from);
  if (f.to) out.set("to", f.to);
  return out;
}

/** A request name from what the user typed: a bare uuid gets its `accessRequests/` prefix. */
export function normalizeRequestName(input: string): string {
  const trimmed = input.trim();
  if (!trimmed) return "";
  return trimmed.startsWith("accessRequests/") ? trimmed : `accessRequests/${trimmed}`;
}

export function eventsRequest(f: EventFilter, pageToken = "", pageSize = 100): ListEventsRequest {
  return create(ListEventsRequestSchema, {
    pageSize,
    pageToken,
    accessRequest: normalizeRequestName(f.accessRequest),
    eventTypes: f.type === EventType.UNSPECIFIED ? [] : [f.type],
    actor: f.actor.trim(),
    occurTimeStart: f.from ? timestampFromDate(startOfLocalDay(f.from)) : undefined,
    occurTimeEnd: f.to ? timestampFromDate(endOfLocalDay(f.to)) : undefined,
  });
}
