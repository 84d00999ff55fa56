// Failing, dead and suppressed emails with Retry, the suppressed addresses
// with Lift, and a preview of every template.
import { useCallback, useEffect, useState } from "preact/hooks";
import { UserType } from "@client/gen/sesame/v1/access_request_pb";
import {
  EmailDelivery,
  EmailState,
  EmailTemplate,
  type Email,
  type PreviewEmailResponse,
  type Suppression,
} from "@client/gen/sesame/v1/email_pb";
import { api, callOptions } from "../api";
import { describeError, type UiError } from "../errors";
import { deliveryLabel, emailStateLabel, formatTime, suppressionLabel, templateLabel, timestampMs, userTypeLabel } from "../format";
import { t } from "../i18n";
import { ErrorBanner, Link, LiveRegion, Loading, ScreenTitle } from "./common";

type Show = "problems" | "dead" | "failing" | "all";

/** Page tokens of the lists a view reads: "" for the first page. */
type Tokens = { dead?: string; pending?: string; suppressed?: string; all?: string };

const STATE_OF: Record<keyof Tokens, EmailState> = {
  dead: EmailState.DEAD,
  pending: EmailState.PENDING,
  suppressed: EmailState.SUPPRESSED,
  all: EmailState.UNSPECIFIED,
};

function initialTokens(show: Show): Tokens {
  switch (show) {
    case "problems":
      return { dead: "", pending: "", suppressed: "" };
    case "dead":
      return { dead: "" };
    case "failing":
      return { pending: "" };
    default:
      return { all: "" };
  }
}

function newestFirst(a: Email, b: Email): number {
  return (timestampMs(b.createTime) ?? 0) - (timestampMs(a.createTime) ?? 0);
}

const TEMPLATES = [
  EmailTemplate.APPLICANT_RECEIVED,
  EmailTemplate.APPLICANT_APPROVED,
  EmailTemplate.APPLICANT_REJECTED,
  EmailTemplate.APPLICANT_CANCELLED,
  EmailTemplate.APPLICANT_EXPIRED,
  EmailTemplate.ADMIN_NEW_REQUEST,
  EmailTemplate.ADMIN_REMINDER,
  EmailTemplate.ADMIN_ESCALATION,
];
const USER_TYPES = [UserType.EMPLOYEE, UserType.PARTNER, UserType.CUSTOMER, UserType.CONTRACTOR];

/** Failing: still pending, but its last attempt failed. */
export function isFailing(e: Email): boolean {
  return e.state === EmailState.PENDING && (e.attempts > 0 || e.lastError !== "");
}

export function Emails() {
  return (
    <section>
      <ScreenTitle>{t("emails.title")}</ScreenTitle>
      <ProblemEmails />
      <Suppressions />
      <Preview />
    </section>
  );
}

