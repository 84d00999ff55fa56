// The review queue: filters in the URL, pages, SLA badges, live updates and
// bulk decisions.
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccessRequestState, UserType, type AccessRequest } from "@client/gen/sesame/v1/access_request_pb";
import { EventType, ListEventsRequestSchema, type Event } from "@client/gen/sesame/v1/event_pb";
import { api, callOptions } from "../api";
import { runBulk, summarizeBulk, type BulkResult } from "../bulk";
import { describeError, type UiError } from "../errors";
import {
  DEFAULT_QUEUE_FILTER,
  queueFilterFromSearch,
  queueFilterToSearch,
  queueRequest,
  type QueueFilter,
} from "../filters";
import { formatTime, stateLabel, timestampMs, userTypeLabel } from "../format";
import { t } from "../i18n";
import { useLiveEvents } from "../live";
import { appendPage, mergeRow } from "../queue";
import { navigate, useRoute, withQuery } from "../router";
import { isAdmin, useSession } from "../session";
import { slaBadge, type SlaFlags } from "../sla";
import { ErrorBanner, Field, Link, LiveRegion, Loading, SlaBadgeView, StateBadge, useInterval } from "./common";

const STATES = [
  AccessRequestState.PENDING,
  AccessRequestState.APPROVED,
  AccessRequestState.REJECTED,
  AccessRequestState.CANCELLED,
  AccessRequestState.EXPIRED,
];
const USER_TYPES = [UserType.EMPLOYEE, UserType.PARTNER, UserType.CUSTOMER, UserType.CONTRACTOR];

/** Events after which a request is read again for the queue. */
const REQUEST_EVENTS = new Set([
  EventType.REQUEST_SUBMITTED,
  EventType.REQUEST_APPROVED,
  EventType.REQUEST_REJECTED,
  EventType.REQUEST_CANCELLED,
  EventType.REQUEST_EXPIRED,
  EventType.REQUEST_APPROVAL_RECORDED,
  EventType.REQUEST_ERASED,
]);

