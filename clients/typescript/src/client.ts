// A thin wrapper over the generated Sesame service descriptors: one HTTP/2
// gRPC connection, the API key on every call, a default deadline per unary
// call, an optional deadline per attempt, retry of UNAVAILABLE (AIP-194) and,
// for a submit with a request id, of an attempt's DEADLINE_EXCEEDED, and a
// resumable WatchEvents iterator.

import type { SecureClientSessionOptions } from "node:http2";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AccessRequestService } from "./gen/sesame/v1/access_request_pb.js";
import { EmailService } from "./gen/sesame/v1/email_pb.js";
import {
  EventService,
  WatchEventsRequestSchema,
  type Event,
  type WatchEventsRequest,
  type WatchEventsResponse,
} from "./gen/sesame/v1/event_pb.js";
import { errorInfo } from "./errors.js";
import { randomUUID } from "node:crypto";

/** Default deadline of a unary call, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** TLS settings for an `https://` base URL (passed to node:http2 connect()). */
export interface SesameTlsOptions {
  /** PEM CA certificate(s) to trust instead of the system roots (e.g. a private CA). */
  ca?: string | Buffer | Array<string | Buffer>;
  /** PEM client certificate, for mutual TLS. */
  cert?: string | Buffer;
  /** PEM private key of `cert`. */
  key?: string | Buffer;
  /** Server name to verify (SNI), when it differs from the base URL host. */
  servername?: string;
  /** Any other option of node:http2 connect() (e.g. `rejectUnauthorized`). */
  nodeOptions?: SecureClientSessionOptions;
}

/** Exponential backoff with jitter, shared by unary retry and watch reconnection. */
export interface BackoffOptions {
  /** Delay before the first retry, in milliseconds. */
  initialBackoffMs?: number;
  /** Upper bound of one delay, in milliseconds. */
  maxBackoffMs?: number;
  /** Growth factor of the delay per attempt. */
  multiplier?: number;
  /** Random spread of each delay, as a fraction (0.2 = +-20 %). */
  jitter?: number;
}

/**
 * Retry policy of unary calls: UNAVAILABLE is retried (AIP-194), and so is an
 * attempt's DEADLINE_EXCEEDED for a SubmitAccessRequest with a `requestId`.
 */
export interface RetryOptions extends BackoffOptions {
  /** Attempts in all, the first one included (default 5). 1 disables retry. */
  maxAttempts?: number;
  /**
   * Deadline of each attempt in milliseconds: an attempt gets this or what is
   * left of the call's deadline, whichever is shorter. Unset (the default):
   * one attempt may use all that is left. Set through
   * `SesameClientOptions.attemptTimeoutMs`.
   */
  attemptTimeoutMs?: number;
}

export interface SesameClientOptions {
  /** `http://host:port` (plaintext HTTP/2) or `https://host:port` (TLS). */
  baseUrl: string;
  /** A Sesame API key (`sesame_...`), sent as `authorization: Bearer <key>`. */
  apiKey: string;
  /** TLS settings; only valid with an `https://` base URL. */
  tls?: SesameTlsOptions;
  /**
   * Default deadline of each unary call in milliseconds (default 10 s); a
   * call's own `{ timeoutMs }` overrides it, 0 means no deadline. It bounds
   * the call as a whole, retries included. Watch streams have no deadline.
   */
  timeoutMs?: number;
  /** Unary retry policy, or false to never retry. */
  retry?: RetryOptions | false;
  /**
   * Deadline of each attempt of a unary call in milliseconds (default: none,
   * one attempt may use all of `timeoutMs` that is left): an attempt gets
   * this or the time left, whichever is shorter. A SubmitAccessRequest with
   * a `requestId` (the client fills one in) whose attempt times out is tried
   * again while the deadline has time left: the server returns the request
   * it may have committed, never a second one. No other call is retried on
   * DEADLINE_EXCEEDED.
   */
  attemptTimeoutMs?: number;
  /** HTTP/2 PING interval in milliseconds to detect dead connections (default: off). */
  keepaliveMs?: number;
  /** More interceptors, run inside the authentication and retry ones. */
  interceptors?: Interceptor[];
}