function Suppressions() {
  const [suppressions, setSuppressions] = useState<Suppression[]>([]);
  const [nextToken, setNextToken] = useState("");
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<UiError>();
  const [notice, setNotice] = useState("");

  const load = useCallback(async (pageToken = "") => {
    setLoading(true);
    setError(undefined);
    try {
      const res = await api.emails.listSuppressions({ pageSize: 100, pageToken }, callOptions);
      setSuppressions((prev) => (pageToken ? [...prev, ...res.suppressions] : res.suppressions));
      setNextToken(res.nextPageToken);
    } catch (err) {
      setError(describeError(err));
    } finally {
      setLoading(false);
    }
  }, []);

  useEffect(() => {
    void load();
  }, [load]);

  const lift = async (s: Suppression) => {
    setError(undefined);
    try {
      await api.emails.deleteSuppression({ name: s.name }, callOptions);
      setSuppressions((prev) => prev.filter((p) => p.name !== s.name));
      setNotice(t("emails.lifted", { recipient: s.recipient }));
    } catch (err) {
      setError(describeError(err));
    }
  };

  return (
    <section>
      <h2 id="h-suppressions">{t("emails.suppressions")}</h2>
      <p class="muted">{t("emails.suppressionsIntro")}</p>
      <ErrorBanner error={error} onRetry={() => load()} />
      <LiveRegion>{notice ? <p class="notice notice-ok">{notice}</p> : null}</LiveRegion>
      {loading && !suppressions.length ? <Loading /> : null}
      {!loading && !suppressions.length && !error ? <p>{t("emails.suppressionsEmpty")}</p> : null}
      {suppressions.length ? (
        <table class="table" aria-labelledby="h-suppressions">
          <thead>
            <tr>
              <th scope="col">{t("col.recipient")}</th>
              <th scope="col">{t("col.reason")}</th>
              <th scope="col">{t("col.created")}</th>
              <th scope="col">{t("col.actions")}</th>
            </tr>
          </thead>
          <tbody>
            {suppressions.map((s) => (
              <tr key={s.name}>
                <td data-label={t("col.recipient")} class="wrap">
                  {s.recipient}
                </td>
                <td data-label={t("col.reason")} class="wrap">
                  {suppressionLabel(s.reason)} ({s.provider}){s.detail ? `: ${s.detail}` : null}
                </td>
                <td data-label={t("col.created")}>{formatTime(s.createTime)}</td>
                <td data-label={t("col.actions")}>
                  <button type="button" class="button-secondary" aria-label={t("emails.liftOf", { recipient: s.recipient })} onClick={() => lift(s)}>
                    {t("emails.lift")}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {nextToken ? (
        <p>
          <button type="button" class="button-secondary" disabled={loading} onClick={() => load(nextToken)}>
            {t("app.loadMore")}
          </button>
        </p>
      ) : null}
    </section>
  );
}

function ProblemEmails() {
  const [show, setShow] = useState<Show>("problems");
  const [emails, setEmails] = useState<Email[]>([]);
  const [tokens, setTokens] = useState<Tokens>({});
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<UiError>();
  const [notice, setNotice] = useState("");

  const load = useCallback(
    async (from?: Tokens) => {
      setLoading(true);
      setError(undefined);
      try {
        const wanted = from ?? initialTokens(show);
        const calls = (Object.keys(wanted) as (keyof Tokens)[]).map(async (key) => {
          const res = await api.emails.listEmails({ state: STATE_OF[key], pageSize: 100, pageToken: wanted[key] }, callOptions);
          return { key, res };
        });
        const pages = await Promise.all(calls);
        const next: Tokens = {};
        let page: Email[] = [];
        for (const { key, res } of pages) {
          page = page.concat(key === "pending" ? res.emails.filter(isFailing) : res.emails);
          if (res.nextPageToken) next[key] = res.nextPageToken;
        }
        page.sort(newestFirst);
        setEmails((prev) => (from ? [...prev, ...page] : page));
        setTokens(next);
      } catch (err) {
        setError(describeError(err));
      } finally {
        setLoading(false);
      }
    },
    [show],
  );

  useEffect(() => {
    setNotice("");
    void load();
  }, [load]);

  const retry = async (e: Email) => {
    setError(undefined);
    try {
      const res = await api.emails.retryEmail({ name: e.name }, callOptions);
      const updated = res.email;
      setEmails((prev) =>
        show === "all" ? prev.map((p) => (p.name === e.name && updated ? updated : p)) : prev.filter((p) => p.name !== e.name),
      );
      setNotice(t("emails.retried", { recipient: e.recipient }));
    } catch (err) {
      setError(describeError(err));
    }
  };

  return (
    <section>
      <h2 id="h-problems">{t("emails.problems")}</h2>
      <div class="field inline">
        <label for="email-show">{t("emails.show")}</label>
        <select id="email-show" value={show} onChange={(e) => setShow(e.currentTarget.value as Show)}>
          <option value="problems">{t("emails.showProblems")}</option>
          <option value="dead">{t("emails.showDead")}</option>
          <option value="failing">{t("emails.showFailing")}</option>
          <option value="all">{t("emails.showAll")}</option>
        </select>
      </div>
      <ErrorBanner error={error} onRetry={() => load()} />
      <LiveRegion>{notice ? <p class="notice notice-ok">{notice}</p> : null}</LiveRegion>
      {loading && !emails.length ? <Loading /> : null}
      {!loading && !emails.length && !error ? <p>{t("emails.empty")}</p> : null}
      {emails.length ? (
        <table class="table">
          <thead>
            <tr>
              <th scope="col">{t("col.recipient")}</th>
              <th scope="col">{t("col.template")}</th>
              <th scope="col">{t("col.state")}</th>
              <th scope="col">{t("col.attempts")}</th>
              <th scope="col">{t("col.lastError")}</th>
              <th scope="col">{t("col.created")}</th>
              <th scope="col">{t("col.actions")}</th>
            </tr>
          </thead>
          <tbody>
            {emails.map((e) => (
              <tr key={e.name}>
                <td data-label={t("col.recipient")}>
                  {e.recipient}
                  <br />
                  <Link href={`/${e.accessRequest}`} class="muted">
                    {t("col.request")}
                  </Link>
                </td>
                <td data-label={t("col.template")}>
                  {templateLabel(e.template)} ({e.locale})
                </td>
                <td data-label={t("col.state")}>
                  {isFailing(e) ? t("emailState.FAILING") : emailStateLabel(e.state)}
                  {e.delivery !== EmailDelivery.UNSPECIFIED ? `, ${deliveryLabel(e.delivery)}` : null}
                  {e.provider ? (
                    <>
                      <br />
                      <span class="muted">{t("emails.via", { provider: e.provider })}</span>
                    </>
                  ) : null}
                </td>
                <td data-label={t("col.attempts")}>{e.attempts}</td>
                <td data-label={t("col.lastError")} class="wrap">
                  {e.lastError}
                </td>
                <td data-label={t("col.created")}>{formatTime(e.createTime)}</td>
                <td data-label={t("col.actions")}>
                  {e.state === EmailState.DEAD ? (
                    <button type="button" class="button-secondary" aria-label={t("emails.retryOf", { recipient: e.recipient })} onClick={() => retry(e)}>
                      {t("emails.retry")}
                    </button>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {Object.keys(tokens).length ? (
        <p>
          <button type="button" class="button-secondary" disabled={loading} onClick={() => load(tokens)}>
            {t("app.loadMore")}
          </button>
        </p>
      ) : null}
    </section>
  );
}

function Preview() {
  const [template, setTemplate] = useState(EmailTemplate.APPLICANT_RECEIVED);
  const [locale, setLocale] = useState("en");
  const [userType, setUserType] = useState(UserType.EMPLOYEE);
  const [preview, setPreview] = useState<PreviewEmailResponse>();
  const [error, setError] = useState<UiError>();
  const [busy, setBusy] = useState(false);

  const render = async () => {
    setBusy(true);
    setError(undefined);
    try {
      setPreview(await api.emails.previewEmail({ template, locale, userType }, callOptions));
    } catch (err) {
      setError(describeError(err));
      setPreview(undefined);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <h2 id="h-preview">{t("emails.preview")}</h2>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          void render();
        }}
      >
        <div class="filter-grid">
          <div class="field">
            <label for="p-template">{t("emails.template")}</label>
            <select id="p-template" value={String(template)} onChange={(e) => setTemplate(Number(e.currentTarget.value))}>
              {TEMPLATES.map((tpl) => (
                <option key={tpl} value={String(tpl)}>
                  {templateLabel(tpl)}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="p-locale">{t("emails.locale")}</label>
            <select id="p-locale" value={locale} onChange={(e) => setLocale(e.currentTarget.value)}>
              <option value="en">English (en)</option>
              <option value="fr">Français (fr)</option>
            </select>
          </div>
          <div class="field">
            <label for="p-user-type">{t("emails.userType")}</label>
            <select id="p-user-type" value={String(userType)} onChange={(e) => setUserType(Number(e.currentTarget.value))}>
              {USER_TYPES.map((u) => (
                <option key={u} value={String(u)}>
                  {userTypeLabel(u)}
                </option>
              ))}
            </select>
          </div>
        </div>
        <div class="actions">
          <button type="submit" class="button-primary" disabled={busy}>
            {t("emails.render")}
          </button>
        </div>
      </form>
      <ErrorBanner error={error} onRetry={render} />
      {preview ? (
        <div class="preview">
          <p>
            <strong>{t("emails.subject")}</strong> {preview.subject}
          </p>
          <h3>{t("emails.html")}</h3>
          <iframe
            class="preview-frame"
            sandbox=""
            srcDoc={preview.html}
            title={t("emails.previewFrame", { subject: preview.subject })}
            referrerpolicy="no-referrer"
          />
          <h3>{t("emails.text")}</h3>
          <pre class="preview-text" tabIndex={0}>
            {preview.text}
          </pre>
        </div>
      ) : null}
    </section>
  );
}
