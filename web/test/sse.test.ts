import { describe, expect, it } from "vitest";
import {
  MAX_DELAY_MS,
  SseParser,
  feedFailed,
  feedMessage,
  feedOpened,
  initialFeed,
  reconnectHeaders,
} from "../src/lib/sse";

// Frames as app/alerts/feed.py writes them.
const CONNECTED = ": connected\nretry: 2000\n\n";
const alert = (id: string, device = "d1", state = "firing") =>
  `id: ${id}\ndata: {"device_id":"${device}","metrics":{"temp":40},"time":"2025-01-15 10:00:00","site_id":null,"state":"${state}","rule_id":7,"tenant_id":"t","metric":"temp","op":">","threshold":32}\n\n`;
const RESYNC = 'event: resync\ndata: {"reason":"alerts after this id are no longer kept in the stream","history":"/v1/alerts/history"}\n\n';

describe("SseParser", () => {
  it("reads the server's frames: comments, retry, ids, named control events", () => {
    const parser = new SseParser();
    const messages = parser.push(CONNECTED + RESYNC + alert("1736938860000-0") + ": heartbeat\n\n");
    expect(parser.retryMs).toBe(2000);
    expect(messages.map((m) => m.event)).toEqual(["resync", "message"]);
    expect(messages[0].lastEventId).toBe("");
    expect(messages[1].lastEventId).toBe("1736938860000-0");
    expect(JSON.parse(messages[1].data).state).toBe("firing");
  });

  it("keeps the last id across frames without one, and joins multi-line data", () => {
    const parser = new SseParser();
    parser.push(alert("5-0"));
    const [m] = parser.push("event: overflow\ndata: a\ndata: b\n\n");
    expect(m).toEqual({ event: "overflow", data: "a\nb", lastEventId: "5-0" });
  });

  it("reassembles frames split anywhere, with LF, CRLF or CR line ends", () => {
    const text = (CONNECTED + alert("1-0") + alert("2-0")).replace(/\n/g, "\r\n");
    for (let cut = 1; cut < text.length; cut += 7) {
      const parser = new SseParser();
      const messages = [...parser.push(text.slice(0, cut)), ...parser.push(text.slice(cut))];
      expect(messages.map((m) => m.lastEventId)).toEqual(["1-0", "2-0"]);
    }
    const parser = new SseParser();
    expect(parser.push("data: x\r\r").map((m) => m.data)).toEqual(["x"]);
  });

  it("ignores frames without data and unknown fields", () => {
    const parser = new SseParser();
    expect(parser.push("id: 9-0\n\nfoo: bar\n\n")).toEqual([]);
    expect(parser.lastEventId).toBe("9-0");
  });
});

describe("the feed's bookkeeping", () => {
  const parse = (text: string) => new SseParser().push(text);

  it("keeps alerts newest first, once each, and the id to resume from", () => {
    let state = feedOpened(initialFeed());
    for (const m of [...parse(alert("1-0")), ...parse(alert("2-0", "d2")), ...parse(alert("1-0"))]) {
      state = feedMessage(state, m, 0);
    }
    expect(state.status).toBe("live");
    expect(state.alerts.map((a) => [a.id, a.device_id])).toEqual([
      ["2-0", "d2"],
      ["1-0", "d1"],
    ]);
    expect(state.lastEventId).toBe("1-0");
    expect(reconnectHeaders({ ...state, lastEventId: "2-0" }, "k")).toEqual({
      Accept: "text/event-stream",
      "X-API-Key": "k",
      "Last-Event-ID": "2-0",
    });
  });

  it("shows resync and overflow as notices, with the server's reason", () => {
    let state = feedMessage(initialFeed(), parse(RESYNC)[0], 1000);
    expect(state.notices).toEqual([
      { kind: "resync", reason: "alerts after this id are no longer kept in the stream", atMs: 1000 },
    ]);
    expect(state.lastEventId).toBeNull();
    state = feedMessage(state, parse('event: overflow\ndata: {"reason":"behind"}\n\n')[0], 2000);
    expect(state.notices[0]).toEqual({ kind: "overflow", reason: "behind", atMs: 2000 });
  });

  it("backs off exponentially from the server's retry, bounded, and resets once open", () => {
    let state = initialFeed();
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      const next = feedFailed(state, "down", i, 2000);
      state = next.state;
      delays.push(next.delayMs);
    }
    expect(delays.slice(0, 4)).toEqual([2000, 4000, 8000, 16000]);
    expect(Math.max(...delays)).toBe(MAX_DELAY_MS);
    expect(state.status).toBe("reconnecting");
    state = feedOpened(state);
    expect(state.failures).toBe(0);
    expect(feedFailed(state, null, 0).delayMs).toBe(2000);
    expect(state.connections).toBe(1);
  });

  it("sends no Last-Event-ID before the first alert, and no key when auth is off", () => {
    expect(reconnectHeaders(initialFeed(), null)).toEqual({ Accept: "text/event-stream" });
  });
});
