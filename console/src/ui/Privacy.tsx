// Data subjects' rights: export, consent records, erasure behind a typed
// confirmation.
import { useState } from "preact/hooks";
import type { ConsentRecord, EraseSubjectResponse } from "@client/gen/sesame/v1/privacy_pb";
import { api, callOptions, download } from "../api";
import { describeError, type UiError } from "../errors";
import { formatTime } from "../format";
import { t } from "../i18n";
import { ErrorBanner, Field, Link, LiveRegion, ScreenTitle } from "./common";

/** Whether the confirmation names the same subject (trimmed, ignoring case, as the server compares). */
export function sameSubject(a: string, b: string): boolean {
  return a.trim() !== "" && a.trim().toLowerCase() === b.trim().toLowerCase();
}

/** A file name for an export that does not put the address itself in the name. */
export function exportFileName(now: Date): string {
  return `sesame-subject-export-${now.toISOString().slice(0, 19).replace(/[:T]/g, "-")}.json`;
}

export function Privacy() {
  const [email, setEmail] = useState("");
  const [emailError, setEmailError] = useState<string>();
  const [error, setError] = useState<UiError>();
  const [notice, setNotice] = useState("");
  const [consents, setConsents] = useState<ConsentRecord[]>();
  const [consentToken, setConsentToken] = useState("");
  const [busy, setBusy] = useState(false);

  const needEmail = (): boolean => {
    if (!email.trim()) {
      setEmailError(t("privacy.emailRequired"));
      document.getElementById("subject-email")?.focus();
      return false;
    }
    setEmailError(undefined);
    return true;
  };

  const run = async (work: () => Promise<void>) => {
    setBusy(true);
    setError(undefined);
    setNotice("");
    try {
      await work();
    } catch (err) {
      const ui = describeError(err);
      setError(ui);
      if (ui.fields.email) setEmailError(ui.fields.email);
    } finally {
      setBusy(false);
    }
  };

  const exportData = () =>
    needEmail() &&
    run(async () => {
      const res = await api.privacy.exportSubjectData({ email: email.trim() }, callOptions);
      download(exportFileName(new Date()), res.json, "application/json");
      setNotice(t("privacy.exported", { count: res.accessRequestCount }) + (res.truncated ? ` ${t("privacy.truncated")}` : ""));
    });

  const listConsents = (pageToken = "") =>
    needEmail() &&
    run(async () => {
      const res = await api.privacy.listConsentRecords({ email: email.trim(), pageSize: 100, pageToken }, callOptions);
      setConsents((prev) => (pageToken && prev ? [...prev, ...res.consentRecords] : res.consentRecords));
      setConsentToken(res.nextPageToken);
    });

  return (
    <section>
      <ScreenTitle>{t("privacy.title")}</ScreenTitle>
      <section>
        <h2 id="h-subject">{t("privacy.subject")}</h2>
        <Field id="subject-email" label={t("privacy.email")} error={emailError}>
          {(d, inv) => (
            <input
              id="subject-email"
              type="email"
              autoComplete="off"
              value={email}
              aria-describedby={d}
              aria-invalid={inv}
              onInput={(e) => {
                setEmail(e.currentTarget.value);
                setConsents(undefined);
              }}
            />
          )}
        </Field>
        <div class="actions">
          <button type="button" class="button-primary" disabled={busy} onClick={exportData}>
            {t("privacy.export")}
          </button>
          <button type="button" class="button-secondary" disabled={busy} onClick={() => listConsents()}>
            {t("privacy.consents")}
          </button>
        </div>
        <ErrorBanner error={error} />
        <LiveRegion>{notice ? <p class="notice notice-ok">{notice}</p> : null}</LiveRegion>
      </section>

      {consents ? (
        <section>
          <h2 id="h-consents">{t("privacy.consentsTitle")}</h2>
          {consents.length ? (
            <table class="table">
              <thead>
                <tr>
                  <th scope="col">{t("col.request")}</th>
                  <th scope="col">{t("col.version")}</th>
                  <th scope="col">{t("col.purposes")}</th>
                  <th scope="col">{t("col.granted")}</th>
                </tr>
              </thead>
              <tbody>
                {consents.map((c) => (
                  <tr key={c.accessRequest}>
                    <td data-label={t("col.request")}>
                      <Link href={`/${c.accessRequest}`}>
                        <code>{c.accessRequest}</code>
                      </Link>
                    </td>
                    <td data-label={t("col.version")}>{c.version}</td>
                    <td data-label={t("col.purposes")}>{c.purposes.join(", ")}</td>
                    <td data-label={t("col.granted")}>{formatTime(c.grantTime)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p>{t("privacy.noConsents")}</p>
          )}
          {consentToken ? (
            <p>
              <button type="button" class="button-secondary" disabled={busy} onClick={() => listConsents(consentToken)}>
                {t("app.loadMore")}
              </button>
            </p>
          ) : null}
        </section>
      ) : null}

      <Erase email={email} />
    </section>
  );
}

function Erase({ email }: { email: string }) {
  const [reason, setReason] = useState("");
  const [confirm, setConfirm] = useState("");
  const [error, setError] = useState<UiError>();
  const [result, setResult] = useState<EraseSubjectResponse>();
  const [busy, setBusy] = useState(false);
  const matches = sameSubject(email, confirm);
  const mismatch = confirm.trim() !== "" && !matches;

  return (
    <section class="danger-zone">
      <h2 id="h-erase">{t("privacy.erase")}</h2>
      <p>{t("privacy.eraseIntro")}</p>
      <form
        noValidate
        onSubmit={async (e) => {
          e.preventDefault();
          if (!matches) return;
          setBusy(true);
          setError(undefined);
          setResult(undefined);
          try {
            setResult(await api.privacy.eraseSubject({ email: email.trim(), reason: reason.trim() }, callOptions));
            setConfirm("");
            setReason("");
          } catch (err) {
            setError(describeError(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <Field id="erase-reason" label={t("privacy.eraseReason")} error={error?.fields.reason}>
          {(d, inv) => (
            <input id="erase-reason" type="text" maxLength={1000} value={reason} aria-describedby={d} aria-invalid={inv} onInput={(e) => setReason(e.currentTarget.value)} />
          )}
        </Field>
        <Field id="erase-confirm" label={t("privacy.confirm")} error={mismatch ? t("privacy.confirmMismatch") : error?.fields.email}>
          {(d, inv) => (
            <input id="erase-confirm" type="email" autoComplete="off" value={confirm} aria-describedby={d} aria-invalid={inv} onInput={(e) => setConfirm(e.currentTarget.value)} />
          )}
        </Field>
        {error && !Object.keys(error.fields).length ? <ErrorBanner error={error} /> : null}
        <button type="submit" class="button-danger" disabled={!matches || busy}>
          {t("privacy.eraseButton")}
        </button>
      </form>
      <LiveRegion>
        {result ? (
          <p class="notice notice-ok">
            {t("privacy.erased", {
              requests: result.erasedAccessRequests,
              cancelled: result.cancelledAccessRequests,
              emails: result.droppedEmails,
              key: result.keyDeleted ? t("app.yes") : t("app.no"),
            })}
          </p>
        ) : null}
      </LiveRegion>
    </section>
  );
}
