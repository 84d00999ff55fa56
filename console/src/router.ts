// History routing: the server answers index.html for every unknown path, so
// `/accessRequests/{uuid}` or `/audit?actor=alice` can be bookmarked and shared.
import { useEffect, useState } from "preact/hooks";

type Listener = () => void;
const listeners = new Set<Listener>();

function notify() {
  for (const l of listeners) l();
}

if (typeof window !== "undefined") window.addEventListener("popstate", notify);

/** Goes to `to` (a path with an optional query string). */
export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (to === location.pathname + location.search) return;
  if (options.replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  notify();
}

export interface Route {
  path: string;
  search: URLSearchParams;
  /** The raw query string, for effect dependencies. */
  query: string;
}

function current(): Route {
  return { path: location.pathname, search: new URLSearchParams(location.search), query: location.search };
}

/** The current route; re-renders on navigation. */
export function useRoute(): Route {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const l = () => setRoute(current());
    listeners.add(l);
    return () => {
      listeners.delete(l);
    };
  }, []);
  return route;
}

/** A path with a query string (none when empty). */
export function withQuery(path: string, search: URLSearchParams): string {
  const q = search.toString();
  return q ? `${path}?${q}` : path;
}