export function Queue() {
  const route = useRoute();
  const session = useSession();
  const admin = isAdmin(session);
  const filter = useMemo(() => queueFilterFromSearch(route.search), [route.query]);

  const [rows, setRows] = useState<AccessRequest[]>([]);
  const [nextPageToken, setNextPageToken] = useState("");
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<UiError>();
  const [flags, setFlags] = useState<Record<string, SlaFlags>>({});
  const [now, setNow] = useState(Date.now());
  const [announce, setAnnounce] = useState("");
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const viewRef = useRef({ rows, nextPageToken, filter });
  viewRef.current = { rows, nextPageToken, filter };

  useInterval(() => setNow(Date.now()), 30_000);

  const loadFlags = useCallback(async (list: AccessRequest[]) => {
    const pending = list.filter((r) => r.state === AccessRequestState.PENDING);
    if (!pending.length) return;
    const oldest = Math.min(...pending.map((r) => timestampMs(r.createTime) ?? Date.now()));
    try {
      const res = await api.events.listEvents(
        create(ListEventsRequestSchema, {
          pageSize: 500,
          eventTypes: [EventType.REQUEST_REMINDED, EventType.REQUEST_ESCALATED],
          occurTimeStart: timestampFromDate(new Date(oldest)),
        }),
        callOptions,
      );
      setFlags((prev) => {
        const next = { ...prev };
        for (const e of res.events) addFlag(next, e);
        return next;
      });
    } catch {
      // The badges still show the age against the SLA.
    }
  }, []);

  const load = useCallback(async () => {
    setLoading(true);
    setError(undefined);
    try {
      const res = await api.requests.listAccessRequests(queueRequest(filter), callOptions);
      setRows(res.accessRequests);
      setNextPageToken(res.nextPageToken);
      setSelected(new Set());
      void loadFlags(res.accessRequests);
    } catch (err) {
      setError(describeError(err));
      setRows([]);
      setNextPageToken("");
    } finally {
      setLoading(false);
    }
  }, [filter, loadFlags]);

  useEffect(() => {
    void load();
  }, [load]);

  const loadMore = async () => {
    setLoading(true);
    setError(undefined);
    try {
      const res = await api.requests.listAccessRequests(queueRequest(filter, nextPageToken), callOptions);
      setRows((prev) => appendPage(prev, res.accessRequests));
      setNextPageToken(res.nextPageToken);
      void loadFlags(res.accessRequests);
    } catch (err) {
      setError(describeError(err));
    } finally {
      setLoading(false);
    }
  };

  const refreshRow = useCallback(async (name: string, cause?: Event) => {
    try {
      const res = await api.requests.getAccessRequest({ name }, callOptions);
      const request = res.accessRequest;
      if (!request) return;
      const view = viewRef.current;
      const wasShown = view.rows.some((r) => r.name === name);
      const merged = mergeRow(view, request, view.filter);
      const isShown = merged.some((r) => r.name === name);
      setRows(merged);
      if (!wasShown && isShown && cause?.type === EventType.REQUEST_SUBMITTED) {
        setAnnounce(t("queue.newArrived", { email: request.applicant?.email ?? name }));
      } else if (wasShown && !isShown) {
        setAnnounce(t("queue.left", { state: stateLabel(request.state) }));
        setSelected((prev) => {
          const next = new Set(prev);
          next.delete(name);
          return next;
        });
      }
    } catch (err) {
      const ui = describeError(err);
      if (ui.code === Code.NotFound) {
        setRows((prev) => prev.filter((r) => r.name !== name));
      }
    }
  }, []);

  useLiveEvents(
    (e) => {
      if (e.type === EventType.REQUEST_REMINDED || e.type === EventType.REQUEST_ESCALATED) {
        setFlags((prev) => addFlag({ ...prev }, e));
        return;
      }
      const shown = viewRef.current.rows.some((r) => r.name === e.accessRequest);
      if (e.accessRequest && (shown || REQUEST_EVENTS.has(e.type))) void refreshRow(e.accessRequest, e);
    },
    () => void load(),
  );

  const applyFilter = (f: QueueFilter) => navigate(withQuery("/", queueFilterToSearch(f)));

  const selectable = admin ? rows.filter((r) => r.state === AccessRequestState.PENDING) : [];
  const allSelected = selectable.length > 0 && selectable.every((r) => selected.has(r.name));

  return (
    <section>
      <ScreenTitleWithId />
      <FilterForm key={route.query} filter={filter} onApply={applyFilter} />
      <ErrorBanner error={error} onRetry={load} />
      <LiveRegion>{announce}</LiveRegion>
      {admin ? (
        <BulkBar
          rows={rows.filter((r) => selected.has(r.name))}
          onDone={(results) => {
            for (const r of results) {
              void refreshRow(r.name);
            }
            setSelected(new Set(results.filter((r) => !r.ok).map((r) => r.name)));
          }}
        />
      ) : null}
      <p class="count">{t("queue.count", { count: rows.length })}</p>
      {loading && !rows.length ? <Loading /> : null}
      {!loading && !error && !rows.length ? <p>{t("queue.empty")}</p> : null}
      {rows.length ? (
        <table class="table queue-table">
          <caption class="visually-hidden">{t("queue.title")}</caption>
          <thead>
            <tr>
              {admin ? (
                <th scope="col">
                  <input
                    type="checkbox"
                    id="select-all"
                    aria-label={t("queue.selectAll")}
                    checked={allSelected}
                    disabled={!selectable.length}
                    onChange={() => setSelected(allSelected ? new Set() : new Set(selectable.map((r) => r.name)))}
                  />
                </th>
              ) : null}
              <th scope="col">{t("queue.col.applicant")}</th>
              <th scope="col">{t("queue.col.resource")}</th>
              <th scope="col">{t("queue.col.userType")}</th>
              <th scope="col">{t("queue.col.created")}</th>
              <th scope="col">{t("queue.col.state")}</th>
              <th scope="col">{t("queue.col.sla")}</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => {
              const email = r.applicant?.email ?? "";
              const label = email || r.name;
              const created = timestampMs(r.createTime) ?? now;
              return (
                <tr key={r.name}>
                  {admin ? (
                    <td data-label={t("queue.col.select")}>
                      <input
                        type="checkbox"
                        aria-label={t("queue.selectRow", { email: label })}
                        checked={selected.has(r.name)}
                        disabled={r.state !== AccessRequestState.PENDING}
                        onChange={() =>
                          setSelected((prev) => {
                            const next = new Set(prev);
                            if (next.has(r.name)) next.delete(r.name);
                            else next.add(r.name);
                            return next;
                          })
                        }
                      />
                    </td>
                  ) : null}
                  <td data-label={t("queue.col.applicant")}>
                    <Link href={`/${r.name}`}>
                      {r.applicant?.fullName || label}
                    </Link>
                    <br />
                    <span class="muted">{email}</span>
                  </td>
                  <td data-label={t("queue.col.resource")}>{r.resource}</td>
                  <td data-label={t("queue.col.userType")}>{userTypeLabel(r.userType)}</td>
                  <td data-label={t("queue.col.created")}>{formatTime(r.createTime)}</td>
                  <td data-label={t("queue.col.state")}>
                    <StateBadge label={stateLabel(r.state)} state={AccessRequestState[r.state] ?? "unspecified"} />
                  </td>
                  <td data-label={t("queue.col.sla")}>
                    {r.state === AccessRequestState.PENDING ? (
                      <SlaBadgeView badge={slaBadge(created, now, session.slaMs, flags[r.name])} slaMs={session.slaMs} />
                    ) : (
                      ""
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : null}
      {nextPageToken ? (
        <p>
          <button type="button" class="button-secondary" onClick={loadMore} disabled={loading}>
            {t("app.loadMore")}
          </button>
        </p>
      ) : null}
    </section>
  );
}

function ScreenTitleWithId() {
  return (
    <h1 id="queue-title" tabIndex={-1} class="screen-title">
      {t("queue.title")}
    </h1>
  );
}

function addFlag(flags: Record<string, SlaFlags>, e: Event): Record<string, SlaFlags> {
  const prev = flags[e.accessRequest] ?? {};
  flags[e.accessRequest] =
    e.type === EventType.REQUEST_ESCALATED ? { ...prev, escalated: true } : { ...prev, reminded: true };
  return flags;
}

function FilterForm({ filter, onApply }: { filter: QueueFilter; onApply: (f: QueueFilter) => void }) {
  const [draft, setDraft] = useState(filter);
  const set = (patch: Partial<QueueFilter>) => setDraft((d) => ({ ...d, ...patch }));
  return (
    <form
      class="filters"
      aria-label={t("queue.filters")}
      onSubmit={(e) => {
        e.preventDefault();
        onApply(draft);
      }}
    >
      <div class="filter-grid">
        <div class="field">
          <label for="f-state">{t("queue.state")}</label>
          <select id="f-state" value={String(draft.state)} onChange={(e) => set({ state: Number(e.currentTarget.value) })}>
            <option value={String(AccessRequestState.UNSPECIFIED)}>{t("state.any")}</option>
            {STATES.map((s) => (
              <option key={s} value={String(s)}>
                {stateLabel(s)}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="f-user-type">{t("queue.userType")}</label>
          <select id="f-user-type" value={String(draft.userType)} onChange={(e) => set({ userType: Number(e.currentTarget.value) })}>
            <option value={String(UserType.UNSPECIFIED)}>{t("userType.any")}</option>
            {USER_TYPES.map((u) => (
              <option key={u} value={String(u)}>
                {userTypeLabel(u)}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="f-resource">{t("queue.resource")}</label>
          <input id="f-resource" type="text" value={draft.resource} maxLength={200} onInput={(e) => set({ resource: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="f-email">{t("queue.email")}</label>
          <input id="f-email" type="email" value={draft.email} maxLength={254} onInput={(e) => set({ email: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="f-from">{t("queue.from")}</label>
          <input id="f-from" type="date" value={draft.from} onInput={(e) => set({ from: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="f-to">{t("queue.to")}</label>
          <input id="f-to" type="date" value={draft.to} onInput={(e) => set({ to: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="f-order">{t("queue.order")}</label>
          <select id="f-order" value={draft.order} onChange={(e) => set({ order: e.currentTarget.value === "desc" ? "desc" : "asc" })}>
            <option value="asc">{t("queue.orderAsc")}</option>
            <option value="desc">{t("queue.orderDesc")}</option>
          </select>
        </div>
      </div>
      <div class="actions">
        <button type="submit" class="button-primary">
          {t("queue.apply")}
        </button>
        <button type="button" class="button-secondary" onClick={() => onApply(DEFAULT_QUEUE_FILTER)}>
          {t("queue.reset")}
        </button>
      </div>
    </form>
  );
}

type Decided = { request?: AccessRequest };

function BulkBar({ rows, onDone }: { rows: AccessRequest[]; onDone: (results: BulkResult<Decided>[]) => void }) {
  const [note, setNote] = useState("");
  const [noteError, setNoteError] = useState<string>();
  const [running, setRunning] = useState<{ done: number; total: number }>();
  const [results, setResults] = useState<BulkResult<Decided>[]>([]);

  const run = async (action: "approve" | "reject") => {
    if (action === "reject" && !note.trim()) {
      setNoteError(t("bulk.reasonRequired"));
      document.getElementById("bulk-note")?.focus();
      return;
    }
    setNoteError(undefined);
    const items = rows.map((r) => ({ name: r.name, etag: r.etag, label: r.applicant?.email || r.name }));
    setRunning({ done: 0, total: items.length });
    setResults([]);
    const out = await runBulk<Decided>(
      items,
      async (item) => {
        if (action === "approve") {
          const res = await api.requests.approveAccessRequest({ name: item.name, etag: item.etag, note: note.trim() }, callOptions);
          return { request: res.accessRequest };
        }
        const res = await api.requests.rejectAccessRequest({ name: item.name, etag: item.etag, reason: note.trim() }, callOptions);
        return { request: res.accessRequest };
      },
      { concurrency: 4, onProgress: (done, total) => setRunning({ done, total }) },
    );
    setRunning(undefined);
    setResults(out);
    if (out.some((r) => r.ok)) setNote("");
    onDone(out);
  };

  const summary = results.length ? summarizeBulk(results) : undefined;
  return (
    <section class="bulk">
      <h2 id="bulk-title">
        {t("bulk.title")} <span class="muted">({t("bulk.selected", { count: rows.length })})</span>
      </h2>
      <Field id="bulk-note" label={t("bulk.note")} error={noteError}>
        {(describedBy, invalid) => (
          <textarea
            id="bulk-note"
            rows={2}
            maxLength={1000}
            value={note}
            aria-describedby={describedBy}
            aria-invalid={invalid}
            onInput={(e) => setNote(e.currentTarget.value)}
          />
        )}
      </Field>
      <div class="actions">
        <button type="button" class="button-primary" disabled={!rows.length || !!running} onClick={() => run("approve")}>
          {t("bulk.approve")}
        </button>
        <button type="button" class="button-danger" disabled={!rows.length || !!running} onClick={() => run("reject")}>
          {t("bulk.reject")}
        </button>
      </div>
      <div aria-live="polite" role="status" class="live-region">
        {running ? <p>{t("bulk.running", { done: running.done, total: running.total })}</p> : null}
        {summary ? <p class={summary.failed ? "notice notice-warn" : "notice notice-ok"}>{t("bulk.summary", { ok: summary.ok, failed: summary.failed })}</p> : null}
      </div>
      {results.length ? (
        <ul class="bulk-results">
          {results.map((r) => (
            <li key={r.name} class={r.ok ? "ok" : "failed"}>
              {r.ok
                ? t("bulk.rowOk", { email: r.label, state: r.value?.request ? stateLabel(r.value.request.state) : "" })
                : t("bulk.rowFailed", { email: r.label, message: r.message ?? "" })}
            </li>
          ))}
        </ul>
      ) : null}
    </section>
  );
}

