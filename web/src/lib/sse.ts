// Server-sent events over fetch: the alert stream authenticates with X-API-Key, a header
// EventSource cannot send. The parser follows the WHATWG event-stream rules; the feed book
// keeps what a reconnect needs (Last-Event-ID, the server's retry) and what the page shows.

export interface SseMessage {
  /** "message" unless the frame names its event. */
  event: string;
  data: string;
  /** The last event id after this frame (ids persist across frames that carry none). */
  lastEventId: string;
}

export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private event = "";
  private pendingCr = false;
  lastEventId = "";
  retryMs: number | null = null;

  /** Feed a decoded chunk; returns the frames it completes. */
  push(chunk: string): SseMessage[] {
    let text = chunk;
    if (this.pendingCr && text.startsWith("\n")) text = text.slice(1);
    this.pendingCr = false;
    this.buffer += text;
    const out: SseMessage[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A lone CR at the end may be the first half of a CRLF split across chunks.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) this.pendingCr = true;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const message = this.line(line);
      if (message) out.push(message);
    }
    return out;
  }

  private line(line: string): SseMessage | null {
    if (line === "") {
      const data = this.data;
      const event = this.event || "message";
      this.data = [];
      this.event = "";
      if (data.length === 0) return null;
      return { event, data: data.join("\n"), lastEventId: this.lastEventId };
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (name === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    return null;
  }
}

/** One alert transition as app/alerts/evaluator.py writes it. */
export interface Alert {
  id: string;
  device_id: string;
  site_id?: string | null;
  state: string;
  rule_id?: number;
  metric?: string;
  op?: string;
  threshold?: number;
  metrics?: Record<string, number>;
  time?: string;
}

export interface Notice {
  kind: "resync" | "overflow" | "error";
  reason: string;
  atMs: number;
}

export type FeedStatus = "connecting" | "live" | "reconnecting" | "stopped";

export interface FeedState {
  status: FeedStatus;
  lastEventId: string | null;
  retryMs: number;
  /** Failed connections in a row (reset once a stream opens). */
  failures: number;
  connections: number;
  alerts: Alert[];
  notices: Notice[];
}

export const MAX_ALERTS = 200;
export const MAX_DELAY_MS = 30_000;

export function initialFeed(retryMs = 2000): FeedState {
  return {
    status: "connecting",
    lastEventId: null,
    retryMs,
    failures: 0,
    connections: 0,
    alerts: [],
    notices: [],
  };
}

export function feedOpened(state: FeedState): FeedState {
  return { ...state, status: "live", failures: 0, connections: state.connections + 1 };
}

/** A frame read from the stream: alerts are kept newest first, once each. */
export function feedMessage(state: FeedState, message: SseMessage, nowMs: number): FeedState {
  const lastEventId = message.lastEventId || state.lastEventId;
  if (message.event === "message") {
    let parsed: Omit<Alert, "id">;
    try {
      parsed = JSON.parse(message.data) as Omit<Alert, "id">;
    } catch {
      return { ...state, lastEventId };
    }
    const id = message.lastEventId;
    if (state.alerts.some((a) => a.id === id)) return { ...state, lastEventId };
    const alerts = [{ ...parsed, id }, ...state.alerts].slice(0, MAX_ALERTS);
    return { ...state, lastEventId, alerts };
  }
  if (message.event === "resync" || message.event === "overflow") {
    let reason = message.data;
    try {
      const body = JSON.parse(message.data) as { reason?: string };
      reason = body.reason ?? reason;
    } catch {
      // shown as sent
    }
    const notice: Notice = { kind: message.event, reason, atMs: nowMs };
    return { ...state, lastEventId, notices: [notice, ...state.notices].slice(0, 20) };
  }
  return { ...state, lastEventId };
}

/** The stream ended or failed: note why, and how long to wait before the next attempt. */
export function feedFailed(
  state: FeedState,
  reason: string | null,
  nowMs: number,
  retryMs: number | null = null,
): { state: FeedState; delayMs: number } {
  const failures = state.failures + 1;
  const base = retryMs ?? state.retryMs;
  const delayMs = Math.min(MAX_DELAY_MS, base * 2 ** Math.min(failures - 1, 6));
  const notices = reason
    ? [{ kind: "error" as const, reason, atMs: nowMs }, ...state.notices].slice(0, 20)
    : state.notices;
  return {
    state: { ...state, status: "reconnecting", failures, retryMs: base, notices },
    delayMs,
  };
}

/** The headers of the next connection: the key and where to resume. */
export function reconnectHeaders(state: FeedState, apiKey: string | null): Record<string, string> {
  const headers: Record<string, string> = { Accept: "text/event-stream" };
  if (apiKey) headers["X-API-Key"] = apiKey;
  if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
  return headers;
}
