import type { ReactNode } from "react";
import { describeError } from "../lib/errors";
import { formatLocal, formatUtc, parseApiTime } from "../lib/time";

/** A time in the viewer's zone, with UTC on hover. */
export function Time({ value, testid }: { value: string | number | null | undefined; testid?: string }) {
  const ms = parseApiTime(value);
  if (!Number.isFinite(ms)) return <span data-testid={testid}>—</span>;
  return (
    <time dateTime={new Date(ms).toISOString()} title={formatUtc(ms)} data-testid={testid}>
      {formatLocal(ms)}
    </time>
  );
}

export function ErrorMessage({ error, testid }: { error: unknown; testid?: string }) {
  if (!error) return null;
  return (
    <p className="message error" role="alert" data-testid={testid ?? "error"}>
      {describeError(error)}
    </p>
  );
}

export function Panel({
  title,
  testid,
  children,
  aside,
}: {
  title: string;
  testid: string;
  children: ReactNode;
  aside?: ReactNode;
}) {
  return (
    <section className="panel" data-testid={testid} aria-labelledby={`${testid}-title`}>
      <header>
        <h2 id={`${testid}-title`}>{title}</h2>
        {aside}
      </header>
      {children}
    </section>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="message muted" aria-busy="true" data-testid="loading">
      Loading {what}…
    </p>
  );
}

export function Empty({ children, testid }: { children: ReactNode; testid?: string }) {
  return (
    <p className="message muted" data-testid={testid ?? "empty"}>
      {children}
    </p>
  );
}

export function formatNumber(value: number | null | undefined, digits = 2): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return value.toLocaleString(undefined, { maximumFractionDigits: digits });
}
