import { describe, expect, it } from "vitest";
import { slaBadge } from "../src/sla";

const HOUR = 3_600_000;
const SLA = 24 * HOUR;

describe("slaBadge", () => {
  it("is ok before half the SLA", () => {
    expect(slaBadge(0, 11 * HOUR, SLA).level).toBe("ok");
  });
  it("is due soon from half the SLA", () => {
    expect(slaBadge(0, 12 * HOUR, SLA).level).toBe("due");
    expect(slaBadge(0, 23 * HOUR, SLA).level).toBe("due");
  });
  it("is overdue from the SLA", () => {
    const b = slaBadge(0, 24 * HOUR, SLA);
    expect(b.level).toBe("overdue");
    expect(b.ratio).toBe(1);
  });
  it("follows the server's reminder and escalation even when clocks differ", () => {
    expect(slaBadge(0, HOUR, SLA, { reminded: true }).level).toBe("due");
    const b = slaBadge(0, HOUR, SLA, { escalated: true });
    expect(b.level).toBe("overdue");
    expect(b.escalated).toBe(true);
  });
  it("never has a negative age and is ok without an SLA", () => {
    expect(slaBadge(10, 0, SLA).ageMs).toBe(0);
    expect(slaBadge(0, 1000 * HOUR, 0).level).toBe("ok");
  });
});
