// The audit trail: verify the hash chain, browse the event log with filters
// (kept in the URL), export the filtered events as CSV.
import { useCallback, useEffect, useMemo, useState } from "preact/hooks";
import { EventType, type Event, type VerifyAuditChainResponse } from "@client/gen/sesame/v1/event_pb";
import { api, callOptions, download } from "../api";
import { eventsToCsv } from "../csv";
import { describeError, type UiError } from "../errors";
import { eventFilterFromSearch, eventFilterToSearch, eventsRequest, type EventFilter } from "../filters";
import { eventLabel, formatTime, stateLabel } from "../format";
import { t } from "../i18n";
import { navigate, useRoute, withQuery } from "../router";
import { ErrorBanner, Field, Link, LiveRegion, Loading, ScreenTitle } from "./common";

const EVENT_TYPES = (Object.values(EventType).filter((v) => typeof v === "number") as EventType[]).filter(
  (v) => v !== EventType.UNSPECIFIED,
);
const EXPORT_MAX_PAGES = 100;

export function Audit() {
  return (
    <section>
      <ScreenTitle>{t("audit.title")}</ScreenTitle>
      <Verify />
      <EventLog />
    </section>
  );
}

function Verify() {
  const [start, setStart] = useState("");
  const [end, setEnd] = useState("");
  const [result, setResult] = useState<VerifyAuditChainResponse>();
  const [error, setError] = useState<UiError>();
  const [busy, setBusy] = useState(false);

  const verify = async (from?: bigint) => {
    setBusy(true);
    setError(undefined);
    try {
      const startSequence = from ?? (start.trim() ? BigInt(start.trim()) : 0n);
      const endSequence = end.trim() ? BigInt(end.trim()) : 0n;
      setResult(await api.events.verifyAuditChain({ startSequence, endSequence }, { timeoutMs: 120_000 }));
      if (from !== undefined) setStart(String(from));
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <h2 id="h-verify">{t("audit.verify")}</h2>
      <form
        class="filters"
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          void verify();
        }}
      >
        <div class="filter-grid">
          <Field id="v-start" label={t("audit.start")} error={error?.fields.start_sequence}>
            {(d, inv) => (
              <input id="v-start" type="text" inputMode="numeric" pattern="[0-9]*" value={start} aria-describedby={d} aria-invalid={inv} onInput={(e) => setStart(e.currentTarget.value.replace(/\D/g, ""))} />
            )}
          </Field>
          <Field id="v-end" label={t("audit.end")} error={error?.fields.end_sequence}>
            {(d, inv) => (
              <input id="v-end" type="text" inputMode="numeric" pattern="[0-9]*" value={end} aria-describedby={d} aria-invalid={inv} onInput={(e) => setEnd(e.currentTarget.value.replace(/\D/g, ""))} />
            )}
          </Field>
        </div>
        <div class="actions">
          <button type="submit" class="button-primary" disabled={busy}>
            {t("audit.verifyButton")}
          </button>
        </div>
      </form>
      <ErrorBanner error={error} onRetry={() => verify()} />
      <LiveRegion>
        {busy ? <p>{t("app.loading")}</p> : null}
        {result && !busy ? (
          <div class={result.intact ? "notice notice-ok" : "banner banner-error"}>
            <p>
              {result.intact && result.verifiedEvents === 0n
                ? t("audit.intactEmpty")
                : result.intact
                ? t("audit.intact", { count: result.verifiedEvents, first: result.firstSequence, last: result.lastVerifiedSequence })
                : t("audit.broken", { sequence: result.brokenSequence, problem: result.problem, count: result.verifiedEvents })}
            </p>
            {result.nextStartSequence > 0n ? (
              <p>
                {t("audit.more", { sequence: result.nextStartSequence })}{" "}
                <button type="button" class="button-secondary" onClick={() => verify(result.nextStartSequence)}>
                  {t("audit.continue", { sequence: result.nextStartSequence })}
                </button>
              </p>
            ) : null}
          </div>
        ) : null}
      </LiveRegion>
    </section>
  );
}

