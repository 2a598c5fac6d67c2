import { useEffect, useState } from "react";
import { apiError, describeError } from "../lib/errors";
import {
  type FeedState,
  SseParser,
  feedFailed,
  feedMessage,
  feedOpened,
  initialFeed,
  reconnectHeaders,
} from "../lib/sse";
import { Empty, Panel, Time, formatNumber } from "./Common";

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Follows /v1/alerts/stream over fetch, resuming with Last-Event-ID after any drop. */
export function useAlertFeed(apiKey: string | null): FeedState {
  const [feed, setFeed] = useState<FeedState>(initialFeed);
  useEffect(() => {
    const controller = new AbortController();
    const { signal } = controller;
    let state = initialFeed();
    const set = (next: FeedState) => {
      state = next;
      setFeed(next);
    };
    set(state);
    void (async () => {
      while (!signal.aborted) {
        const parser = new SseParser();
        parser.lastEventId = state.lastEventId ?? "";
        let reason: string | null = null;
        try {
          const response = await fetch("/v1/alerts/stream", {
            headers: reconnectHeaders(state, apiKey),
            cache: "no-store",
            signal,
          });
          if (!response.ok || !response.body) {
            const body: unknown = await response.json().catch(() => null);
            const error = apiError(response.status, body);
            if (response.status === 401 || response.status === 403) {
              set({ ...state, status: "stopped", notices: [{ kind: "error", reason: describeError(error), atMs: Date.now() }, ...state.notices] });
              return;
            }
            reason = describeError(error);
          } else {
            set(feedOpened(state));
            const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
            for (;;) {
              const { value, done } = await reader.read();
              if (done) break;
              for (const message of parser.push(value)) set(feedMessage(state, message, Date.now()));
            }
            reason = null; // the server closed the stream (after an overflow notice, say)
          }
        } catch (error) {
          if (signal.aborted) return;
          reason = `connection lost (${(error as Error).message})`;
        }
        const { state: next, delayMs } = feedFailed(state, reason, Date.now(), parser.retryMs);
        set(next);
        await pause(delayMs, signal);
      }
    })();
    return () => controller.abort();
  }, [apiKey]);
  return feed;
}

const STATUS_TEXT = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  stopped: "stopped",
};

export function AlertFeed({ apiKey }: { apiKey: string | null }) {
  const feed = useAlertFeed(apiKey);
  return (
    <Panel
      title="Live alerts"
      testid="alert-panel"
      aside={
        <span
          className={`badge ${feed.status}`}
          data-testid="alert-feed-status"
          data-status={feed.status}
          title={feed.lastEventId ? `resumes after ${feed.lastEventId}` : "no alert received yet"}
        >
          {STATUS_TEXT[feed.status]}
        </span>
      }
    >
      {feed.notices.slice(0, 3).map((n) => (
        <p
          key={`${n.kind}-${n.atMs}-${n.reason}`}
          className={`message ${n.kind === "error" ? "error" : "warn"}`}
          role={n.kind === "error" ? "alert" : "status"}
          data-testid={`alert-${n.kind}`}
        >
          {n.kind === "resync" && (
            <>
              <strong>Resync:</strong> {n.reason}. Alerts raised while this page was away may be missing here; the full
              record is in /v1/alerts/history.
            </>
          )}
          {n.kind === "overflow" && (
            <>
              <strong>Fell behind:</strong> {n.reason}. Resuming from the last alert shown.
            </>
          )}
          {n.kind === "error" && <>Stream: {n.reason}</>}{" "}
          <span className="muted">
            (<Time value={n.atMs} />)
          </span>
        </p>
      ))}
      {feed.alerts.length === 0 && <Empty testid="alert-empty">No alerts since this page opened.</Empty>}
      <ol className="alerts" data-testid="alert-list" aria-live="polite">
        {feed.alerts.map((a) => (
          <li
            key={a.id}
            data-testid="alert-item"
            data-alert-id={a.id}
            data-rule-id={a.rule_id}
            data-device={a.device_id}
            data-state={a.state}
            className={a.state}
          >
            <span className={`badge ${a.state}`}>{a.state}</span> <strong>{a.device_id}</strong>{" "}
            {a.metric} {a.op} {formatNumber(a.threshold, 3)}
            {a.metric && a.metrics?.[a.metric] !== undefined && <> (value {formatNumber(a.metrics[a.metric], 3)})</>}{" "}
            <span className="muted">
              <Time value={a.time} /> · rule {a.rule_id}
            </span>
          </li>
        ))}
      </ol>
    </Panel>
  );
}
