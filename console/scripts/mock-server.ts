// A fake Sesame for working on the console without the Rust server: it
// serves dist/ (with the production CSP) and answers gRPC-Web with in-memory
// data. Run: `npm run build && npm run mock`, open http://127.0.0.1:8787 and
// sign in with `admin-key`, `auditor-key` (or `submitter-key` to see the
// refusal). POST /__mock/submit adds a request, POST /__mock/decide?name=...
// approves one "elsewhere" (as `bob`), to watch the live updates.
//
// It is a development aid, not a specification: the server's behaviour is
// the authority.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { EventEmitter } from "node:events";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate, timestampNow, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { BadRequestSchema, ErrorInfoSchema } from "@client/errors";
import {
  AccessRequestSchema,
  AccessRequestService,
  AccessRequestState,
  GatewayCodeState,
  UserType,
  type AccessRequest,
} from "@client/gen/sesame/v1/access_request_pb";
import { CallerRole, CallerService } from "@client/gen/sesame/v1/caller_pb";
import { EmailSchema, EmailService, EmailState, EmailTemplate, type Email } from "@client/gen/sesame/v1/email_pb";
import { EventSchema, EventService, EventType, type Event, type WatchEventsResponse } from "@client/gen/sesame/v1/event_pb";
import { GatewayService } from "@client/gen/sesame/v1/gateway_pb";
import { PrivacyService } from "@client/gen/sesame/v1/privacy_pb";

const PORT = Number(process.env.PORT ?? 8787);
const DIST = new URL("../dist/", import.meta.url).pathname;
const SLA_SECS = 86400;
const HOUR = 3_600_000;

const KEYS: Record<string, { name: string; role: CallerRole }> = {
  "admin-key": { name: "alice", role: CallerRole.ADMIN },
  "admin2-key": { name: "bob", role: CallerRole.ADMIN },
  "auditor-key": { name: "audrey", role: CallerRole.AUDITOR },
  "submitter-key": { name: "hr-portal", role: CallerRole.SUBMITTER },
};

function fail(code: Code, reason: string, message: string, violations?: { field: string; description: string }[]): never {
  const details: { desc: typeof ErrorInfoSchema | typeof BadRequestSchema; value: object }[] = [
    { desc: ErrorInfoSchema, value: { reason, domain: "sesame.dev" } },
  ];
  if (violations) details.push({ desc: BadRequestSchema, value: { fieldViolations: violations } });
  throw new ConnectError(message, code, undefined, details as never);
}

function caller(ctx: HandlerContext, roles: CallerRole[]) {
  const header = ctx.requestHeader.get("authorization") ?? "";
  const key = header.replace(/^Bearer /, "");
  const who = KEYS[key];
  if (!who) fail(Code.Unauthenticated, "API_KEY_INVALID", "unknown or revoked API key");
  if (roles.length && !roles.includes(who.role)) fail(Code.PermissionDenied, "ROLE_NOT_ALLOWED", "role not allowed");
  return who;
}

const ANY = [CallerRole.ADMIN, CallerRole.AUDITOR];
const ADMIN = [CallerRole.ADMIN];

const requests = new Map<string, AccessRequest>();
const events: Event[] = [];
const emails: Email[] = [];
const bus = new EventEmitter();
let etagCounter = 1;
let idCounter = 1;

function uuid(): string {
  const n = (idCounter++).toString(16).padStart(12, "0");
  return `00000000-0000-4000-8000-${n}`;
}

function at(msAgo: number): Timestamp {
  return timestampFromDate(new Date(Date.now() - msAgo));
}

function append(type: EventType, r: AccessRequest, actor: string, extra: Partial<Event> = {}) {
  const sequence = BigInt(events.length + 1);
  const e = create(EventSchema, {
    sequence,
    cursor: `c${sequence}`,
    type,
    occurTime: timestampNow(),
    actor,
    accessRequest: r.name,
    state: r.state,
    hash: sequence.toString(16).padStart(64, "0"),
    ...extra,
  });
  events.push(e);
  bus.emit("event", e);
  return e;
}

