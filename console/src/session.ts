// Who is signed in, as GetCaller said; shared with every screen.
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import { CallerRole } from "@client/gen/sesame/v1/caller_pb";

export interface Session {
  name: string;
  role: CallerRole;
  /** The server's review SLA in milliseconds (0 when unknown). */
  slaMs: number;
}

export const SessionContext = createContext<Session>({ name: "", role: CallerRole.UNSPECIFIED, slaMs: 0 });

export function useSession(): Session {
  return useContext(SessionContext);
}

export function isAdmin(s: Session): boolean {
  return s.role === CallerRole.ADMIN;
}

/** Roles the console is for. */
export function consoleRole(role: CallerRole): boolean {
  return role === CallerRole.ADMIN || role === CallerRole.AUDITOR;
}