function EventLog() {
  const route = useRoute();
  const filter = useMemo(() => eventFilterFromSearch(route.search), [route.query]);
  const [events, setEvents] = useState<Event[]>([]);
  const [token, setToken] = useState("");
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<UiError>();
  const [exportState, setExportState] = useState("");

  const load = useCallback(
    async (pageToken = "") => {
      setLoading(true);
      setError(undefined);
      try {
        const res = await api.events.listEvents(eventsRequest(filter, pageToken), callOptions);
        setEvents((prev) => (pageToken ? [...prev, ...res.events] : res.events));
        setToken(res.nextPageToken);
      } catch (err) {
        setError(describeError(err));
      } finally {
        setLoading(false);
      }
    },
    [filter],
  );

  useEffect(() => {
    void load();
  }, [load]);

  const exportCsv = async () => {
    setError(undefined);
    const all: Event[] = [];
    let pageToken = "";
    try {
      for (let i = 0; i < EXPORT_MAX_PAGES; i++) {
        const res = await api.events.listEvents(eventsRequest(filter, pageToken, 500), callOptions);
        all.push(...res.events);
        setExportState(t("audit.exporting", { count: all.length }));
        pageToken = res.nextPageToken;
        if (!pageToken) break;
      }
      download("sesame-events.csv", eventsToCsv(all), "text/csv;charset=utf-8");
      setExportState(t("audit.exported", { count: all.length }));
    } catch (err) {
      setExportState("");
      setError(describeError(err));
    }
  };

  return (
    <section>
      <h2 id="h-log">{t("audit.log")}</h2>
      <EventFilterForm key={route.query} filter={filter} onApply={(f) => navigate(withQuery("/audit", eventFilterToSearch(f)))} error={error} />
      <div class="actions">
        <button type="button" class="button-secondary" onClick={exportCsv}>
          {t("audit.export")}
        </button>
      </div>
      <LiveRegion>{exportState}</LiveRegion>
      <ErrorBanner error={error} onRetry={() => load()} />
      {loading && !events.length ? <Loading /> : null}
      {!loading && !events.length && !error ? <p>{t("audit.empty")}</p> : null}
      {events.length ? (
        <table class="table">
          <thead>
            <tr>
              <th scope="col">{t("col.sequence")}</th>
              <th scope="col">{t("col.time")}</th>
              <th scope="col">{t("col.event")}</th>
              <th scope="col">{t("col.actor")}</th>
              <th scope="col">{t("col.request")}</th>
              <th scope="col">{t("col.state")}</th>
              <th scope="col">{t("col.reason")}</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e) => (
              <tr key={String(e.sequence)}>
                <td data-label={t("col.sequence")}>{String(e.sequence)}</td>
                <td data-label={t("col.time")}>{formatTime(e.occurTime)}</td>
                <td data-label={t("col.event")}>
                  {eventLabel(e.type)}
                  {e.automatic ? ` (${t("detail.automatic").toLowerCase()})` : ""}
                </td>
                <td data-label={t("col.actor")}>{e.actor}</td>
                <td data-label={t("col.request")}>
                  {e.accessRequest ? (
                    <Link href={`/${e.accessRequest}`}>
                      <code>{e.accessRequest.replace("accessRequests/", "").slice(0, 8)}</code>
                      <span class="visually-hidden"> {e.accessRequest}</span>
                    </Link>
                  ) : null}
                </td>
                <td data-label={t("col.state")}>{stateLabel(e.state)}</td>
                <td data-label={t("col.reason")} class="wrap">
                  {e.reason}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {token ? (
        <p>
          <button type="button" class="button-secondary" disabled={loading} onClick={() => load(token)}>
            {t("app.loadMore")}
          </button>
        </p>
      ) : null}
    </section>
  );
}

function EventFilterForm({ filter, onApply, error }: { filter: EventFilter; onApply: (f: EventFilter) => void; error?: UiError }) {
  const [draft, setDraft] = useState(filter);
  const set = (patch: Partial<EventFilter>) => setDraft((d) => ({ ...d, ...patch }));
  return (
    <form
      class="filters"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        onApply(draft);
      }}
    >
      <div class="filter-grid">
        <Field id="e-request" label={t("audit.request")} error={error?.fields.access_request}>
          {(d, inv) => <input id="e-request" type="text" value={draft.accessRequest} aria-describedby={d} aria-invalid={inv} onInput={(e) => set({ accessRequest: e.currentTarget.value })} />}
        </Field>
        <div class="field">
          <label for="e-type">{t("audit.type")}</label>
          <select id="e-type" value={String(draft.type)} onChange={(e) => set({ type: Number(e.currentTarget.value) })}>
            <option value={String(EventType.UNSPECIFIED)}>{t("audit.anyType")}</option>
            {EVENT_TYPES.map((ty) => (
              <option key={ty} value={String(ty)}>
                {eventLabel(ty)}
              </option>
            ))}
          </select>
        </div>
        <Field id="e-actor" label={t("audit.actor")} error={error?.fields.actor}>
          {(d, inv) => <input id="e-actor" type="text" value={draft.actor} aria-describedby={d} aria-invalid={inv} onInput={(e) => set({ actor: e.currentTarget.value })} />}
        </Field>
        <div class="field">
          <label for="e-from">{t("audit.from")}</label>
          <input id="e-from" type="date" value={draft.from} onInput={(e) => set({ from: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="e-to">{t("audit.to")}</label>
          <input id="e-to" type="date" value={draft.to} onInput={(e) => set({ to: e.currentTarget.value })} />
        </div>
      </div>
      <div class="actions">
        <button type="submit" class="button-primary">
          {t("audit.search")}
        </button>
      </div>
    </form>
  );
}
