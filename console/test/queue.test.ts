import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccessRequestSchema, AccessRequestState } from "@client/gen/sesame/v1/access_request_pb";
import { DEFAULT_QUEUE_FILTER } from "../src/filters";
import { appendPage, mergeRow } from "../src/queue";

function req(id: string, minute: number, state = AccessRequestState.PENDING) {
  return create(AccessRequestSchema, {
    name: `accessRequests/${id}`,
    state,
    createTime: timestampFromDate(new Date(Date.UTC(2026, 0, 1, 0, minute))),
    etag: `${id}-${state}`,
  });
}

describe("mergeRow", () => {
  const rows = [req("a", 1), req("b", 2), req("c", 3)];

  it("removes a request decided elsewhere", () => {
    const out = mergeRow({ rows, nextPageToken: "" }, req("b", 2, AccessRequestState.APPROVED), DEFAULT_QUEUE_FILTER);
    expect(out.map((r) => r.name)).toEqual(["accessRequests/a", "accessRequests/c"]);
  });

  it("replaces a request still in the queue (new etag)", () => {
    const updated = create(AccessRequestSchema, { ...req("b", 2), etag: "new" });
    const out = mergeRow({ rows, nextPageToken: "" }, updated, DEFAULT_QUEUE_FILTER);
    expect(out[1].etag).toBe("new");
    expect(out).toHaveLength(3);
  });

  it("adds a new submission once, in order", () => {
    const view = { rows, nextPageToken: "" };
    const once = mergeRow(view, req("d", 4), DEFAULT_QUEUE_FILTER);
    expect(once.map((r) => r.name.slice(-1))).toEqual(["a", "b", "c", "d"]);
    const twice = mergeRow({ rows: once, nextPageToken: "" }, req("d", 4), DEFAULT_QUEUE_FILTER);
    expect(twice).toHaveLength(4);
  });

  it("puts a new submission first when newest first", () => {
    const desc = [req("c", 3), req("b", 2)];
    const out = mergeRow({ rows: desc, nextPageToken: "t" }, req("d", 4), { ...DEFAULT_QUEUE_FILTER, order: "desc" });
    expect(out.map((r) => r.name.slice(-1))).toEqual(["d", "c", "b"]);
  });

  it("leaves a new submission for the next pages when oldest first and more pages exist", () => {
    const out = mergeRow({ rows, nextPageToken: "more" }, req("d", 4), DEFAULT_QUEUE_FILTER);
    expect(out).toBe(rows);
  });

  it("ignores an unrelated request that does not match", () => {
    const out = mergeRow({ rows, nextPageToken: "" }, req("z", 9, AccessRequestState.REJECTED), DEFAULT_QUEUE_FILTER);
    expect(out).toBe(rows);
  });
});

describe("appendPage", () => {
  it("skips rows already shown", () => {
    const out = appendPage([req("a", 1), req("d", 4)], [req("b", 2), req("d", 4)]);
    expect(out.map((r) => r.name.slice(-1))).toEqual(["a", "d", "b"]);
  });
});
