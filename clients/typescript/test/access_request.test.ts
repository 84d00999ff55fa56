// Unary calls of AccessRequestService through the wrapper, against the real server.

import assert from "node:assert/strict";
import { after, before } from "node:test";
import {
  AccessRequestState,
  Code,
  ConnectError,
  createSesameClient,
  errorInfo,
  errorReason,
  fieldViolations,
  SESAME_ERROR_DOMAIN,
  type Interceptor,
  type SesameClient,
} from "@sesame/client";
import { DelayProxy, SesameServer, serverTest, sleep, submission } from "./server.js";

let server: SesameServer | undefined;
let sesame: SesameClient;
let attempts: string[] = [];

// Runs inside the retry interceptor: sees every attempt of a call.
const countAttempts: Interceptor = (next) => async (req) => {
  attempts.push(req.method.name);
  return await next(req);
};

before(async () => {
  server = await SesameServer.start();
  sesame = createSesameClient({
    baseUrl: server.url,
    apiKey: server.adminKey,
    interceptors: [countAttempts],
  });
});

after(async () => {
  sesame?.close();
  await server?.close();
});

const current = () => server;

async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    return err;
  }
  assert.fail("the call succeeded; an error was expected");
}

serverTest("submit is idempotent with a request_id", current, async () => {
  const first = await sesame.accessRequests.submitAccessRequest(submission("idem-1"));
  const again = await sesame.accessRequests.submitAccessRequest(submission("idem-1"));
  assert.ok(first.accessRequest);
  assert.match(first.accessRequest.name, /^accessRequests\/[0-9a-f-]{36}$/);
  assert.equal(first.accessRequest.state, AccessRequestState.PENDING);
  assert.equal(first.accessRequest.requestId, "idem-1");
  assert.equal(again.accessRequest?.name, first.accessRequest.name, "a retry returns the same request");

  const other = await sesame.accessRequests.submitAccessRequest(submission("idem-2"));
  assert.notEqual(other.accessRequest?.name, first.accessRequest.name);

  // The same request_id with another payload is refused.
  const err = await rejection(
    sesame.accessRequests.submitAccessRequest(submission("idem-1", "another-resource")),
  );
  assert.equal(err.code, Code.AlreadyExists);
  assert.equal(errorReason(err), "REQUEST_ID_REUSED");
});

serverTest("get and list", current, async () => {
  const { accessRequest } = await sesame.accessRequests.submitAccessRequest(submission("get-list-1", "wiki"));
  assert.ok(accessRequest);
  const got = await sesame.accessRequests.getAccessRequest({ name: accessRequest.name });
  assert.equal(got.accessRequest?.name, accessRequest.name);
  assert.equal(got.accessRequest?.resource, "wiki");
  assert.equal(got.accessRequest?.applicant?.email, "ada@example.com");
  assert.ok(got.accessRequest?.createTime, "create_time is set");
  assert.ok(got.accessRequest?.etag, "etag is set");

  const listed = await sesame.accessRequests.listAccessRequests({
    state: AccessRequestState.PENDING,
    pageSize: 500,
  });
  assert.ok(listed.accessRequests.length >= 1);
  assert.equal(listed.accessRequests[0]?.name, accessRequest.name, "newest first");
  assert.ok(listed.accessRequests.every((r) => r.state === AccessRequestState.PENDING));

  // Paging: one per page, the token leads to the next one.
  const page1 = await sesame.accessRequests.listAccessRequests({ pageSize: 1 });
  assert.equal(page1.accessRequests.length, 1);
  assert.notEqual(page1.nextPageToken, "");
  const page2 = await sesame.accessRequests.listAccessRequests({ pageSize: 1, pageToken: page1.nextPageToken });
  assert.equal(page2.accessRequests.length, 1);
  assert.notEqual(page2.accessRequests[0]?.name, page1.accessRequests[0]?.name);
});

serverTest("approve, then deciding again is FAILED_PRECONDITION", current, async () => {
  // A backend submits: the admin may not approve a request it submitted itself.
  const backend = createSesameClient({ baseUrl: server!.url, apiKey: await server!.createKey("backend", "submitter") });
  const { accessRequest } = await backend.accessRequests.submitAccessRequest(submission("approve-1"));
  backend.close();
  assert.ok(accessRequest);
  const approved = await sesame.accessRequests.approveAccessRequest({
    name: accessRequest.name,
    etag: accessRequest.etag,
    note: "welcome",
  });
  assert.equal(approved.accessRequest?.state, AccessRequestState.APPROVED);
  assert.equal(approved.accessRequest?.decision?.reason, "welcome");
  assert.ok(approved.accessRequest?.decision?.actor);

  const err = await rejection(sesame.accessRequests.approveAccessRequest({ name: accessRequest.name }));
  assert.equal(err.code, Code.FailedPrecondition);
  assert.equal(errorReason(err), "REQUEST_ALREADY_DECIDED");
});

