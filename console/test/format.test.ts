import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccessRequestState } from "@client/gen/sesame/v1/access_request_pb";
import { CallerRole } from "@client/gen/sesame/v1/caller_pb";
import { durationMs, formatDuration, formatPercent, formatTime, roleLabel, shortName, stateLabel, timestampMs } from "../src/format";
import { setLang } from "../src/i18n";

describe("format", () => {
  it("formats durations in at most two units", () => {
    expect(formatDuration(45_000, "en")).toBe("45 s");
    expect(formatDuration(125_000, "en")).toBe("2 min 5 s");
    expect(formatDuration(3_600_000, "en")).toBe("1 h");
    expect(formatDuration(2 * 3_600_000 + 5 * 60_000, "en")).toBe("2 h 5 min");
    expect(formatDuration(3 * 86_400_000 + 4 * 3_600_000 + 59_000, "en")).toBe("3 d 4 h");
    expect(formatDuration(86_400_000, "fr")).toBe("1 j");
    expect(formatDuration(-60_000, "en")).toBe("-1 min");
  });

  it("reads protobuf durations and timestamps", () => {
    expect(durationMs(create(DurationSchema, { seconds: 86400n, nanos: 500_000_000 }))).toBe(86_400_500);
    expect(durationMs(undefined)).toBe(0);
    const d = new Date("2026-01-02T03:04:05.678Z");
    expect(timestampMs(timestampFromDate(d))).toBe(d.getTime());
    expect(timestampMs(undefined)).toBeUndefined();
  });

  it("formats times in the given zone and language", () => {
    const d = new Date("2026-03-04T05:06:00Z");
    expect(formatTime(d, "en", "UTC")).toContain("2026");
    expect(formatTime(d, "en", "UTC")).toContain("05:06");
    expect(formatTime(d, "fr", "UTC")).toContain("mars");
    expect(formatTime(undefined)).toBe("");
  });

  it("formats percentages per language", () => {
    expect(formatPercent(0.125, "en")).toBe("12.5%");
    expect(formatPercent(0.125, "fr")).toBe("12,5 %");
    expect(formatPercent(1, "en")).toBe("100%");
  });

  it("labels enums in the current language", () => {
    setLang("en");
    expect(stateLabel(AccessRequestState.PENDING)).toBe("Pending");
    expect(roleLabel(CallerRole.AUDITOR)).toBe("auditor");
    setLang("fr");
    expect(stateLabel(AccessRequestState.PENDING)).toBe("En attente");
    setLang("en");
    expect(shortName("accessRequests/abc")).toBe("abc");
  });
});
