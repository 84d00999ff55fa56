import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { EventSchema, EventType } from "@client/gen/sesame/v1/event_pb";
import { aggregateWindowEvents, automaticShare, barWidths } from "../src/stats";

describe("stats", () => {
  it("counts decisions, automatic ones and email outcomes", () => {
    const ev = (type: EventType, automatic = false) => create(EventSchema, { type, automatic });
    const c = aggregateWindowEvents([
      ev(EventType.REQUEST_APPROVED, true),
      ev(EventType.REQUEST_APPROVED),
      ev(EventType.REQUEST_REJECTED),
      ev(EventType.REQUEST_EXPIRED, true),
      ev(EventType.REQUEST_SUBMITTED),
      ev(EventType.EMAIL_SENT),
      ev(EventType.EMAIL_SENT),
      ev(EventType.EMAIL_FAILED),
      ev(EventType.EMAIL_DEAD),
    ]);
    expect(c).toEqual({ decisions: 4, automaticDecisions: 2, emailsSent: 2, emailsFailed: 1, emailsDead: 1 });
    expect(automaticShare(c)).toBe(0.5);
    expect(automaticShare(aggregateWindowEvents([]))).toBe(0);
  });

  it("scales bars to the largest value", () => {
    expect(barWidths([1, 2, 4])).toEqual([25, 50, 100]);
    expect(barWidths([0, 0])).toEqual([0, 0]);
  });
});