/** WatchEvents request fields: `after`, `eventTypes`, `accessRequest`. */
export type WatchRequest = MessageInitShape<typeof WatchEventsRequestSchema>;

/** What a watch reports before it reconnects. */
export interface ReconnectInfo {
  /** Consecutive failed attempts so far (1 for the first reconnection). */
  attempt: number;
  /** Delay before the next attempt, in milliseconds. */
  delayMs: number;
  /** The error that ended the previous stream or connection attempt. */
  error: ConnectError;
  /** The cursor the watch will resume after ("" = from the head of the log). */
  cursor: string;
}

export interface WatchOptions extends BackoffOptions {
  /** Aborting it ends the iteration (the for-await loop finishes normally). */
  signal?: AbortSignal;
  /**
   * Consecutive failed attempts (stream errors or connection failures with no
   * `ready` in between) tolerated before the watch throws (default 20).
   */
  maxReconnectAttempts?: number;
  /** Called before each reconnection. */
  onReconnect?: (info: ReconnectInfo) => void;
  /**
   * Called each time a stream is live (the first one and each reconnection),
   * with the cursor it resumes after.
   */
  onReady?: (cursor: string) => void;
}

export interface SesameClient {
  /** sesame.v1.AccessRequestService: submit, get, list, approve, reject, cancel. */
  readonly accessRequests: Client<typeof AccessRequestService>;
  /** sesame.v1.EventService: the raw WatchEvents stream, ListEvents, VerifyAuditChain. */
  readonly events: Client<typeof EventService>;
  /** sesame.v1.EmailService: ListEmails, RetryEmail, PreviewEmail. */
  readonly emails: Client<typeof EmailService>;
  /** The underlying gRPC transport, to create clients of other services. */
  readonly transport: Transport;
  /**
   * A resumable watch of the event log: an async iterator of events that
   * reconnects after the last cursor it saw when the stream breaks.
   */
  watch(request?: WatchRequest, options?: WatchOptions): EventWatch;
  /** Closes the HTTP/2 connection; calls in flight fail. */
  close(): void;
}

/** Creates a client of the three Sesame services over one HTTP/2 connection. */
export function createSesameClient(options: SesameClientOptions): SesameClient {
  const url = new URL(options.baseUrl);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`sesame: baseUrl must be http:// or https://, got ${options.baseUrl}`);
  }
  if (options.tls && url.protocol !== "https:") {
    throw new Error("sesame: the tls option needs an https:// baseUrl");
  }
  if (!options.apiKey) {
    throw new Error("sesame: apiKey is required");
  }
  let nodeOptions: SecureClientSessionOptions | undefined;
  if (url.protocol === "https:" && options.tls) {
    const { nodeOptions: extra, ...tls } = options.tls;
    nodeOptions = { ...extra };
    for (const [key, value] of Object.entries(tls)) {
      if (value !== undefined) {
        (nodeOptions as Record<string, unknown>)[key] = value;
      }
    }
  }
  const sessionManager = new Http2SessionManager(
    url,
    options.keepaliveMs ? { pingIntervalMs: options.keepaliveMs } : {},
    nodeOptions,
  );
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const interceptors: Interceptor[] = [authInterceptor(options.apiKey)];
  if (options.attemptTimeoutMs !== undefined && !(options.attemptTimeoutMs > 0)) {
    throw new Error("sesame: attemptTimeoutMs must be positive");
  }
  if (options.retry !== false) {
    interceptors.push(retryInterceptor({ attemptTimeoutMs: options.attemptTimeoutMs, ...options.retry }));
  } else if (options.attemptTimeoutMs !== undefined) {
    interceptors.push(retryInterceptor({ maxAttempts: 1, attemptTimeoutMs: options.attemptTimeoutMs }));
  }
  interceptors.push(...(options.interceptors ?? []));
  const transport = createGrpcTransport({
    baseUrl: options.baseUrl,
    sessionManager,
    defaultTimeoutMs: timeoutMs > 0 ? timeoutMs : undefined,
    interceptors,
  });
  const events = createClient(EventService, transport);
  return {
    accessRequests: createClient(AccessRequestService, transport),
    events,
    emails: createClient(EmailService, transport),
    transport,
    watch: (request = {}, watchOptions = {}) => new EventWatch(events, request, watchOptions),
    close: () => sessionManager.abort(),
  };
}

