// GetStats as charts: requests per state, decision times against the SLA,
// overdue requests, automatic decisions and email outcomes of the window.
import { useCallback, useEffect, useState } from "preact/hooks";
import { AccessRequestState, type GetStatsResponse } from "@client/gen/sesame/v1/access_request_pb";
import { api, callOptions } from "../api";
import { describeError, type UiError } from "../errors";
import { durationMs, formatDuration, formatPercent, formatTime, stateLabel } from "../format";
import { t, type MessageKey } from "../i18n";
import { automaticShare } from "../stats";
import { BarChart, ErrorBanner, Loading, ScreenTitle } from "./common";

const WINDOWS = [1, 7, 30, 90, 366];

export function Stats() {
  const [days, setDays] = useState(30);
  const [stats, setStats] = useState<GetStatsResponse>();
  const [error, setError] = useState<UiError>();
  const [loading, setLoading] = useState(true);

  const load = useCallback(async () => {
    setLoading(true);
    setError(undefined);
    try {
      setStats(await api.requests.getStats({ windowSecs: BigInt(days * 86400) }, callOptions));
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
  const decided = Number(stats?.decidedCount ?? 0n);
  const automatic = Number(stats?.automaticDecidedCount ?? 0n);
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
          <section class="card">
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
          <section class="card">
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
          <section class="card">
            <h2 id="h-overdue">{t("stats.overdue")}</h2>
            <p class="big-number">{String(stats.overdueCount)}</p>
            <p class="muted">
              {t("stats.slaIs", { sla: formatDuration(slaMs) })}
            </p>
          </section>
          <section class="card">
            <h2 id="h-auto">{t("stats.automatic")}</h2>
            <p>{t("stats.automaticShare", { percent: formatPercent(automaticShare(stats)), count: decided })}</p>
            <BarChart
              id="automatic"
              title={t("stats.automatic")}
              bars={[
                { label: t("stats.auto"), value: automatic },
                { label: t("stats.manual"), value: Math.max(0, decided - automatic) },
              ]}
            />
          </section>
          <section class="card">
            <h2 id="h-emails-stats">{t("stats.emails")}</h2>
            <BarChart
              id="emails"
              title={t("stats.emails")}
              bars={[
                { label: t("stats.sent"), value: Number(stats.emailsSentCount), tone: "tone-approved" },
                { label: t("stats.retrying"), value: Number(stats.emailsRetryingCount), tone: "tone-pending" },
                { label: t("stats.dead"), value: Number(stats.emailsDeadCount), tone: "tone-rejected" },
              ]}
            />
            <p class="muted">{t("stats.retryingNote")}</p>
            {stats.deliveryRate !== undefined ? (
              <p id="delivery-rate">
                {t("stats.deliveryRate", {
                  percent: formatPercent(stats.deliveryRate),
                  count: String(stats.emailsTrackedCount),
                })}
              </p>
            ) : null}
          </section>
        </div>
      ) : null}
    </section>
  );
}
