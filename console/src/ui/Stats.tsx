// GetStats as charts, plus the share of automatic decisions and the email
// outcomes counted from the event log over the same window.
import { useCallback, useEffect, useState } from "preact/hooks";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccessRequestState, type GetStatsResponse } from "@client/gen/sesame/v1/access_request_pb";
import type { Event } from "@client/gen/sesame/v1/event_pb";
import { api, callOptions } from "../api";
import { describeError, type UiError } from "../errors";
import { durationMs, formatDuration, formatPercent, formatTime, stateLabel } from "../format";
import { t, type MessageKey } from "../i18n";
import { aggregateWindowEvents, automaticShare, WINDOW_EVENT_TYPES, type WindowCounts } from "../stats";
import { BarChart, ErrorBanner, Loading, ScreenTitle } from "./common";

const WINDOWS = [1, 7, 30, 90, 366];
const MAX_EVENT_PAGES = 20;
const EVENT_PAGE = 500;

export function Stats() {
  const [days, setDays] = useState(30);
  const [stats, setStats] = useState<GetStatsResponse>();
  const [counts, setCounts] = useState<{ counts: WindowCounts; partial: number }>();
  const [error, setError] = useState<UiError>();
  const [loading, setLoading] = useState(true);

  const load = useCallback(async () => {
    setLoading(true);
    setError(undefined);
    try {
      const windowSecs = BigInt(days * 86400);
      const res = await api.requests.getStats({ windowSecs }, callOptions);
      setStats(res);
      const start = res.windowStartTime ?? timestampFromDate(new Date(Date.now() - days * 86_400_000));
      const events: Event[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const page = await api.events.listEvents(
          { eventTypes: WINDOW_EVENT_TYPES, occurTimeStart: start, pageSize: EVENT_PAGE, pageToken },
          callOptions,
        );
        events.push(...page.events);
        pageToken = page.nextPageToken;
        pages++;
      } while (pageToken && pages < MAX_EVENT_PAGES);
      setCounts({ counts: aggregateWindowEvents(events), partial: pageToken ? events.length : 0 });
    } catch (err) {
      setError(describeError(err));
    } finally {
      setLoading(false);
    }
  }, [days]);

  useEffect(() => {
    void load();
  }, [load]);

  const slaMs = durationMs(stats?.reviewSla);
  return (
    <section>
      <ScreenTitle>{t("stats.title")}</ScreenTitle>
      <div class="field inline">
        <label for="stats-window">{t("stats.window")}</label>
        <select id="stats-window" value={String(days)} onChange={(e) => setDays(Number(e.currentTarget.value))}>
          {WINDOWS.map((d) => (
            <option key={d} value={String(d)}>
              {t(`stats.window.${d}` as MessageKey)}
            </option>
          ))}
        </select>
      </div>
      <ErrorBanner error={error} onRetry={load} />
      {loading ? <Loading /> : null}
      {stats ? (
        <div class="cards">
          <section class="card" aria-labelledby="h-by-state">
            <h2 id="h-by-state">{t("stats.byState")}</h2>
            <BarChart
              id="by-state"
              title={t("stats.byState")}
              bars={stats.stateCounts.map((c) => ({
                label: stateLabel(c.state),
                value: Number(c.count),
                tone: `tone-${(AccessRequestState[c.state] ?? "").toLowerCase()}`,
              }))}
            />
          </section>
          <section class="card" aria-labelledby="h-decision">
            <h2 id="h-decision">{t("stats.decisionTime")}</h2>
            <p>{t("stats.decided", { count: stats.decidedCount, time: formatTime(stats.windowStartTime) })}</p>
            {stats.medianDecisionTime ? (
              <BarChart
                id="decision-time"
                title={t("stats.decisionTime")}
                bars={[
                  { label: t("stats.median"), value: durationMs(stats.medianDecisionTime), display: formatDuration(durationMs(stats.medianDecisionTime)) },
                  { label: t("stats.p95"), value: durationMs(stats.p95DecisionTime), display: formatDuration(durationMs(stats.p95DecisionTime)) },
                  { label: t("stats.sla"), value: slaMs, display: formatDuration(slaMs), tone: "tone-sla" },
                ]}
              />
            ) : (
              <p>{t("stats.noDecision")}</p>
            )}
          </section>
          <section class="card" aria-labelledby="h-overdue">
            <h2 id="h-overdue">{t("stats.overdue")}</h2>
            <p class="big-number">{String(stats.overdueCount)}</p>
            <p class="muted">
              {t("stats.sla")}: {formatDuration(slaMs)}
            </p>
          </section>
          {counts ? (
            <>
              <section class="card" aria-labelledby="h-auto">
                <h2 id="h-auto">{t("stats.automatic")}</h2>
                <p>
                  {t("stats.automaticShare", {
                    percent: formatPercent(automaticShare(counts.counts)),
                    count: counts.counts.decisions,
                  })}
                </p>
                <BarChart
                  id="automatic"
                  title={t("stats.automatic")}
                  bars={[
                    { label: t("stats.auto"), value: counts.counts.automaticDecisions },
                    { label: t("stats.manual"), value: counts.counts.decisions - counts.counts.automaticDecisions },
                  ]}
                />
              </section>
              <section class="card" aria-labelledby="h-emails-stats">
                <h2 id="h-emails-stats">{t("stats.emails")}</h2>
                <BarChart
                  id="emails"
                  title={t("stats.emails")}
                  bars={[
                    { label: t("stats.sent"), value: counts.counts.emailsSent, tone: "tone-approved" },
                    { label: t("stats.failed"), value: counts.counts.emailsFailed, tone: "tone-pending" },
                    { label: t("stats.dead"), value: counts.counts.emailsDead, tone: "tone-rejected" },
                  ]}
                />
              </section>
              {counts.partial ? <p class="muted">{t("stats.partial", { count: counts.partial })}</p> : null}
            </>
          ) : null}
        </div>
      ) : null}
    </section>
  );
}
