// The resumable watch and the unary retry, across real server restarts.

import assert from "node:assert/strict";
import { after, before } from "node:test";
import {
  AccessRequestState,
  Code,
  ConnectError,
  createSesameClient,
  errorReason,
  EventType,
  type Event,
  type EventWatch,
  type Interceptor,
  type SesameClient,
} from "@sesame/client";
import { SesameServer, serverTest, sleep, submission } from "./server.js";

let server: SesameServer | undefined;
let sesame: SesameClient;
let attempts: string[] = [];

const countAttempts: Interceptor = (next) => async (req) => {
  attempts.push(req.method.name);
  return await next(req);
};

before(async () => {
  server = await SesameServer.start();
  sesame = createSesameClient({
    baseUrl: server.url,
    apiKey: server.adminKey,
    // Generous enough to outlast a restart of the server (~1 s).
    retry: { maxAttempts: 12, initialBackoffMs: 100, maxBackoffMs: 1_000 },
    interceptors: [countAttempts],
  });
});

after(async () => {
  sesame?.close();
  await server?.close();
});

const current = () => server;

/** Consumes a watch in the background, collecting its events. */
class Collector {
  readonly events: Event[] = [];
  error: unknown;
  readonly #done: Promise<void>;
  #wake: (() => void) | undefined;

  constructor(watch: AsyncIterable<Event>) {
    this.#done = (async () => {
      try {
        for await (const event of watch) {
          this.events.push(event);
          this.#wake?.();
        }
      } catch (err) {
        this.error = err;
      } finally {
        this.#wake?.();
      }
    })();
  }

  /** Waits until an event matches, failing after `timeoutMs`. */
  async waitFor(predicate: (e: Event) => boolean, what: string, timeoutMs = 30_000): Promise<Event> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(predicate);
      if (found) {
        return found;
      }
      if (this.error) {
        throw this.error;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no ${what} event within ${timeoutMs} ms; got ${describe(this.events)}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  finished(): Promise<void> {
    return this.#done;
  }
}

function describe(events: Event[]): string {
  return JSON.stringify(events.map((e) => [Number(e.sequence), EventType[e.type], e.accessRequest]));
}

const isEvent = (type: EventType, name: string) => (e: Event) => e.type === type && e.accessRequest === name;

serverTest("watch yields the submitted and approved events", current, async () => {
  const controller = new AbortController();
  const watch = sesame.watch(
    { eventTypes: [EventType.REQUEST_SUBMITTED, EventType.REQUEST_APPROVED] },
    { signal: controller.signal },
  );
  const cursor = await watch.ready();
  assert.notEqual(cursor, "", "ready carries the head cursor");
  const collector = new Collector(watch);

  // A backend submits: the admin may not approve a request it submitted itself.
  const backend = createSesameClient({ baseUrl: server!.url, apiKey: await server!.createKey("backend", "submitter") });
  const { accessRequest } = await backend.accessRequests.submitAccessRequest(submission("watch-1"));
  backend.close();
  assert.ok(accessRequest);
  await sesame.accessRequests.approveAccessRequest({ name: accessRequest.name, note: "ok" });

  const submitted = await collector.waitFor(isEvent(EventType.REQUEST_SUBMITTED, accessRequest.name), "submitted");
  const approved = await collector.waitFor(isEvent(EventType.REQUEST_APPROVED, accessRequest.name), "approved");
  assert.equal(submitted.state, AccessRequestState.PENDING);
  assert.equal(approved.state, AccessRequestState.APPROVED);
  assert.equal(approved.reason, "ok");
  assert.ok(approved.sequence > submitted.sequence);
  assert.equal(watch.cursor, approved.cursor, "the watch remembers the last cursor");

  controller.abort();
  await collector.finished();
  assert.equal(collector.error, undefined, "aborting ends the loop without an error");
  assert.equal(collector.events.length, 2, `only the filtered types: ${describe(collector.events)}`);
});

