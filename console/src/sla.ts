// The review-SLA badge of a pending request: its age against the server's
// review SLA. The server reminds the administrators at half of the SLA and
// escalates at all of it; the badge follows the same thresholds.

export type SlaLevel = "ok" | "due" | "overdue";

export interface SlaBadge {
  level: SlaLevel;
  /** Age of the request in milliseconds. */
  ageMs: number;
  /** Age as a fraction of the SLA (0.5 = half). */
  ratio: number;
  /** The server sent the half-SLA reminder for this request. */
  reminded: boolean;
  /** The server escalated this request. */
  escalated: boolean;
}

/** What the server is known to have done about a request's SLA. */
export interface SlaFlags {
  reminded?: boolean;
  escalated?: boolean;
}

/**
 * The SLA badge of a request created at `createMs`, seen at `nowMs`, with a
 * review SLA of `slaMs`: `due` from half of it, `overdue` from all of it.
 * Without a known SLA (0) every request is `ok`.
 */
export function slaBadge(createMs: number, nowMs: number, slaMs: number, flags: SlaFlags = {}): SlaBadge {
  const ageMs = Math.max(0, nowMs - createMs);
  const ratio = slaMs > 0 ? ageMs / slaMs : 0;
  let level: SlaLevel = "ok";
  if (ratio >= 1 || flags.escalated) level = "overdue";
  else if (ratio >= 0.5 || flags.reminded) level = "due";
  return { level, ageMs, ratio, reminded: !!flags.reminded, escalated: !!flags.escalated };
}