function submit(email: string, fullName: string, resource: string, userType: UserType, msAgo: number, rule = ""): AccessRequest {
  const r = create(AccessRequestSchema, {
    name: `accessRequests/${uuid()}`,
    applicant: { email, fullName, organization: "Example Corp", phone: "+33 1 23 45 67 89" },
    userType,
    locale: "en",
    resource,
    justification: `Needs ${resource} for the project.\nSecond line.`,
    consent: { version: "2024-01", purposes: ["access_management"], grantTime: at(msAgo) },
    state: AccessRequestState.PENDING,
    submitter: "hr-portal",
    createTime: at(msAgo),
    updateTime: at(msAgo),
    etag: `e${etagCounter++}`,
    policy: rule
      ? { ruleId: rule, explanation: `${rule}: partner access to ${resource} needs two reviewers`, requiredApprovals: 2, approvedBy: [] }
      : { requiredApprovals: 1, approvedBy: [] },
  });
  requests.set(r.name, r);
  append(EventType.REQUEST_SUBMITTED, r, "hr-portal");
  emails.push(
    create(EmailSchema, {
      name: `emails/${uuid()}`,
      accessRequest: r.name,
      template: EmailTemplate.APPLICANT_RECEIVED,
      locale: "en",
      recipient: email,
      state: EmailState.SENT,
      attempts: 1,
      createTime: at(msAgo),
      sendTime: at(msAgo),
    }),
  );
  return r;
}

function decide(r: AccessRequest, state: AccessRequestState, actor: string, reason: string, automatic = false) {
  r.state = state;
  r.decision = { $typeName: "sesame.v1.Decision", actor, decideTime: timestampNow(), reason, automatic };
  r.updateTime = timestampNow();
  r.etag = `e${etagCounter++}`;
  const type =
    state === AccessRequestState.APPROVED
      ? EventType.REQUEST_APPROVED
      : state === AccessRequestState.REJECTED
        ? EventType.REQUEST_REJECTED
        : state === AccessRequestState.CANCELLED
          ? EventType.REQUEST_CANCELLED
          : EventType.REQUEST_EXPIRED;
  append(type, r, actor, { reason, automatic });
  if (state === AccessRequestState.APPROVED) issueCode(r, actor);
}

function issueCode(r: AccessRequest, actor: string) {
  r.gatewayCode = {
    $typeName: "sesame.v1.GatewayCodeStatus",
    state: GatewayCodeState.ACTIVE,
    issueTime: timestampNow(),
    expireTime: timestampFromDate(new Date(Date.now() + 24 * HOUR)),
    redeemedBy: "",
    failedAttempts: 0,
  };
  append(EventType.CODE_ISSUED, r, actor);
}

// Seed data.
submit("ada@example.com", "Ada Lovelace", "vpn-paris", UserType.EMPLOYEE, 30 * HOUR);
const reminded = submit("grace@partner.example", "Grace Hopper", "wiki", UserType.PARTNER, 14 * HOUR, "partners-review");
append(EventType.REQUEST_REMINDED, reminded, "system", { automatic: true });
submit("linus@example.com", "Linus T.", "git", UserType.CONTRACTOR, 2 * HOUR);
submit("margaret@example.com", "Margaret Hamilton", "vpn-paris", UserType.CUSTOMER, 20 * 60_000);
const approved = submit("alan@example.com", "Alan Turing", "vpn-paris", UserType.EMPLOYEE, 50 * HOUR);
decide(approved, AccessRequestState.APPROVED, "alice", "ok");
const rejected = submit("eve@example.com", "Eve", "prod-db", UserType.PARTNER, 40 * HOUR);
decide(rejected, AccessRequestState.REJECTED, "system", "prod-db is not for partners", true);
emails.push(
  create(EmailSchema, {
    name: `emails/${uuid()}`,
    accessRequest: approved.name,
    template: EmailTemplate.APPLICANT_APPROVED,
    locale: "en",
    recipient: "alan@example.com",
    state: EmailState.DEAD,
    attempts: 8,
    lastError: "550 5.1.1 <address>: mailbox unavailable",
    createTime: at(20 * HOUR),
  }),
  create(EmailSchema, {
    name: `emails/${uuid()}`,
    accessRequest: rejected.name,
    template: EmailTemplate.APPLICANT_REJECTED,
    locale: "fr",
    recipient: "eve@example.com",
    state: EmailState.PENDING,
    attempts: 2,
    lastError: "421 4.7.0 try again later",
    createTime: at(HOUR),
    nextAttemptTime: at(-10 * 60_000),
  }),
);

function getRequest(name: string): AccessRequest {
  const r = requests.get(name);
  if (!r) fail(Code.NotFound, "REQUEST_NOT_FOUND", `${name} not found`);
  return r;
}

function checkDecidable(r: AccessRequest, etag: string) {
  if (etag && etag !== r.etag) fail(Code.Aborted, "ETAG_MISMATCH", "the request changed since it was read");
  if (r.state !== AccessRequestState.PENDING) fail(Code.FailedPrecondition, "REQUEST_ALREADY_DECIDED", "request already decided");
}