/** Adds `authorization: Bearer <key>` to every call. */
export function authInterceptor(apiKey: string): Interceptor {
  const value = `Bearer ${apiKey}`;
  return (next) => async (req) => {
    req.header.set("authorization", value);
    return await next(req);
  };
}

/**
 * Retries unary calls that fail with UNAVAILABLE, with exponential backoff
 * and jitter, within the call's deadline; any other code is returned at once,
 * except DEADLINE_EXCEEDED of one attempt (`attemptTimeoutMs`) of a
 * SubmitAccessRequest carrying a `requestId`: the id returns the request the
 * server may have committed, so that attempt is retried the same way.
 * A SubmitAccessRequest without `requestId` gets a random one first, so a
 * retry cannot create the request twice.
 * Streaming calls pass through (EventWatch resumes WatchEvents itself).
 */
export function retryInterceptor(options: RetryOptions = {}): Interceptor {
  const maxAttempts = Math.max(1, options.maxAttempts ?? 5);
  const attemptTimeoutMs = options.attemptTimeoutMs;
  return (next) => async (req) => {
    if (req.stream) {
      return await next(req);
    }
    if (req.method.name === "SubmitAccessRequest" && maxAttempts > 1) {
      // A retried submit must not create a second request: give it an
      // idempotency key (AIP-155) when the caller did not.
      const message = req.message as { requestId?: string };
      if (!message.requestId) {
        message.requestId = randomUUID();
      }
    }
    const deadlineRetryable =
      req.method.name === "SubmitAccessRequest" && !!(req.message as { requestId?: string }).requestId;
    const timeout = parseGrpcTimeout(req.header.get("grpc-timeout"));
    const deadline = timeout === undefined ? undefined : Date.now() + timeout;
    for (let attempt = 1; ; attempt++) {
      try {
        if (attemptTimeoutMs === undefined) {
          return await next(req);
        }
        return await attemptWithin(next, req, attemptTimeoutMs, deadline);
      } catch (err) {
        if (
          !(err instanceof ConnectError) ||
          !(err.code === Code.Unavailable || (err.code === Code.DeadlineExceeded && deadlineRetryable)) ||
          attempt >= maxAttempts ||
          req.signal.aborted
        ) {
          throw err;
        }
        const delay = backoffDelay(options, attempt);
        if (deadline !== undefined && Date.now() + delay >= deadline) {
          throw err;
        }
        await sleep(delay, req.signal);
        if (deadline !== undefined) {
          // Tell the server what is left of the deadline, not the original one.
          req.header.set("grpc-timeout", `${Math.max(1, deadline - Date.now())}m`);
        }
      }
    }
  };
}

type UnaryNext = Parameters<Interceptor>[0];
type UnaryReq = Parameters<UnaryNext>[0];

/**
 * One attempt under its own deadline: `attemptTimeoutMs` or what is left of
 * `deadline`, whichever is shorter, sent as `grpc-timeout` and enforced by
 * aborting the attempt with DEADLINE_EXCEEDED (the call's own signal still
 * aborts it too).
 */
async function attemptWithin(
  next: UnaryNext,
  req: UnaryReq,
  attemptTimeoutMs: number,
  deadline: number | undefined,
): ReturnType<UnaryNext> {
  const left = deadline === undefined ? attemptTimeoutMs : Math.max(1, deadline - Date.now());
  const attemptMs = Math.min(attemptTimeoutMs, left);
  const header = new Headers(req.header);
  header.set("grpc-timeout", `${attemptMs}m`);
  const controller = new AbortController();
  const onAbort = () => controller.abort(req.signal.reason);
  if (req.signal.aborted) {
    onAbort();
  } else {
    req.signal.addEventListener("abort", onAbort, { once: true });
  }
  const timer = setTimeout(
    () =>
      controller.abort(
        new ConnectError(`no answer within the attempt deadline of ${attemptMs} ms`, Code.DeadlineExceeded),
      ),
    attemptMs,
  );
  try {
    return await next({ ...req, header, signal: controller.signal });
  } finally {
    clearTimeout(timer);
    req.signal.removeEventListener("abort", onAbort);
  }
}

