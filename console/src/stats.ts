// Figures GetStats does not give, counted from the event log over the
// stats window: the share of automatic decisions and the email outcomes.
import { EventType, type Event } from "@client/gen/sesame/v1/event_pb";

/** The event types counted by `aggregateWindowEvents`. */
export const WINDOW_EVENT_TYPES = [
  EventType.REQUEST_APPROVED,
  EventType.REQUEST_REJECTED,
  EventType.REQUEST_CANCELLED,
  EventType.REQUEST_EXPIRED,
  EventType.EMAIL_SENT,
  EventType.EMAIL_FAILED,
  EventType.EMAIL_DEAD,
];

export interface WindowCounts {
  decisions: number;
  automaticDecisions: number;
  emailsSent: number;
  emailsFailed: number;
  emailsDead: number;
}

export function aggregateWindowEvents(events: readonly Event[]): WindowCounts {
  const c: WindowCounts = { decisions: 0, automaticDecisions: 0, emailsSent: 0, emailsFailed: 0, emailsDead: 0 };
  for (const e of events) {
    switch (e.type) {
      case EventType.REQUEST_APPROVED:
      case EventType.REQUEST_REJECTED:
      case EventType.REQUEST_CANCELLED:
      case EventType.REQUEST_EXPIRED:
        c.decisions++;
        if (e.automatic) c.automaticDecisions++;
        break;
      case EventType.EMAIL_SENT:
        c.emailsSent++;
        break;
      case EventType.EMAIL_FAILED:
        c.emailsFailed++;
        break;
      case EventType.EMAIL_DEAD:
        c.emailsDead++;
        break;
      default:
        break;
    }
  }
  return c;
}

/** Share of automatic decisions, 0 when there was none. */
export function automaticShare(c: WindowCounts): number {
  return c.decisions > 0 ? c.automaticDecisions / c.decisions : 0;
}

/** Bar lengths in percent of the largest value (0..100), for the charts. */
export function barWidths(values: readonly number[]): number[] {
  const max = Math.max(0, ...values);
  return values.map((v) => (max > 0 ? (v / max) * 100 : 0));
}
