// The one API layer of the console: the generated service descriptors over a
// gRPC-Web transport to the page's own origin, with the API key of this tab
// (sessionStorage only) on every call.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AccessRequestService } from "@client/gen/sesame/v1/access_request_pb";
import { CallerService } from "@client/gen/sesame/v1/caller_pb";
import { EmailService } from "@client/gen/sesame/v1/email_pb";
import { EventService } from "@client/gen/sesame/v1/event_pb";
import { GatewayService } from "@client/gen/sesame/v1/gateway_pb";
import { PrivacyService } from "@client/gen/sesame/v1/privacy_pb";

const STORAGE_KEY = "sesame.apiKey";

function storage(): Storage | undefined {
  try {
    return globalThis.sessionStorage;
  } catch {
    return undefined;
  }
}

export function getApiKey(): string {
  return storage()?.getItem(STORAGE_KEY) ?? "";
}

export function setApiKey(key: string): void {
  storage()?.setItem(STORAGE_KEY, key);
}

export function clearApiKey(): void {
  storage()?.removeItem(STORAGE_KEY);
}

/** The `authorization: Bearer <key>` header on every call. */
export const authInterceptor: Interceptor = (next) => async (req) => {
  const key = getApiKey();
  if (key) req.header.set("authorization", `Bearer ${key}`);
  return next(req);
};

let onUnauthenticated: (() => void) | undefined;

/** Registers what to do when any call says the key is no longer accepted. */
export function setUnauthenticatedHandler(handler: (() => void) | undefined): void {
  onUnauthenticated = handler;
}

/** Sends the user back to sign-in when a call is UNAUTHENTICATED. */
const unauthenticatedInterceptor: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.Unauthenticated) onUnauthenticated?.();
    throw err;
  }
};

const transport = createGrpcWebTransport({
  baseUrl: globalThis.location?.origin ?? "http://localhost",
  useBinaryFormat: true,
  interceptors: [authInterceptor, unauthenticatedInterceptor],
});

export const api = {
  requests: createClient(AccessRequestService, transport),
  caller: createClient(CallerService, transport),
  emails: createClient(EmailService, transport),
  events: createClient(EventService, transport),
  gateway: createClient(GatewayService, transport),
  privacy: createClient(PrivacyService, transport),
};

/** Unary calls give up after this long. */
export const CALL_TIMEOUT_MS = 20_000;
export const callOptions = { timeoutMs: CALL_TIMEOUT_MS };

/** Offers `content` as a file download (a Blob and a temporary link). */
export function download(filename: string, content: string, type: string): void {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
