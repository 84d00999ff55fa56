// One access request: everything about it, its timeline and emails, its
// gateway code, and the decision forms.
import { useCallback, useEffect, useState } from "preact/hooks";
import { AccessRequestState, GatewayCodeState, type AccessRequest } from "@client/gen/sesame/v1/access_request_pb";
import type { Email } from "@client/gen/sesame/v1/email_pb";
import { EventType, type Event } from "@client/gen/sesame/v1/event_pb";
import { api, callOptions } from "../api";
import { describeError, type UiError } from "../errors";
import {
  codeStateLabel,
  emailStateLabel,
  eventLabel,
  formatTime,
  stateLabel,
  templateLabel,
  timestampMs,
  userTypeLabel,
} from "../format";
import { t } from "../i18n";
import { useLiveEvents } from "../live";
import { isAdmin, useSession } from "../session";
import { slaBadge } from "../sla";
import { ErrorBanner, Facts, Field, Link, Loading, SlaBadgeView, StateBadge } from "./common";

/** Every event of a request, oldest first (a request has few). */
async function allEvents(name: string): Promise<Event[]> {
  const out: Event[] = [];
  let pageToken = "";
  for (let i = 0; i < 20; i++) {
    const res = await api.events.listEvents({ accessRequest: name, pageSize: 500, pageToken }, callOptions);
    out.push(...res.events);
    pageToken = res.nextPageToken;
    if (!pageToken) break;
  }
  return out;
}

/** Events that change the request itself (and so its etag). */
const CHANGES_REQUEST = new Set([
  EventType.REQUEST_SUBMITTED,
  EventType.REQUEST_APPROVED,
  EventType.REQUEST_REJECTED,
  EventType.REQUEST_CANCELLED,
  EventType.REQUEST_EXPIRED,
  EventType.REQUEST_APPROVAL_RECORDED,
  EventType.REQUEST_ERASED,
]);

const CODE_EVENTS = new Set([EventType.CODE_ISSUED, EventType.CODE_REDEEMED, EventType.CODE_REVOKED]);

interface Stale {
  actor?: string;
  event?: string;
  time?: string;
}