function page<T>(items: T[], pageSize: number, pageToken: string) {
  const size = pageSize > 0 ? Math.min(pageSize, 500) : 50;
  const start = pageToken ? Number(pageToken) : 0;
  const slice = items.slice(start, start + size);
  return { slice, next: start + size < items.length ? String(start + size) : "" };
}

function tsMs(t?: Timestamp) {
  return t ? Number(t.seconds) * 1000 + t.nanos / 1e6 : 0;
}

function routes(router: ConnectRouter) {
  router.service(CallerService, {
    getCaller(_req, ctx) {
      const who = caller(ctx, []);
      return { name: who.name, role: who.role, reviewSla: { seconds: BigInt(SLA_SECS) } };
    },
  });
  router.service(AccessRequestService, {
    listAccessRequests(req, ctx) {
      caller(ctx, ANY);
      if (req.orderBy && !["create_time", "create_time asc", "create_time desc"].includes(req.orderBy)) {
        fail(Code.InvalidArgument, "INVALID_ARGUMENT", "bad order_by", [{ field: "order_by", description: "unsupported order" }]);
      }
      let list = [...requests.values()].filter(
        (r) =>
          (!req.state || r.state === req.state) &&
          (!req.userType || r.userType === req.userType) &&
          (!req.resource || r.resource === req.resource) &&
          (!req.applicantEmail || r.applicant?.email.toLowerCase() === req.applicantEmail.toLowerCase()) &&
          (!req.createTimeStart || tsMs(r.createTime) >= tsMs(req.createTimeStart)) &&
          (!req.createTimeEnd || tsMs(r.createTime) < tsMs(req.createTimeEnd)),
      );
      list.sort((a, b) => tsMs(a.createTime) - tsMs(b.createTime));
      if (!req.orderBy.endsWith("asc") && req.orderBy !== "create_time") list = list.reverse();
      const { slice, next } = page(list, req.pageSize, req.pageToken);
      return { accessRequests: slice, nextPageToken: next };
    },
    getAccessRequest(req, ctx) {
      caller(ctx, ANY);
      return { accessRequest: getRequest(req.name) };
    },
    approveAccessRequest(req, ctx) {
      const who = caller(ctx, ADMIN);
      const r = getRequest(req.name);
      checkDecidable(r, req.etag);
      const policy = r.policy!;
      if (policy.approvedBy.includes(who.name)) fail(Code.FailedPrecondition, "ALREADY_APPROVED_BY_CALLER", "already approved by caller");
      policy.approvedBy.push(who.name);
      if (policy.approvedBy.length < Math.max(1, policy.requiredApprovals)) {
        r.etag = `e${etagCounter++}`;
        append(EventType.REQUEST_APPROVAL_RECORDED, r, who.name, { reason: req.note });
      } else {
        decide(r, AccessRequestState.APPROVED, who.name, req.note);
      }
      return { accessRequest: r };
    },
    rejectAccessRequest(req, ctx) {
      const who = caller(ctx, ADMIN);
      const r = getRequest(req.name);
      if (!req.reason.trim()) fail(Code.InvalidArgument, "INVALID_ARGUMENT", "invalid request", [{ field: "reason", description: "reason is required (1 to 1000 characters)" }]);
      checkDecidable(r, req.etag);
      decide(r, AccessRequestState.REJECTED, who.name, req.reason);
      return { accessRequest: r };
    },
    cancelAccessRequest(req, ctx) {
      const who = caller(ctx, ADMIN);
      const r = getRequest(req.name);
      checkDecidable(r, req.etag);
      decide(r, AccessRequestState.CANCELLED, who.name, req.reason);
      return { accessRequest: r };
    },
    getStats(req, ctx) {
      caller(ctx, ADMIN);
      const states = [1, 2, 3, 4, 5].map((s) => ({ state: s, count: BigInt([...requests.values()].filter((r) => r.state === s).length) }));
      const windowSecs = req.windowSecs > 0n ? req.windowSecs : 30n * 86400n;
      const overdue = [...requests.values()].filter((r) => r.state === AccessRequestState.PENDING && Date.now() - tsMs(r.createTime) > SLA_SECS * 1000);
      return {
        stateCounts: states,
        windowStartTime: timestampFromDate(new Date(Date.now() - Number(windowSecs) * 1000)),
        decidedCount: BigInt([...requests.values()].filter((r) => r.state !== AccessRequestState.PENDING).length),
        medianDecisionTime: { seconds: 5n * 3600n },
        p95DecisionTime: { seconds: 30n * 3600n },
        overdueCount: BigInt(overdue.length),
        reviewSla: { seconds: BigInt(SLA_SECS) },
        automaticDecidedCount: BigInt([...requests.values()].filter((r) => r.decision?.automatic).length),
        emailsSentCount: BigInt(emails.filter((m) => m.state === EmailState.SENT).length),
        emailsDeadCount: BigInt(emails.filter((m) => m.state === EmailState.DEAD).length),
        emailsRetryingCount: BigInt(emails.filter((m) => m.state === EmailState.PENDING && m.attempts > 0).length),
      };
    },
  });
  router.service(EventService, {
    async *watchEvents(req, ctx) {
      caller(ctx, ANY);
      const queue: Event[] = [];
      let wake: (() => void) | undefined;
      const onEvent = (e: Event) => {
        queue.push(e);
        wake?.();
      };
      bus.on("event", onEvent);
      try {
        const after = req.after ? Number(req.after.replace(/^c/, "")) : events.length;
        yield { kind: { case: "ready", value: { cursor: `c${after}` } } } as WatchEventsResponse;
        for (const e of events.slice(after)) if (!queue.includes(e)) yield { kind: { case: "event", value: e } } as WatchEventsResponse;
        let last = after;
        while (!ctx.signal.aborted) {
          while (queue.length) {
            const e = queue.shift()!;
            if (Number(e.sequence) <= last) continue;
            last = Number(e.sequence);
            yield { kind: { case: "event", value: e } } as WatchEventsResponse;
          }
          const timedOut = await new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(true), 15_000);
            wake = () => {
              clearTimeout(timer);
              resolve(false);
            };
            ctx.signal.addEventListener("abort", () => wake?.(), { once: true });
          });
          wake = undefined;
          if (timedOut) yield { kind: { case: "heartbeat", value: { cursor: `c${last}`, time: timestampNow() } } } as WatchEventsResponse;
        }
      } finally {
        bus.off("event", onEvent);
      }
    },
    listEvents(req, ctx) {
      caller(ctx, ANY);
      const list = events.filter(
        (e) =>
          (!req.accessRequest || e.accessRequest === req.accessRequest) &&
          (!req.eventTypes.length || req.eventTypes.includes(e.type)) &&
          (!req.actor || e.actor === req.actor) &&
          (!req.occurTimeStart || tsMs(e.occurTime) >= tsMs(req.occurTimeStart)) &&
          (!req.occurTimeEnd || tsMs(e.occurTime) < tsMs(req.occurTimeEnd)),
      );
      const { slice, next } = page(list, req.pageSize, req.pageToken);
      return { events: slice, nextPageToken: next };
    },
    verifyAuditChain(_req, ctx) {
      caller(ctx, ANY);
      return { intact: true, firstSequence: 1n, lastVerifiedSequence: BigInt(events.length), verifiedEvents: BigInt(events.length) };
    },
  });
  router.service(EmailService, {
    listEmails(req, ctx) {
      caller(ctx, ADMIN);
      const list = emails
        .filter((m) => (!req.state || m.state === req.state) && (!req.accessRequest || m.accessRequest === req.accessRequest))
        .sort((a, b) => tsMs(b.createTime) - tsMs(a.createTime));
      const { slice, next } = page(list, req.pageSize, req.pageToken);
      return { emails: slice, nextPageToken: next };
    },
    retryEmail(req, ctx) {
      caller(ctx, ADMIN);
      const m = emails.find((e) => e.name === req.name);
      if (!m) fail(Code.NotFound, "EMAIL_NOT_FOUND", "no such email");
      if (m.state !== EmailState.DEAD) fail(Code.FailedPrecondition, "EMAIL_NOT_DEAD", "email is not dead");
      m.state = EmailState.PENDING;
      m.attempts = 0;
      return { email: m };
    },
    previewEmail(req, ctx) {
      caller(ctx, ADMIN);
      if (!req.template) fail(Code.InvalidArgument, "INVALID_ARGUMENT", "template required", [{ field: "template", description: "required" }]);
      const name = EmailTemplate[req.template].toLowerCase();
      return {
        subject: `[${req.locale || "en"}] ${name} (${UserType[req.userType || UserType.EMPLOYEE].toLowerCase()})`,
        text: `Hello Jane Doe,\n\nThis is the ${name} email.\n`,
        html: `<html><head><style>body{font-family:sans-serif;color:#222}h1{color:#0b57a4}</style></head><body><h1>${name}</h1><p>Hello Jane Doe,</p><script>document.body.innerHTML='SCRIPT RAN'</script></body></html>`,
      };
    },
  });
  router.service(GatewayService, {
    redeemGatewayCode() {
      fail(Code.PermissionDenied, "ROLE_NOT_ALLOWED", "gateway only");
    },
    revokeGatewayCode(req, ctx) {
      const who = caller(ctx, ADMIN);
      const r = getRequest(req.accessRequest);
      if (r.gatewayCode?.state !== GatewayCodeState.ACTIVE) fail(Code.FailedPrecondition, "GATEWAY_CODE_NOT_ACTIVE", "no active code");
      r.gatewayCode.state = GatewayCodeState.REVOKED;
      append(EventType.CODE_REVOKED, r, who.name, { reason: req.reason });
      return { gatewayCode: r.gatewayCode };
    },
    reissueGatewayCode(req, ctx) {
      const who = caller(ctx, ADMIN);
      const r = getRequest(req.accessRequest);
      if (r.state !== AccessRequestState.APPROVED) fail(Code.FailedPrecondition, "REQUEST_NOT_APPROVED", "not approved");
      issueCode(r, who.name);
      return { gatewayCode: r.gatewayCode };
    },
  });
  router.service(PrivacyService, {
    exportSubjectData(req, ctx) {
      caller(ctx, ADMIN);
      const mine = [...requests.values()].filter((r) => r.applicant?.email.toLowerCase() === req.email.trim().toLowerCase());
      if (!mine.length) fail(Code.NotFound, "SUBJECT_NOT_FOUND", "no data");
      return { json: JSON.stringify({ subject: req.email, access_requests: mine.map((r) => r.name) }, null, 2), accessRequestCount: mine.length };
    },
    eraseSubject(req, ctx) {
      const who = caller(ctx, ADMIN);
      if (!req.reason.trim()) fail(Code.InvalidArgument, "INVALID_ARGUMENT", "invalid", [{ field: "reason", description: "reason is required" }]);
      const mine = [...requests.values()].filter((r) => r.applicant?.email.toLowerCase() === req.email.trim().toLowerCase());
      let cancelled = 0;
      for (const r of mine) {
        if (r.state === AccessRequestState.PENDING) {
          decide(r, AccessRequestState.CANCELLED, who.name, "erased");
          cancelled++;
        }
        r.applicant = { $typeName: "sesame.v1.Applicant", email: "", fullName: "", organization: "", phone: "" };
        append(EventType.REQUEST_ERASED, r, who.name);
      }
      return { erasedAccessRequests: mine.length, cancelledAccessRequests: cancelled, droppedEmails: 0, keyDeleted: mine.length > 0 };
    },
    listConsentRecords(req, ctx) {
      caller(ctx, ADMIN);
      const mine = [...requests.values()].filter((r) => r.applicant?.email.toLowerCase() === req.email.trim().toLowerCase());
      return {
        consentRecords: mine.map((r) => ({ accessRequest: r.name, version: r.consent!.version, purposes: r.consent!.purposes, grantTime: r.consent!.grantTime })),
      };
    },
  });
}

