// The cross-client agreement scenario, as every client runs it: submit with a
// request id twice, list, approve with the etag, approve again with the now
// stale etag, read the request's events from a watch opened before the first
// submit, and one invalid submit. Prints one JSON document with the volatile
// values (names, etags, cursors, sequences) replaced by relations;
// server/tests/it/agreement.rs runs it in each of the five clients against one
// server and checks that the documents are equal.
//
//   npm run build && npm run build:test   # compiles it to dist-test/examples/agreement.js
//   SESAME_URL=http://127.0.0.1:50051 SESAME_ADMIN_KEY=sesame_... SESAME_SUBMITTER_KEY=sesame_... \
//   SESAME_RUN=r1 node dist-test/examples/agreement.js
//
// (SESAME_RUN keeps runs apart on one server: it is the request id and the
// resource of the run's request.)

import {
  AccessRequestState,
  AccessRequestStateSchema,
  Code,
  ConnectError,
  createSesameClient,
  errorReason,
  EventTypeSchema,
  fieldViolations,
  GatewayCodeStateSchema,
  UserType,
  type AccessRequest,
  type Event,
} from "@sesame/client";

function env(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) {
    throw new Error(`the response carried no ${what}`);
  }
  return value;
}

/** The protobuf name of an enum value (`EVENT_TYPE_REQUEST_APPROVED`), as the other clients print it. */
function enumName(schema: { value: Record<number, { name: string } | undefined> }, value: number): string {
  return schema.value[value]?.name ?? String(value);
}

/** `accessRequests/{uuid}` when `name` has that shape, else `name` itself. */
function nameShape(name: string): string {
  return /^accessRequests\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(name)
    ? "accessRequests/{uuid}"
    : name;
}

/** connect names codes in CamelCase (`InvalidArgument`); gRPC's canonical names are UPPER_SNAKE. */
function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** The code, ErrorInfo reason and message of an error. */
function errorJson(error: ConnectError) {
  return { code: codeName(error.code), reason: errorReason(error) ?? "", message: error.rawMessage };
}

/** The error of a call that must fail. */
async function failure(call: Promise<unknown>, what: string): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error(`${what} succeeded`);
}

const url = env("SESAME_URL");
const run = env("SESAME_RUN");
const resource = `agreement-${run}`;
const requestId = `agreement-${run}`;
const admin = createSesameClient({ baseUrl: url, apiKey: env("SESAME_ADMIN_KEY") });
const submitter = createSesameClient({ baseUrl: url, apiKey: env("SESAME_SUBMITTER_KEY") });

// Live before the first submit: every event of the request comes through it.
const watch = admin.watch({});
await watch.ready();

const submission = {
  applicant: { email: "ada@example.com", fullName: "Ada Lovelace", organization: "Analytical Engines" },
  userType: UserType.PARTNER,
  locale: "en",
  resource,
  justification: `Agreement run ${run}`,
  consent: { version: "2026-01", purposes: ["access_management"] },
};
const submit = async (): Promise<AccessRequest> =>
  required((await submitter.accessRequests.submitAccessRequest({ ...submission, requestId })).accessRequest, "request");
const first = await submit();
const retry = await submit();

const thisRun: string[] = [];
let pageToken = "";
do {
  const page = await admin.accessRequests.listAccessRequests({
    state: AccessRequestState.PENDING,
    userType: UserType.PARTNER,
    pageToken,
  });
  thisRun.push(...page.accessRequests.filter((request) => request.resource === resource).map((request) => request.name));
  pageToken = page.nextPageToken;
} while (pageToken);

const approve = { name: first.name, etag: first.etag };
const approved = required((await admin.accessRequests.approveAccessRequest(approve)).accessRequest, "request");
const stale = await failure(admin.accessRequests.approveAccessRequest(approve), "an approve with a stale etag");

// The audit trail says which events the request has; the watch is read up to
// the last of them (events arrive in log order).
const audit = (await admin.events.listEvents({ accessRequest: first.name })).events;
const last = required(audit.at(-1), "event of the request").sequence;
const watched: Event[] = [];
for await (const event of watch) {
  if (event.accessRequest === first.name) {
    watched.push(event);
  }
  if (event.sequence >= last) {
    break; // leaving the loop closes the stream
  }
}
const trail = (events: Event[]) => JSON.stringify(events.map((event) => [String(event.sequence), event.type]));

const invalid = await failure(
  submitter.accessRequests.submitAccessRequest({
    ...submission,
    applicant: { ...submission.applicant, email: "" },
    justification: "x".repeat(2001),
  }),
  "an invalid submit",
);
const violations = fieldViolations(invalid)
  .map((violation) => ({ field: violation.field, description: violation.description }))
  .sort((a, b) =>
    a.field !== b.field ? (a.field < b.field ? -1 : 1) : a.description < b.description ? -1 : a.description > b.description ? 1 : 0,
  );

const document = {
  submit: {
    name: nameShape(first.name),
    state: enumName(AccessRequestStateSchema, first.state),
    submitter: first.submitter,
    request_id_echoed: first.requestId === requestId,
    resource_echoed: first.resource === resource,
    retry_same_name: retry.name === first.name,
    retry_same_etag: retry.etag === first.etag,
    retry_state: enumName(AccessRequestStateSchema, retry.state),
  },
  list: {
    this_run: thisRun.length,
    this_run_is_the_submitted: thisRun.length === 1 && thisRun[0] === first.name,
  },
  approve: {
    state: enumName(AccessRequestStateSchema, approved.state),
    same_name: approved.name === first.name,
    etag_changed: approved.etag !== first.etag,
    decided_by: approved.decision?.actor ?? "",
    gateway_code: approved.gatewayCode ? enumName(GatewayCodeStateSchema, approved.gatewayCode.state) : "",
  },
  approve_stale_etag: errorJson(stale),
  watch: {
    event_types: watched.map((event) => enumName(EventTypeSchema, event.type)),
    actors: watched.map((event) => event.actor),
    states: watched.map((event) => enumName(AccessRequestStateSchema, event.state)),
    same_as_audit_trail: trail(watched) === trail(audit),
  },
  invalid_submit: { ...errorJson(invalid), field_violations: violations },
};
console.log(JSON.stringify(document, null, 2));
admin.close();
submitter.close();
