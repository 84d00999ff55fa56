// Figures of the Stats screen derived from GetStats.
import type { GetStatsResponse } from "@client/gen/sesame/v1/access_request_pb";

/** Share of the window's decisions made automatically (rule or expiry); 0 when none. */
export function automaticShare(s: Pick<GetStatsResponse, "decidedCount" | "automaticDecidedCount">): number {
  const decided = Number(s.decidedCount);
  return decided > 0 ? Number(s.automaticDecidedCount) / decided : 0;
}

/** Bar lengths in percent of the largest value (0..100), for the charts. */
export function barWidths(values: readonly number[]): number[] {
  const max = Math.max(0, ...values);
  return values.map((v) => (max > 0 ? (v / max) * 100 : 0));
}