serverTest(
  "watch resumes across a server restart with no gap and no duplicate",
  current,
  async () => {
    const reconnects: string[] = [];
    const readyAt: number[] = [];
    // A fixed 1.5 s pause before reconnecting: the second request is committed
    // while the watch is away, so it can only arrive by replay after the cursor.
    const watch: EventWatch = sesame.watch(
      {},
      {
        initialBackoffMs: 1_500,
        maxBackoffMs: 1_500,
        jitter: 0,
        onReconnect: (info) => reconnects.push(`${Code[info.error.code]}:${errorReason(info.error) ?? "-"}`),
        onReady: () => readyAt.push(Date.now()),
      },
    );
    await watch.ready();
    const collector = new Collector(watch);

    // Event 1, received live.
    const first = await sesame.accessRequests.submitAccessRequest(submission("resume-1"));
    const event1 = await collector.waitFor(isEvent(EventType.REQUEST_SUBMITTED, first.accessRequest!.name), "first");

    // SIGTERM; the stream ends with UNAVAILABLE (SERVER_SHUTTING_DOWN).
    await server!.stop();
    await sleep(100);
    assert.deepEqual(reconnects, ["Unavailable:SERVER_SHUTTING_DOWN"], "the watch noticed the shutdown");
    await server!.start(); // same database, same port

    // Event 2, committed after the restart, reaches the same iterator.
    const second = await sesame.accessRequests.submitAccessRequest(submission("resume-2"));
    const committedAt = Date.now();
    const event2 = await collector.waitFor(
      isEvent(EventType.REQUEST_SUBMITTED, second.accessRequest!.name),
      "second",
    );
    assert.ok(event2.sequence > event1.sequence);
    assert.equal(readyAt.length, 2, `one reconnection: ${JSON.stringify(reconnects)}`);
    assert.ok(readyAt[1]! > committedAt, "the watch came back after event 2 was committed (replayed)");
    assert.equal(watch.reconnects, 1);

    // Every event of the log from the first one seen to event 2, exactly once, in order.
    await watch.return();
    await collector.finished();
    const seen = collector.events.filter((e) => e.sequence <= event2.sequence);
    const sequences = seen.map((e) => Number(e.sequence));
    const expected = Array.from(
      { length: Number(event2.sequence) - sequences[0]! + 1 },
      (_, i) => sequences[0]! + i,
    );
    assert.deepEqual(sequences, expected, `no gap, no duplicate: ${describe(seen)}`);
    assert.ok(sequences[0]! <= Number(event1.sequence));

    // The audit trail agrees with what the watch yielded.
    const log = await sesame.events.listEvents({ pageSize: 500 });
    const fromLog = log.events.filter((e) => e.sequence >= seen[0]!.sequence && e.sequence <= event2.sequence);
    assert.deepEqual(
      fromLog.map((e) => [e.sequence, e.cursor, e.type, e.hash]),
      seen.map((e) => [e.sequence, e.cursor, e.type, e.hash]),
    );
  },
  90_000,
);

serverTest(
  "a unary call is retried on UNAVAILABLE while the server restarts",
  current,
  async () => {
    const { accessRequest } = await sesame.accessRequests.submitAccessRequest(submission("retry-1"));
    assert.ok(accessRequest);
    await server!.stop();
    attempts = [];
    const call = sesame.accessRequests.getAccessRequest({ name: accessRequest.name });
    await sleep(500);
    await server!.start();
    const got = await call;
    assert.equal(got.accessRequest?.name, accessRequest.name);
    assert.ok(attempts.length >= 2, `retried: ${attempts.length} attempts`);
    assert.ok(attempts.every((m) => m === "GetAccessRequest"));
  },
  60_000,
);

serverTest("UNAVAILABLE is retried a bounded number of times", current, async () => {
  await server!.stop();
  const bounded = createSesameClient({
    baseUrl: server!.url,
    apiKey: server!.adminKey,
    retry: { maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 20 },
    interceptors: [countAttempts],
  });
  try {
    attempts = [];
    let error: unknown;
    try {
      await bounded.accessRequests.listAccessRequests({});
    } catch (err) {
      error = err;
    }
    assert.ok(error instanceof ConnectError);
    assert.equal(error.code, Code.Unavailable);
    assert.equal(attempts.length, 3);
  } finally {
    bounded.close();
    await server!.start();
  }
});

serverTest("a watch with a malformed cursor fails at once (not resumable)", current, async () => {
  const watch = sesame.watch({ after: "not-a-cursor" }, { initialBackoffMs: 10 });
  let error: unknown;
  try {
    for await (const _ of watch) {
      assert.fail("no event expected");
    }
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof ConnectError, String(error));
  assert.equal(error.code, Code.InvalidArgument);
  assert.equal(errorReason(error), "CURSOR_INVALID");
  assert.equal(watch.reconnects, 0);
});