serverTest("reject with a reason; a stale etag is ABORTED", current, async () => {
  const { accessRequest } = await sesame.accessRequests.submitAccessRequest(submission("reject-1"));
  assert.ok(accessRequest);
  const rejected = await sesame.accessRequests.rejectAccessRequest({
    name: accessRequest.name,
    reason: "no such gateway for partners",
  });
  assert.equal(rejected.accessRequest?.state, AccessRequestState.REJECTED);
  assert.equal(rejected.accessRequest?.decision?.reason, "no such gateway for partners");

  const { accessRequest: second } = await sesame.accessRequests.submitAccessRequest(submission("reject-2"));
  assert.ok(second);
  const err = await rejection(
    sesame.accessRequests.rejectAccessRequest({ name: second.name, reason: "stale", etag: "not-the-etag" }),
  );
  assert.equal(err.code, Code.Aborted);
  assert.equal(errorReason(err), "ETAG_MISMATCH");
});

serverTest("invalid input: ErrorInfo reason and field violations, not retried", current, async () => {
  attempts = [];
  const err = await rejection(
    sesame.accessRequests.submitAccessRequest({
      ...submission(),
      applicant: { email: "not an email", fullName: "Ada Lovelace", organization: "Analytical Engines" },
      resource: "",
    }),
  );
  assert.equal(err.code, Code.InvalidArgument);
  const info = errorInfo(err);
  assert.ok(info, "an ErrorInfo is attached");
  assert.equal(info.domain, SESAME_ERROR_DOMAIN);
  assert.equal(info.reason, "INVALID_ARGUMENT");
  const violations = fieldViolations(err);
  const fields = violations.map((v) => v.field).sort();
  assert.ok(fields.includes("applicant.email"), `violations: ${JSON.stringify(fields)}`);
  assert.ok(fields.includes("resource"), `violations: ${JSON.stringify(fields)}`);
  assert.ok(violations.every((v) => v.description.length > 0));
  assert.deepEqual(attempts, ["SubmitAccessRequest"], "INVALID_ARGUMENT is never retried");

  // A rejection without its required reason is invalid too.
  const noReason = await rejection(
    sesame.accessRequests.rejectAccessRequest({ name: "accessRequests/00000000-0000-4000-8000-000000000000" }),
  );
  assert.equal(noReason.code, Code.InvalidArgument);
  assert.ok(fieldViolations(noReason).some((v) => v.field === "reason"));
});

serverTest("an unknown name is NOT_FOUND", current, async () => {
  attempts = [];
  const err = await rejection(
    sesame.accessRequests.getAccessRequest({ name: "accessRequests/00000000-0000-4000-8000-000000000000" }),
  );
  assert.equal(err.code, Code.NotFound);
  assert.equal(errorReason(err), "REQUEST_NOT_FOUND");
  assert.deepEqual(attempts, ["GetAccessRequest"]);
});

serverTest("authentication and roles", current, async () => {
  const wrongKey = createSesameClient({ baseUrl: server!.url, apiKey: "sesame_notarealkey" });
  try {
    const err = await rejection(wrongKey.accessRequests.listAccessRequests({}));
    assert.equal(err.code, Code.Unauthenticated);
    assert.equal(errorReason(err), "API_KEY_INVALID");
  } finally {
    wrongKey.close();
  }

  const submitterKey = await server!.createKey("ts-submitter", "submitter");
  const submitter = createSesameClient({ baseUrl: server!.url, apiKey: submitterKey });
  try {
    const { accessRequest } = await submitter.accessRequests.submitAccessRequest(submission("sub-1"));
    assert.equal(accessRequest?.submitter, "ts-submitter");
    const err = await rejection(submitter.accessRequests.approveAccessRequest({ name: accessRequest!.name }));
    assert.equal(err.code, Code.PermissionDenied);
    assert.equal(errorReason(err), "ROLE_NOT_ALLOWED");
  } finally {
    submitter.close();
  }
});

