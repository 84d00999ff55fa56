import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccessRequestSchema, AccessRequestState, UserType } from "@client/gen/sesame/v1/access_request_pb";
import { EventType } from "@client/gen/sesame/v1/event_pb";
import {
  DEFAULT_QUEUE_FILTER,
  eventFilterFromSearch,
  eventFilterToSearch,
  eventsRequest,
  matchesQueueFilter,
  queueFilterFromSearch,
  queueFilterToSearch,
  queueRequest,
} from "../src/filters";

describe("queue filter", () => {
  it("defaults to pending, oldest first", () => {
    const f = queueFilterFromSearch(new URLSearchParams(""));
    expect(f).toEqual(DEFAULT_QUEUE_FILTER);
    const req = queueRequest(f);
    expect(req.state).toBe(AccessRequestState.PENDING);
    expect(req.orderBy).toBe("create_time asc");
    expect(req.pageSize).toBe(50);
    expect(req.createTimeStart).toBeUndefined();
    expect(queueFilterToSearch(f).toString()).toBe("");
  });

  it("round-trips through the URL", () => {
    const f = {
      ...DEFAULT_QUEUE_FILTER,
      state: AccessRequestState.UNSPECIFIED,
      userType: UserType.PARTNER,
      resource: "vpn-paris",
      email: "Ada@Example.com",
      from: "2026-01-01",
      to: "2026-01-31",
      order: "desc" as const,
    };
    const search = queueFilterToSearch(f);
    expect(search.get("state")).toBe("any");
    expect(search.get("user_type")).toBe("partner");
    expect(queueFilterFromSearch(search)).toEqual(f);
  });

  it("maps to a ListAccessRequests request with a day-inclusive range", () => {
    const f = { ...DEFAULT_QUEUE_FILTER, resource: " vpn ", email: " a@b.c ", from: "2026-01-01", to: "2026-01-31", order: "desc" as const };
    const req = queueRequest(f, "tok", 20);
    expect(req.resource).toBe("vpn");
    expect(req.applicantEmail).toBe("a@b.c");
    expect(req.pageToken).toBe("tok");
    expect(req.pageSize).toBe(20);
    expect(req.orderBy).toBe("create_time desc");
    expect(timestampDate(req.createTimeStart!).getTime()).toBe(new Date(2026, 0, 1).getTime());
    expect(timestampDate(req.createTimeEnd!).getTime()).toBe(new Date(2026, 1, 1).getTime());
  });

  it("ignores malformed values", () => {
    const f = queueFilterFromSearch(new URLSearchParams("state=nope&from=yesterday&order=sideways&user_type=alien"));
    expect(f).toEqual(DEFAULT_QUEUE_FILTER);
  });

  it("matches requests like the server does (email ignoring case)", () => {
    const r = create(AccessRequestSchema, {
      name: "accessRequests/1",
      state: AccessRequestState.PENDING,
      userType: UserType.EMPLOYEE,
      resource: "vpn",
      applicant: { email: "Ada@Example.com" },
      createTime: timestampFromDate(new Date(2026, 0, 15, 12)),
    });
    expect(matchesQueueFilter(r, DEFAULT_QUEUE_FILTER)).toBe(true);
    expect(matchesQueueFilter(r, { ...DEFAULT_QUEUE_FILTER, email: "ada@example.com" })).toBe(true);
    expect(matchesQueueFilter(r, { ...DEFAULT_QUEUE_FILTER, email: "bob@example.com" })).toBe(false);
    expect(matchesQueueFilter(r, { ...DEFAULT_QUEUE_FILTER, state: AccessRequestState.APPROVED })).toBe(false);
    expect(matchesQueueFilter(r, { ...DEFAULT_QUEUE_FILTER, userType: UserType.PARTNER })).toBe(false);
    expect(matchesQueueFilter(r, { ...DEFAULT_QUEUE_FILTER, resource: "wiki" })).toBe(false);
    expect(matchesQueueFilter(r, { ...DEFAULT_QUEUE_FILTER, from: "2026-01-16" })).toBe(false);
    expect(matchesQueueFilter(r, { ...DEFAULT_QUEUE_FILTER, to: "2026-01-15" })).toBe(true);
    expect(matchesQueueFilter(r, { ...DEFAULT_QUEUE_FILTER, to: "2026-01-14" })).toBe(false);
  });
});

describe("event filter", () => {
  it("round-trips and maps to ListEvents", () => {
    const f = eventFilterFromSearch(new URLSearchParams("request=abc&type=request_approved&actor=alice&from=2026-02-01"));
    expect(f.type).toBe(EventType.REQUEST_APPROVED);
    expect(eventFilterFromSearch(eventFilterToSearch(f))).toEqual(f);
    const req = eventsRequest(f, "", 100);
    expect(req.accessRequest).toBe("accessRequests/abc");
    expect(req.eventTypes).toEqual([EventType.REQUEST_APPROVED]);
    expect(req.actor).toBe("alice");
    expect(timestampDate(req.occurTimeStart!).getTime()).toBe(new Date(2026, 1, 1).getTime());
    expect(req.occurTimeEnd).toBeUndefined();
  });

  it("sends no type filter for any type", () => {
    expect(eventsRequest(eventFilterFromSearch(new URLSearchParams())).eventTypes).toEqual([]);
  });
});
