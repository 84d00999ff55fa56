import { describe, expect, it } from "vitest";
import { automaticShare, barWidths } from "../src/stats";

describe("stats", () => {
  it("computes the share of automatic decisions", () => {
    expect(automaticShare({ decidedCount: 8n, automaticDecidedCount: 2n })).toBe(0.25);
    expect(automaticShare({ decidedCount: 0n, automaticDecidedCount: 0n })).toBe(0);
  });

  it("scales bars to the largest value", () => {
    expect(barWidths([1, 2, 4])).toEqual([25, 50, 100]);
    expect(barWidths([0, 0])).toEqual([0, 0]);
  });
});