const grpcWeb = connectNodeAdapter({ routes, grpcWeb: true, connect: false, grpc: false });

const TYPES: Record<string, string> = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css" };
// The server's policy (server/src/console.rs).
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; " +
  "font-src 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost");
  if (url.pathname.startsWith("/sesame.v1.")) return grpcWeb(req, res);
  if (req.method === "POST" && url.pathname === "/__mock/submit") {
    const r = submit(`new${idCounter}@example.com`, `New Person ${idCounter}`, "vpn-paris", UserType.EMPLOYEE, 0);
    res.end(r.name);
    return;
  }
  if (req.method === "POST" && url.pathname === "/__mock/decide") {
    const r = requests.get(url.searchParams.get("name") ?? "");
    if (r && r.state === AccessRequestState.PENDING) decide(r, AccessRequestState.APPROVED, "bob", "approved elsewhere");
    res.end("ok");
    return;
  }
  const path = normalize(url.pathname).replace(/^(\.\.[/\\])+/, "");
  let file = join(DIST, path);
  let body: Buffer;
  try {
    body = await readFile(file);
  } catch {
    file = join(DIST, "index.html");
    body = await readFile(file);
  }
  res.setHeader("content-type", TYPES[extname(file)] ?? "application/octet-stream");
  res.setHeader("content-security-policy", CSP);
  res.end(body);
}).listen(PORT, "127.0.0.1", () => console.log(`mock sesame on http://127.0.0.1:${PORT}`));
