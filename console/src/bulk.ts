// Bulk decisions: one call per selected request, with its own etag, a few at
// a time, and a result per row.
import { describeError } from "./errors";

export interface BulkItem {
  name: string;
  etag: string;
  /** What the row is shown as (the applicant's email). */
  label: string;
}

export interface BulkResult<T> {
  name: string;
  label: string;
  ok: boolean;
  value?: T;
  /** Plain-words error, when it failed. */
  message?: string;
  /** ErrorInfo reason, when it failed with one. */
  reason?: string;
}

/**
 * Runs `call` for every item, at most `concurrency` at once, and returns the
 * results in the items' order. A failure never stops the others.
 */
export async function runBulk<T>(
  items: readonly BulkItem[],
  call: (item: BulkItem) => Promise<T>,
  options: { concurrency?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<BulkResult<T>[]> {
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const results: BulkResult<T>[] = new Array(items.length);
  let next = 0;
  let done = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      const item = items[i];
      try {
        const value = await call(item);
        results[i] = { name: item.name, label: item.label, ok: true, value };
      } catch (err) {
        const ui = describeError(err);
        results[i] = { name: item.name, label: item.label, ok: false, message: ui.message, reason: ui.reason };
      }
      done++;
      options.onProgress?.(done, items.length);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

export interface BulkSummary {
  total: number;
  ok: number;
  failed: number;
  /** Failures per ErrorInfo reason (`OTHER` when none). */
  byReason: Record<string, number>;
}

export function summarizeBulk(results: readonly BulkResult<unknown>[]): BulkSummary {
  const byReason: Record<string, number> = {};
  let ok = 0;
  for (const r of results) {
    if (r.ok) {
      ok++;
      continue;
    }
    const key = r.reason ?? "OTHER";
    byReason[key] = (byReason[key] ?? 0) + 1;
  }
  return { total: results.length, ok, failed: results.length - ok, byReason };
}
