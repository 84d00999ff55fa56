// A resumable WatchEvents loop: it keeps the latest cursor the stream sent
// (ready, event or heartbeat), reconnects with backoff after a failure and
// resumes after that cursor, and never hands the same event twice.
import { Code } from "@connectrpc/connect";
import type { Event, WatchEventsResponse } from "@client/gen/sesame/v1/event_pb";
import { describeError } from "./errors";

export type ConnectionState = "connecting" | "live" | "reconnecting" | "offline";

export interface WatchOptions {
  /** Opens a stream resuming after `after` ("" = from now). */
  open: (after: string, signal: AbortSignal) => AsyncIterable<WatchEventsResponse>;
  onEvent: (event: Event) => void;
  onState: (state: ConnectionState) => void;
  /** The cursor expired: the caller must list the current state again. */
  onResync?: () => void;
  /** The key is no longer accepted. The loop stops. */
  onUnauthenticated?: () => void;
  signal: AbortSignal;
  /** Waits `ms` (replaceable in tests). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Failures in a row after which the state is `offline` rather than `reconnecting`. */
  offlineAfter?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The watch loop; resolves when `signal` aborts or the key is refused. */
export async function watchLoop(o: WatchOptions): Promise<void> {
  const sleep = o.sleep ?? defaultSleep;
  const offlineAfter = o.offlineAfter ?? 3;
  const initial = o.initialBackoffMs ?? 1000;
  const max = o.maxBackoffMs ?? 30_000;
  let cursor = "";
  let lastSequence = 0n;
  let failures = 0;
  o.onState("connecting");
  while (!o.signal.aborted) {
    try {
      for await (const msg of o.open(cursor, o.signal)) {
        switch (msg.kind.case) {
          case "ready":
            failures = 0;
            if (msg.kind.value.cursor) cursor = msg.kind.value.cursor;
            o.onState("live");
            break;
          case "event": {
            const event = msg.kind.value;
            if (event.cursor) cursor = event.cursor;
            if (event.sequence <= lastSequence) break;
            lastSequence = event.sequence;
            o.onEvent(event);
            break;
          }
          case "heartbeat":
            if (msg.kind.value.cursor) cursor = msg.kind.value.cursor;
            break;
          default:
            break;
        }
      }
      // The server ended the stream without an error: reconnect at once.
      if (o.signal.aborted) break;
      o.onState("reconnecting");
      continue;
    } catch (err) {
      if (o.signal.aborted) break;
      const ui = describeError(err);
      if (ui.code === Code.Canceled && o.signal.aborted) break;
      if (ui.unauthenticated) {
        o.onState("offline");
        o.onUnauthenticated?.();
        return;
      }
      if (ui.metadata.cursor) cursor = ui.metadata.cursor;
      if (ui.reason === "CURSOR_EXPIRED" || ui.reason === "CURSOR_INVALID") {
        cursor = "";
        o.onResync?.();
      }
      failures++;
      o.onState(failures >= offlineAfter ? "offline" : "reconnecting");
      const delay = Math.min(max, initial * 2 ** Math.min(failures - 1, 10));
      await sleep(delay, o.signal);
    }
  }
}