export function Detail({ name }: { name: string }) {
  const session = useSession();
  const admin = isAdmin(session);
  const [request, setRequest] = useState<AccessRequest>();
  const [events, setEvents] = useState<Event[]>([]);
  const [emails, setEmails] = useState<Email[]>([]);
  const [error, setError] = useState<UiError>();
  const [loading, setLoading] = useState(true);
  const [stale, setStale] = useState<Stale>();
  const [liveChange, setLiveChange] = useState<Event>();
  const [result, setResult] = useState("");

  const load = useCallback(async () => {
    setLoading(true);
    setError(undefined);
    setStale(undefined);
    setLiveChange(undefined);
    try {
      const [req, evs, ems] = await Promise.all([
        api.requests.getAccessRequest({ name }, callOptions),
        allEvents(name),
        admin ? api.emails.listEmails({ accessRequest: name, pageSize: 100 }, callOptions) : Promise.resolve(undefined),
      ]);
      setRequest(req.accessRequest);
      setEvents(evs);
      setEmails(ems?.emails ?? []);
    } catch (err) {
      setError(describeError(err));
    } finally {
      setLoading(false);
    }
  }, [name, admin]);

  useEffect(() => {
    setResult("");
    void load();
  }, [load]);

  useLiveEvents(
    (e) => {
      if (e.accessRequest !== name) return;
      setEvents((prev) => (prev.some((p) => p.sequence === e.sequence) ? prev : [...prev, e]));
      // A change of the request itself makes our etag stale: say so, let the user reload.
      // A request event outranks the code or email events that follow it.
      if (e.actor !== session.name && (CHANGES_REQUEST.has(e.type) || CODE_EVENTS.has(e.type))) {
        setLiveChange((prev) => (prev && CHANGES_REQUEST.has(prev.type) && !CHANGES_REQUEST.has(e.type) ? prev : e));
      }
    },
    () => void load(),
  );

  /** After ABORTED: who changed the request meanwhile, from its latest event. */
  const explainStale = async () => {
    try {
      const evs = await allEvents(name);
      setEvents(evs);
      const last = [...evs].reverse().find((e) => CHANGES_REQUEST.has(e.type)) ?? evs[evs.length - 1];
      setStale(last ? { actor: last.actor, event: eventLabel(last.type), time: formatTime(last.occurTime) } : {});
    } catch {
      setStale({});
    }
  };

  const onDecided = async (message: string, updated?: AccessRequest) => {
    setResult(message);
    if (updated) setRequest(updated);
    try {
      setEvents(await allEvents(name));
    } catch {
      // The timeline catches up on the next load.
    }
  };

  if (loading && !request) return <Loading />;
  if (!request) {
    return (
      <section>
        <h1 tabIndex={-1} class="screen-title">
          {t("detail.title")}
        </h1>
        <ErrorBanner error={error} onRetry={load} />
        <p>
          <Link href="/">{t("app.backToQueue")}</Link>
        </p>
      </section>
    );
  }

  const r = request;
  const pending = r.state === AccessRequestState.PENDING;
  const policy = r.policy;
  const required = Math.max(1, policy?.requiredApprovals ?? 1);
  const staleText = stale
    ? stale.actor
      ? t("detail.stale", { actor: stale.actor, event: stale.event ?? "", time: stale.time ?? "" })
      : t("detail.staleUnknown")
    : "";

  return (
    <section class="detail">
      <p class="breadcrumb">
        <Link href="/">{t("app.backToQueue")}</Link>
      </p>
      <h1 id="detail-title" tabIndex={-1} class="screen-title">
        {t("detail.title")}: {r.applicant?.fullName || r.applicant?.email || name}
      </h1>
      <p class="subtitle">
        <StateBadge label={stateLabel(r.state)} state={AccessRequestState[r.state] ?? "unspecified"} />{" "}
        {pending ? (
          <SlaBadgeView badge={slaBadge(timestampMs(r.createTime) ?? Date.now(), Date.now(), session.slaMs, flagsOf(events))} slaMs={session.slaMs} />
        ) : null}{" "}
        <code class="muted">{r.name}</code>
      </p>
      <ErrorBanner error={error} onRetry={load} />
      {staleText || liveChange ? (
        <div class="banner banner-warn" role="alert">
          <span>
            {staleText ||
              t("detail.changedLive", { event: eventLabel(liveChange!.type), actor: liveChange!.actor })}
          </span>
          <button type="button" class="button-secondary" onClick={load}>
            {t("app.reload")}
          </button>
        </div>
      ) : null}
      <div aria-live="polite" role="status" class="live-region">
        {result ? <p class="notice notice-ok">{result}</p> : null}
      </div>

      <div class="cards">
        <section class="card">
          <h2 id="h-applicant">{t("detail.applicant")}</h2>
          <Facts
            items={[
              [t("detail.email"), r.applicant?.email],
              [t("detail.fullName"), r.applicant?.fullName],
              [t("detail.organization"), r.applicant?.organization],
              [t("detail.phone"), r.applicant?.phone],
            ]}
          />
        </section>
        <section class="card">
          <h2 id="h-request">{t("detail.request")}</h2>
          <Facts
            items={[
              [t("detail.resource"), r.resource],
              [t("detail.userType"), userTypeLabel(r.userType)],
              [t("detail.locale"), r.locale],
              [t("detail.submitter"), r.submitter],
              [t("detail.created"), formatTime(r.createTime)],
              [t("detail.updated"), formatTime(r.updateTime)],
            ]}
          />
          <h3>{t("detail.justification")}</h3>
          <p class="prewrap">{r.justification}</p>
        </section>
        <section class="card">
          <h2 id="h-consent">{t("detail.consent")}</h2>
          <Facts
            items={[
              [t("detail.consentVersion"), r.consent?.version],
              [t("detail.purposes"), r.consent?.purposes.join(", ")],
              [t("detail.granted"), formatTime(r.consent?.grantTime)],
            ]}
          />
        </section>
        <section class="card">
          <h2 id="h-policy">{t("detail.policy")}</h2>
          {policy?.ruleId ? (
            <Facts
              items={[
                [t("detail.rule"), <code>{policy.ruleId}</code>],
                [t("detail.explanation"), policy.explanation],
              ]}
            />
          ) : (
            <p>{t("detail.noRule")}</p>
          )}
          <Facts
            items={[
              [t("detail.approvals"), t("detail.approvalsOf", { count: policy?.approvedBy.length ?? 0, required })],
              [t("detail.approvedBy"), policy?.approvedBy.length ? policy.approvedBy.join(", ") : t("app.none")],
            ]}
          />
        </section>
        {r.decision ? (
          <section class="card">
            <h2 id="h-decision">{t("detail.decision")}</h2>
            <Facts
              items={[
                [t("detail.decidedBy"), r.decision.actor],
                [t("detail.decidedAt"), formatTime(r.decision.decideTime)],
                [t("detail.reason"), r.decision.reason],
                [t("detail.automatic"), r.decision.automatic ? t("app.yes") : t("app.no")],
              ]}
            />
          </section>
        ) : null}
        <CodeCard request={r} admin={admin} onChanged={(msg) => onDecided(msg)} reload={load} />
      </div>

      {admin && pending ? (
        <DecisionForms
          request={r}
          onDecided={onDecided}
          onStale={explainStale}
        />
      ) : null}

      <section>
        <h2 id="h-timeline">{t("detail.timeline")}</h2>
        {events.length ? (
          <ol class="timeline">
            {events.map((e) => (
              <li key={String(e.sequence)}>
                <span class="timeline-time">{formatTime(e.occurTime)}</span>{" "}
                <strong>{eventLabel(e.type)}</strong> — {e.actor}
                {e.automatic ? ` (${t("detail.automatic").toLowerCase()})` : ""}
                {e.reason ? <span class="prewrap">: {e.reason}</span> : null}
                {e.ruleId ? (
                  <>
                    {" "}
                    <code>{e.ruleId}</code>
                  </>
                ) : null}
              </li>
            ))}
          </ol>
        ) : (
          <p>{t("detail.noEvents")}</p>
        )}
      </section>

      {admin ? (
        <section>
          <h2 id="h-emails">{t("detail.emails")}</h2>
          {emails.length ? (
            <table class="table">
              <thead>
                <tr>
                  <th scope="col">{t("col.template")}</th>
                  <th scope="col">{t("col.recipient")}</th>
                  <th scope="col">{t("col.state")}</th>
                  <th scope="col">{t("col.attempts")}</th>
                  <th scope="col">{t("col.lastError")}</th>
                  <th scope="col">{t("col.created")}</th>
                </tr>
              </thead>
              <tbody>
                {emails.map((m) => (
                  <tr key={m.name}>
                    <td data-label={t("col.template")}>{templateLabel(m.template)}</td>
                    <td data-label={t("col.recipient")}>{m.recipient}</td>
                    <td data-label={t("col.state")}>{emailStateLabel(m.state)}</td>
                    <td data-label={t("col.attempts")}>{m.attempts}</td>
                    <td data-label={t("col.lastError")}>{m.lastError}</td>
                    <td data-label={t("col.created")}>{formatTime(m.createTime)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p>{t("detail.noEmails")}</p>
          )}
        </section>
      ) : null}
    </section>
  );
}

function flagsOf(events: Event[]) {
  return {
    reminded: events.some((e) => e.type === EventType.REQUEST_REMINDED),
    escalated: events.some((e) => e.type === EventType.REQUEST_ESCALATED),
  };
}

function DecisionForms({
  request,
  onDecided,
  onStale,
}: {
  request: AccessRequest;
  onDecided: (message: string, updated?: AccessRequest) => void;
  onStale: () => void;
}) {
  return (
    <section class="decide">
      <h2 id="h-decide">{t("detail.actions")}</h2>
      <div class="cards">
        <DecisionForm
          id="approve"
          label={t("detail.approveNote")}
          field="note"
          button={t("detail.approve")}
          tone="primary"
          onStale={onStale}
          call={async (text) => {
            const res = await api.requests.approveAccessRequest({ name: request.name, etag: request.etag, note: text }, callOptions);
            const updated = res.accessRequest;
            onDecided(
              updated?.state === AccessRequestState.PENDING ? t("detail.approvalRecorded") : t("detail.approved"),
              updated,
            );
          }}
        />
        <DecisionForm
          id="reject"
          label={t("detail.rejectReason")}
          field="reason"
          required
          button={t("detail.reject")}
          tone="danger"
          onStale={onStale}
          call={async (text) => {
            const res = await api.requests.rejectAccessRequest({ name: request.name, etag: request.etag, reason: text }, callOptions);
            onDecided(t("detail.rejected"), res.accessRequest);
          }}
        />
        <DecisionForm
          id="cancel"
          label={t("detail.cancelReason")}
          field="reason"
          button={t("detail.cancel")}
          tone="secondary"
          onStale={onStale}
          call={async (text) => {
            const res = await api.requests.cancelAccessRequest({ name: request.name, etag: request.etag, reason: text }, callOptions);
            onDecided(t("detail.cancelled"), res.accessRequest);
          }}
        />
      </div>
    </section>
  );
}

/**
 * One decision: a text field and a button. The server validates; its field
 * violation for `field` is shown next to the field.
 */
function DecisionForm(props: {
  id: string;
  label: string;
  field: string;
  required?: boolean;
  button: string;
  tone: "primary" | "danger" | "secondary";
  call: (text: string) => Promise<void>;
  onStale: () => void;
}) {
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<UiError>();
  const fieldId = `${props.id}-text`;
  const fieldError = error?.fields[props.field];
  return (
    <form
      class="card"
      aria-label={props.button}
      noValidate
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setError(undefined);
        try {
          await props.call(text.trim());
          setText("");
        } catch (err) {
          const ui = describeError(err);
          if (ui.stale) props.onStale();
          else setError(ui);
          if (ui.fields[props.field]) document.getElementById(fieldId)?.focus();
        } finally {
          setBusy(false);
        }
      }}
    >
      <Field id={fieldId} label={props.label} error={fieldError}>
        {(describedBy, invalid) => (
          <textarea
            id={fieldId}
            rows={2}
            maxLength={1000}
            value={text}
            aria-required={props.required ? "true" : undefined}
            aria-describedby={describedBy}
            aria-invalid={invalid}
            onInput={(e) => setText(e.currentTarget.value)}
          />
        )}
      </Field>
      {error && !fieldError ? <ErrorBanner error={error} /> : null}
      <button type="submit" class={`button-${props.tone}`} disabled={busy}>
        {props.button}
      </button>
    </form>
  );
}

function CodeCard({
  request,
  admin,
  onChanged,
  reload,
}: {
  request: AccessRequest;
  admin: boolean;
  onChanged: (message: string) => void;
  reload: () => void;
}) {
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<UiError>();
  const code = request.gatewayCode;
  const approved = request.state === AccessRequestState.APPROVED;
  if (!code && !approved) return null;
  const act = async (what: "revoke" | "reissue") => {
    setBusy(true);
    setError(undefined);
    try {
      if (what === "revoke") {
        await api.gateway.revokeGatewayCode({ accessRequest: request.name, reason: reason.trim() }, callOptions);
        setReason("");
        onChanged(t("detail.revoked"));
      } else {
        await api.gateway.reissueGatewayCode({ accessRequest: request.name }, callOptions);
        onChanged(t("detail.reissued"));
      }
      reload();
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card">
      <h2 id="h-code">{t("detail.code")}</h2>
      {code ? (
        <Facts
          items={[
            [t("detail.codeState"), codeStateLabel(code.state)],
            [t("detail.codeIssued"), formatTime(code.issueTime)],
            [t("detail.codeExpires"), formatTime(code.expireTime)],
            [t("detail.codeRedeemed"), formatTime(code.redeemTime)],
            [t("detail.codeRedeemedBy"), code.redeemedBy],
            [t("detail.codeAttempts"), String(code.failedAttempts)],
          ]}
        />
      ) : (
        <p>{t("detail.noCode")}</p>
      )}
      <ErrorBanner error={error} />
      {admin && code?.state === GatewayCodeState.ACTIVE ? (
        <form
          noValidate
          onSubmit={(e) => {
            e.preventDefault();
            void act("revoke");
          }}
        >
          <Field id="revoke-reason" label={t("detail.revokeReason")} error={error?.fields.reason}>
            {(describedBy, invalid) => (
              <input
                id="revoke-reason"
                type="text"
                maxLength={1000}
                value={reason}
                aria-describedby={describedBy}
                aria-invalid={invalid}
                onInput={(e) => setReason(e.currentTarget.value)}
              />
            )}
          </Field>
          <button type="submit" class="button-danger" disabled={busy}>
            {t("detail.revoke")}
          </button>
        </form>
      ) : null}
      {admin && approved && code?.state !== GatewayCodeState.REDEEMED ? (
        <p>
          <button type="button" class="button-secondary" disabled={busy} onClick={() => act("reissue")}>
            {t("detail.reissue")}
          </button>
        </p>
      ) : null}
    </section>
  );
}

