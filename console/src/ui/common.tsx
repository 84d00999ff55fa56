// Small building blocks shared by the screens.
import type { ComponentChildren, JSX } from "preact";
import { useEffect, useRef } from "preact/hooks";
import { Code } from "@connectrpc/connect";
import type { UiError } from "../errors";
import { t } from "../i18n";
import { navigate } from "../router";
import type { SlaBadge } from "../sla";
import { formatDuration } from "../format";
import { barWidths } from "../stats";

/** An in-app link: a real `<a href>` that navigates without reloading. */
export function Link(props: JSX.HTMLAttributes<HTMLAnchorElement> & { href: string }) {
  const { href, onClick, ...rest } = props;
  return (
    <a
      href={href}
      onClick={(e) => {
        if (onClick) (onClick as (ev: MouseEvent) => void)(e);
        if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(href);
      }}
      {...rest}
    />
  );
}

/** A screen's heading, focused after navigation so screen readers announce it. */
export function ScreenTitle({ children }: { children: ComponentChildren }) {
  return (
    <h1 tabIndex={-1} class="screen-title">
      {children}
    </h1>
  );
}

/** An error in plain words; UNAVAILABLE gets a Retry button. */
export function ErrorBanner({ error, onRetry }: { error: UiError | undefined; onRetry?: () => void }) {
  if (!error) return null;
  return (
    <div class={error.unavailable ? "banner banner-warn" : "banner banner-error"} role="alert">
      <span>{error.message}</span>
      {onRetry && (error.unavailable || error.code === Code.DeadlineExceeded) ? (
        <button type="button" class="button-secondary" onClick={onRetry}>
          {t("app.retry")}
        </button>
      ) : null}
    </div>
  );
}

/** A status message announced politely (results of actions). */
export function Notice({ children, tone = "ok" }: { children: ComponentChildren; tone?: "ok" | "info" }) {
  if (!children) return null;
  return <p class={`notice notice-${tone}`}>{children}</p>;
}

/** Holds announcements for screen readers; always rendered so updates are read. */
export function LiveRegion({ children, id }: { children: ComponentChildren; id?: string }) {
  return (
    <div id={id} aria-live="polite" role="status" class="live-region">
      {children}
    </div>
  );
}

/** A labelled form field with its error next to it. */
export function Field(props: {
  id: string;
  label: string;
  error?: string;
  hint?: string;
  children: (describedBy: string | undefined, invalid: boolean) => ComponentChildren;
}) {
  const errorId = `${props.id}-error`;
  const hintId = `${props.id}-hint`;
  const describedBy = [props.hint ? hintId : "", props.error ? errorId : ""].filter(Boolean).join(" ") || undefined;
  return (
    <div class={props.error ? "field field-invalid" : "field"}>
      <label for={props.id}>{props.label}</label>
      {props.hint ? (
        <p id={hintId} class="hint">
          {props.hint}
        </p>
      ) : null}
      {props.children(describedBy, !!props.error)}
      {props.error ? (
        <p id={errorId} class="field-error">
          {props.error}
        </p>
      ) : null}
    </div>
  );
}

export function Loading() {
  return (
    <p class="loading" role="status">
      {t("app.loading")}
    </p>
  );
}

/** The SLA badge of a pending request. */
export function SlaBadgeView({ badge, slaMs }: { badge: SlaBadge; slaMs: number }) {
  const label = badge.level === "ok" ? t("sla.ok") : badge.level === "due" ? t("sla.due") : t("sla.overdue");
  const title = t("sla.title", { age: formatDuration(badge.ageMs), sla: formatDuration(slaMs) });
  return (
    <span class="badges">
      <span class={`badge badge-${badge.level}`} title={title}>
        {label}
        <span class="visually-hidden">: {title}</span>
      </span>
      {badge.escalated ? <span class="badge badge-flag">{t("sla.escalated")}</span> : null}
      {!badge.escalated && badge.reminded ? <span class="badge badge-flag">{t("sla.reminded")}</span> : null}
    </span>
  );
}

export function StateBadge({ label, state }: { label: string; state: string }) {
  return <span class={`badge state-${state.toLowerCase()}`}>{label}</span>;
}

/** A definition list from label/value pairs; empty values are skipped. */
export function Facts({ items }: { items: [string, ComponentChildren][] }) {
  return (
    <dl class="facts">
      {items
        .filter(([, v]) => v !== "" && v !== undefined && v !== null)
        .map(([k, v]) => (
          <div class="fact" key={k}>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </div>
        ))}
    </dl>
  );
}

export interface Bar {
  label: string;
  value: number;
  /** Text shown at the end of the bar (the value by default). */
  display?: string;
  tone?: string;
}

/**
 * Horizontal bars generated from data: each bar is a small SVG scaled to its
 * value, labels and values are HTML text (they wrap and keep their size on
 * a narrow screen); the whole chart has a text alternative.
 */
export function BarChart({ title, bars, id }: { title: string; bars: Bar[]; id: string }) {
  const widths = barWidths(bars.map((b) => b.value));
  const summary = bars.map((b) => `${b.label}: ${b.display ?? b.value}`).join(", ");
  return (
    <figure class="chart" id={id}>
      <figcaption class="visually-hidden">{title}</figcaption>
      <div class="chart-rows" role="img" aria-label={`${title}. ${summary}`}>
        {bars.map((b, i) => (
          <div class="chart-row" key={b.label}>
            <span class="chart-label">{b.label}</span>
            <svg class="chart-track" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true" focusable="false">
              <rect x={0} y={0} width={widths[i] > 0 ? Math.max(1, widths[i]) : 0} height={10} rx={1} class={`chart-bar ${b.tone ?? ""}`} />
            </svg>
            <span class="chart-value">{b.display ?? String(b.value)}</span>
          </div>
        ))}
      </div>
    </figure>
  );
}

/** Runs `effect` every `ms` while mounted. */
export function useInterval(effect: () => void, ms: number) {
  const ref = useRef(effect);
  ref.current = effect;
  useEffect(() => {
    const id = setInterval(() => ref.current(), ms);
    return () => clearInterval(id);
  }, [ms]);
}
