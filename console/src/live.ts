// One WatchEvents stream for the whole console while signed in: screens
// subscribe to its events, its connection state and its resync signal.
import { useEffect, useRef, useState } from "preact/hooks";
import type { Event } from "@client/gen/sesame/v1/event_pb";
import { api } from "./api";
import { watchLoop, type ConnectionState } from "./watch";

const eventListeners = new Set<(e: Event) => void>();
const stateListeners = new Set<(s: ConnectionState) => void>();
const resyncListeners = new Set<() => void>();
let state: ConnectionState = "connecting";

function setState(s: ConnectionState) {
  state = s;
  for (const l of stateListeners) l(s);
}

/** Starts the stream; it runs until `signal` aborts. */
export function startLive(signal: AbortSignal, onUnauthenticated: () => void): void {
  void watchLoop({
    open: (after, sig) => api.events.watchEvents({ after }, { signal: sig }),
    onEvent: (e) => {
      for (const l of eventListeners) l(e);
    },
    onState: setState,
    onResync: () => {
      for (const l of resyncListeners) l();
    },
    onUnauthenticated,
    signal,
  });
}

export function useConnectionState(): ConnectionState {
  const [s, set] = useState(state);
  useEffect(() => {
    stateListeners.add(set);
    set(state);
    return () => {
      stateListeners.delete(set);
    };
  }, []);
  return s;
}

/** Calls `onEvent` for every live event while the component is mounted. */
export function useLiveEvents(onEvent: (e: Event) => void, onResync?: () => void): void {
  const ref = useRef({ onEvent, onResync });
  ref.current = { onEvent, onResync };
  useEffect(() => {
    const e = (ev: Event) => ref.current.onEvent(ev);
    const r = () => ref.current.onResync?.();
    eventListeners.add(e);
    resyncListeners.add(r);
    return () => {
      eventListeners.delete(e);
      resyncListeners.delete(r);
    };
  }, []);
}
