import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "@client/errors";
import { WatchEventsResponseSchema, type Event, type WatchEventsResponse } from "@client/gen/sesame/v1/event_pb";
import { watchLoop, type ConnectionState } from "../src/watch";

const ready = (cursor: string) => create(WatchEventsResponseSchema, { kind: { case: "ready", value: { cursor } } });
const event = (seq: number) =>
  create(WatchEventsResponseSchema, { kind: { case: "event", value: { sequence: BigInt(seq), cursor: `c${seq}` } } });
const heartbeat = (cursor: string) => create(WatchEventsResponseSchema, { kind: { case: "heartbeat", value: { cursor } } });

function failing(code: Code, reason?: string, metadata: Record<string, string> = {}) {
  return new ConnectError("x", code, undefined, reason ? [{ desc: ErrorInfoSchema, value: { reason, domain: "sesame.dev", metadata } }] : []);
}

/** Streams scripted per attempt: messages, then an optional error. */
function script(attempts: { messages: WatchEventsResponse[]; error?: Error }[], controller: AbortController) {
  const afters: string[] = [];
  let n = 0;
  const open = (after: string) => {
    afters.push(after);
    const attempt = attempts[n++];
    return (async function* () {
      if (!attempt) {
        controller.abort();
        return;
      }
      for (const m of attempt.messages) yield m;
      if (attempt.error) throw attempt.error;
    })();
  };
  return { open, afters };
}

describe("watchLoop", () => {
  it("resumes after the last cursor and hands each event once", async () => {
    const controller = new AbortController();
    const { open, afters } = script(
      [
        { messages: [ready("c0"), event(1), event(2)], error: failing(Code.Unavailable) },
        { messages: [ready("c2"), event(2), event(3), heartbeat("c3")], error: failing(Code.Unavailable, "SERVER_SHUTTING_DOWN", { cursor: "c3" }) },
        { messages: [ready("c3"), event(4)] },
      ],
      controller,
    );
    const events: Event[] = [];
    const states: ConnectionState[] = [];
    const delays: number[] = [];
    await watchLoop({
      open,
      onEvent: (e) => events.push(e),
      onState: (s) => states.push(s),
      signal: controller.signal,
      sleep: async (ms) => {
        delays.push(ms);
      },
    });
    expect(events.map((e) => Number(e.sequence))).toEqual([1, 2, 3, 4]);
    expect(afters).toEqual(["", "c2", "c3", "c4"]);
    expect(states).toEqual(["connecting", "live", "reconnecting", "live", "reconnecting", "live", "reconnecting"]);
    expect(delays).toEqual([1000, 1000]);
  });

  it("goes offline after repeated failures and backs off", async () => {
    const controller = new AbortController();
    const { open } = script(
      [
        { messages: [], error: failing(Code.Unavailable) },
        { messages: [], error: failing(Code.Unavailable) },
        { messages: [], error: failing(Code.Unavailable) },
      ],
      controller,
    );
    const states: ConnectionState[] = [];
    const delays: number[] = [];
    await watchLoop({
      open,
      onEvent: () => {},
      onState: (s) => states.push(s),
      signal: controller.signal,
      sleep: async (ms) => {
        delays.push(ms);
      },
    });
    expect(states.slice(0, 4)).toEqual(["connecting", "reconnecting", "reconnecting", "offline"]);
    expect(delays).toEqual([1000, 2000, 4000]);
  });

  it("asks for a resync and restarts from now when the cursor expired", async () => {
    const controller = new AbortController();
    const { open, afters } = script(
      [
        { messages: [ready("c5"), event(6)], error: failing(Code.OutOfRange, "CURSOR_EXPIRED") },
        { messages: [ready("c100")] },
      ],
      controller,
    );
    let resyncs = 0;
    await watchLoop({ open, onEvent: () => {}, onState: () => {}, onResync: () => resyncs++, signal: controller.signal, sleep: async () => {} });
    expect(resyncs).toBe(1);
    expect(afters.slice(0, 2)).toEqual(["", ""]);
  });

  it("stops when the key is refused", async () => {
    const controller = new AbortController();
    const { open } = script([{ messages: [], error: failing(Code.Unauthenticated, "API_KEY_INVALID") }], controller);
    let refused = false;
    await watchLoop({ open, onEvent: () => {}, onState: () => {}, onUnauthenticated: () => (refused = true), signal: controller.signal });
    expect(refused).toBe(true);
  });
});