serverTest("the default deadline applies and a call can override it", current, async () => {
  const timeouts: (string | null)[] = [];
  // Records the deadline sent, then holds the call 100 ms before sending it.
  const slow: Interceptor = (next) => async (req) => {
    timeouts.push(req.header.get("grpc-timeout"));
    await new Promise((r) => setTimeout(r, 100));
    return await next(req);
  };
  const client = createSesameClient({ baseUrl: server!.url, apiKey: server!.adminKey, interceptors: [slow] });
  const quick = createSesameClient({ baseUrl: server!.url, apiKey: server!.adminKey, timeoutMs: 20, interceptors: [slow] });
  try {
    await client.accessRequests.listAccessRequests({});
    await client.accessRequests.listAccessRequests({}, { timeoutMs: 2_500 });
    assert.deepEqual(timeouts, ["10000m", "2500m"], "default 10 s deadline, overridable per call");

    const fromDefault = await rejection(quick.accessRequests.listAccessRequests({}));
    assert.equal(fromDefault.code, Code.DeadlineExceeded);
    const overridden = await quick.accessRequests.listAccessRequests({}, { timeoutMs: 10_000 });
    assert.ok(overridden.accessRequests.length > 0);
  } finally {
    client.close();
    quick.close();
  }
});

/** The requests stored for `email`, read through the direct client. */
async function storedFor(email: string) {
  const { accessRequests } = await sesame.accessRequests.listAccessRequests({ applicantEmail: email });
  return accessRequests;
}

function submissionAs(email: string, requestId: string) {
  const message = submission(requestId);
  message.applicant.email = email;
  return message;
}

// Guards the operator's finding: a submit whose attempt timed out while the
// server committed it is retried and returns that request, never a second.
serverTest("a submit whose attempt times out is retried and returns the committed request", current, async () => {
  // Answers held 800 ms from the first request on; attempts get 400 ms.
  const target = `127.0.0.1:${server!.port}`;
  const options = { apiKey: server!.adminKey, timeoutMs: 10_000, attemptTimeoutMs: 400 };
  let proxy = await DelayProxy.start(target, 800);
  let delayedAttempts: string[] = [];
  const countDelayed: Interceptor = (next) => async (req) => {
    delayedAttempts.push(req.method.name);
    return await next(req);
  };
  let delayed = createSesameClient({ ...options, baseUrl: proxy.url, interceptors: [countDelayed] });
  try {
    const started = Date.now();
    // No requestId given: the client fills one in.
    const { accessRequest } = await delayed.accessRequests.submitAccessRequest(submissionAs("held@example.com", ""));
    assert.ok(accessRequest);
    assert.ok(Date.now() - started >= 400, "the first attempt timed out");
    assert.ok(delayedAttempts.length >= 2, `retried: ${delayedAttempts.length} attempts`);
    const stored = await storedFor("held@example.com");
    assert.deepEqual(
      stored.map((r) => r.name),
      [accessRequest.name],
      "one request, never a second",
    );
    assert.equal(stored[0]!.requestId, accessRequest.requestId);
  } finally {
    delayed.close();
    await proxy.close();
  }

  // Without a request id (retry off, so none is filled in): one attempt,
  // DEADLINE_EXCEEDED, and the server has the request.
  proxy = await DelayProxy.start(target, 800);
  delayedAttempts = [];
  delayed = createSesameClient({ ...options, baseUrl: proxy.url, retry: false, interceptors: [countDelayed] });
  try {
    const started = Date.now();
    const err = await rejection(
      delayed.accessRequests.submitAccessRequest(submissionAs("unkeyed@example.com", "")),
    );
    assert.equal(err.code, Code.DeadlineExceeded);
    assert.ok(Date.now() - started < 5_000, "one attempt, not the whole deadline");
    assert.equal(delayedAttempts.length, 1);
    await sleep(500);
    assert.equal((await storedFor("unkeyed@example.com")).length, 1);
  } finally {
    delayed.close();
    await proxy.close();
  }
});

serverTest("DEADLINE_EXCEEDED of another call is not retried", current, async () => {
  const { accessRequest } = await sesame.accessRequests.submitAccessRequest(submissionAs("known@example.com", ""));
  assert.ok(accessRequest);
  const proxy = await DelayProxy.start(`127.0.0.1:${server!.port}`, 800);
  const delayedAttempts: string[] = [];
  const countDelayed: Interceptor = (next) => async (req) => {
    delayedAttempts.push(req.method.name);
    return await next(req);
  };
  const delayed = createSesameClient({
    baseUrl: proxy.url,
    apiKey: server!.adminKey,
    timeoutMs: 10_000,
    attemptTimeoutMs: 400,
    interceptors: [countDelayed],
  });
  try {
    const err = await rejection(delayed.accessRequests.getAccessRequest({ name: accessRequest.name }));
    assert.equal(err.code, Code.DeadlineExceeded);
    assert.deepEqual(delayedAttempts, ["GetAccessRequest"]);
  } finally {
    delayed.close();
    await proxy.close();
  }
});