const grpcTimeoutUnits: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1_000,
  m: 1,
  u: 0.001,
  n: 0.000001,
};

function parseGrpcTimeout(value: string | null): number | undefined {
  const match = value ? /^(\d{1,8})([HMSmun])$/.exec(value) : null;
  if (!match) {
    return undefined;
  }
  return Number(match[1]) * grpcTimeoutUnits[match[2]!]!;
}

/** The delay before retry number `attempt` (1-based), in milliseconds. */
export function backoffDelay(options: BackoffOptions, attempt: number): number {
  const initial = options.initialBackoffMs ?? 100;
  const max = options.maxBackoffMs ?? 5_000;
  const multiplier = options.multiplier ?? 2;
  const jitter = options.jitter ?? 0.2;
  const base = Math.min(max, initial * multiplier ** (attempt - 1));
  const spread = base * jitter * (2 * Math.random() - 1);
  return Math.max(0, Math.round(Math.min(max, base + spread)));
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Whether a watch may resume after this error: UNAVAILABLE (server shutting
 * down, database or connection unavailable), RESOURCE_EXHAUSTED with reason
 * `WATCHER_TOO_SLOW`, and transport failures that carry no ErrorInfo (reset
 * or lost connection). Every other server error (bad cursor, expired cursor,
 * revoked key, ...) is final.
 */
export function isResumableWatchError(err: ConnectError): boolean {
  if (err.code === Code.Unavailable) {
    return true;
  }
  const info = errorInfo(err);
  if (info) {
    return err.code === Code.ResourceExhausted && info.reason === "WATCHER_TOO_SLOW";
  }
  return err.code === Code.Aborted || err.code === Code.Internal || err.code === Code.Unknown;
}

const doneResult: IteratorReturnResult<undefined> = { done: true, value: undefined };

/**
 * A resumable WatchEvents stream. Iterate it with `for await`; it yields each
 * event once, remembers the cursor of the last one, and when the stream
 * breaks (server restart, lost connection, UNAVAILABLE) it reconnects with
 * `after` = that cursor, with bounded exponential backoff, so nothing is
 * missed or repeated. Other errors, or too many consecutive failures, are
 * thrown from the loop. Breaking out of the loop or aborting the signal
 * closes the stream.
 */
export class EventWatch implements AsyncIterableIterator<Event> {
  readonly #client: Client<typeof EventService>;
  readonly #request: WatchEventsRequest;
  readonly #options: WatchOptions;
  readonly #signal: AbortSignal | undefined;
  #cursor: string;
  #lastSequence = 0n;
  #stream: AsyncIterator<WatchEventsResponse> | undefined;
  #streamAbort: AbortController | undefined;
  #connecting: Promise<void> | undefined;
  #firstReady: Promise<string> | undefined;
  #failures = 0;
  #reconnects = 0;
  #finished = false;

  constructor(client: Client<typeof EventService>, request: WatchRequest, options: WatchOptions) {
    this.#client = client;
    this.#request = create(WatchEventsRequestSchema, request);
    this.#options = options;
    this.#signal = options.signal;
    this.#cursor = this.#request.after;
    if (this.#signal?.aborted) {
      this.#finished = true;
    }
    this.#signal?.addEventListener("abort", () => this.#finish(), { once: true });
  }

  /**
   * The cursor of the last event received (or of the latest `ready` or
   * `heartbeat`): a new watch with `after` set to it continues from there.
   */
  get cursor(): string {
    return this.#cursor;
  }

  /** How many reconnection attempts the watch made so far. */
  get reconnects(): number {
    return this.#reconnects;
  }

  /**
   * Opens the stream if it is not open yet and resolves with the cursor of
   * its first `ready` message: from then on no event is missed. Useful to
   * make sure the watch is live before causing events.
   */
  ready(): Promise<string> {
    this.#firstReady ??= this.#ensureStream().then(() => this.#cursor);
    return this.#firstReady;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Event, undefined>> {
    for (;;) {
      if (this.#finished) {
        return doneResult;
      }
      let stream: AsyncIterator<WatchEventsResponse>;
      try {
        stream = await this.#ensureStream();
      } catch (err) {
        if (this.#finished) {
          return doneResult;
        }
        throw err;
      }
      try {
        const result = await stream.next();
        if (result.done) {
          throw new ConnectError("WatchEvents stream ended by the server", Code.Unavailable);
        }
        const kind = result.value.kind;
        if (kind.case === "event") {
          const event = kind.value;
          if (event.sequence <= this.#lastSequence) {
            continue; // never hand out an event twice
          }
          this.#lastSequence = event.sequence;
          this.#cursor = event.cursor;
          return { done: false, value: event };
        }
        if (kind.case === "heartbeat" && kind.value.cursor) {
          this.#cursor = kind.value.cursor;
        }
      } catch (err) {
        if (this.#finished) {
          return doneResult;
        }
        try {
          await this.#failed(err);
        } catch (final) {
          if (this.#finished) {
            return doneResult;
          }
          throw final;
        }
      }
    }
  }

  /** Closes the stream; the iteration ends. */
  async return(): Promise<IteratorResult<Event, undefined>> {
    this.#finish();
    return doneResult;
  }

  #finish(): void {
    this.#finished = true;
    this.#closeStream();
  }

  #closeStream(): void {
    this.#streamAbort?.abort();
    this.#streamAbort = undefined;
    this.#stream = undefined;
  }

  async #ensureStream(): Promise<AsyncIterator<WatchEventsResponse>> {
    while (!this.#stream) {
      if (this.#finished) {
        throw new ConnectError("watch closed", Code.Canceled);
      }
      this.#connecting ??= this.#connect().finally(() => {
        this.#connecting = undefined;
      });
      await this.#connecting;
    }
    return this.#stream;
  }

  /** Opens a stream and reads its `ready`, retrying resumable failures. */
  async #connect(): Promise<void> {
    for (;;) {
      if (this.#finished) {
        throw new ConnectError("watch closed", Code.Canceled);
      }
      const abort = new AbortController();
      try {
        const request = create(WatchEventsRequestSchema, {
          after: this.#cursor,
          eventTypes: this.#request.eventTypes,
          accessRequest: this.#request.accessRequest,
        });
        // timeoutMs 0: no deadline for the long-lived stream.
        const call = this.#client.watchEvents(request, { signal: abort.signal, timeoutMs: 0 });
        const stream = call[Symbol.asyncIterator]();
        this.#streamAbort = abort;
        const first = await stream.next();
        if (first.done) {
          throw new ConnectError("WatchEvents stream ended before ready", Code.Unavailable);
        }
        if (first.value.kind.case !== "ready") {
          throw new ConnectError(
            `WatchEvents protocol error: first message is ${first.value.kind.case}, not ready`,
            Code.Internal,
          );
        }
        if (first.value.kind.value.cursor) {
          this.#cursor = first.value.kind.value.cursor;
        }
        this.#stream = stream;
        this.#failures = 0;
        this.#options.onReady?.(this.#cursor);
        return;
      } catch (err) {
        abort.abort();
        if (this.#streamAbort === abort) {
          this.#streamAbort = undefined;
        }
        await this.#failed(err);
      }
    }
  }

  /** Throws when `err` is final; else reports and waits before the next attempt. */
  async #failed(err: unknown): Promise<void> {
    this.#closeStream();
    const error = ConnectError.from(err);
    this.#failures++;
    const max = this.#options.maxReconnectAttempts ?? 20;
    if (this.#finished || !isResumableWatchError(error) || this.#failures > max) {
      throw error;
    }
    const delayMs = backoffDelay(this.#options, this.#failures);
    this.#reconnects++;
    this.#options.onReconnect?.({ attempt: this.#failures, delayMs, error, cursor: this.#cursor });
    await sleep(delayMs, this.#signal);
  }
}
