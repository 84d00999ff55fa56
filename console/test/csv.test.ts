import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccessRequestState } from "@client/gen/sesame/v1/access_request_pb";
import { EventSchema, EventType } from "@client/gen/sesame/v1/event_pb";
import { csvCell, eventsToCsv } from "../src/csv";

describe("csv", () => {
  it("quotes cells with commas, quotes and line breaks", () => {
    expect(csvCell("plain")).toBe("plain");
    expect(csvCell('say "hi", ok')).toBe('"say ""hi"", ok"');
    expect(csvCell("a\nb")).toBe('"a\nb"');
    expect(csvCell(12n)).toBe("12");
    expect(csvCell(true)).toBe("true");
  });

  it("neutralises spreadsheet formulas", () => {
    expect(csvCell("=HYPERLINK(1)")).toBe("'=HYPERLINK(1)");
    expect(csvCell("+1")).toBe("'+1");
    expect(csvCell("@x")).toBe("'@x");
  });

  it("exports events with a header and CRLF lines", () => {
    const e = create(EventSchema, {
      sequence: 7n,
      cursor: "c7",
      type: EventType.REQUEST_REJECTED,
      occurTime: timestampFromDate(new Date("2026-01-02T03:04:05Z")),
      actor: "alice",
      accessRequest: "accessRequests/1",
      state: AccessRequestState.REJECTED,
      reason: "no, thanks",
      automatic: false,
      hash: "ab",
      ruleId: "",
    });
    const csv = eventsToCsv([e]);
    expect(csv).toBe(
      "sequence,occur_time,type,actor,access_request,state,reason,automatic,rule_id,hash\r\n" +
        '7,2026-01-02T03:04:05.000Z,request_rejected,alice,accessRequests/1,rejected,"no, thanks",false,,ab\r\n',
    );
  });
});
