import type { Api, Pipeline } from "../api";
import { useResource } from "../hooks";
import { formatAge } from "../lib/time";
import { ErrorMessage, Loading, Panel, Time, formatNumber } from "./Common";

function Stat({ label, value, testid, warn = false }: { label: string; value: string; testid: string; warn?: boolean }) {
  return (
    <div className={`stat${warn ? " warn" : ""}`}>
      <dt>{label}</dt>
      <dd data-testid={testid}>{value}</dd>
    </div>
  );
}

export function PipelinePanel({ api }: { api: Api }) {
  const health = useResource<Pipeline>((signal) => api.get("/v1/pipeline", {}, signal), "pipeline", 5_000);
  const p = health.data;
  return (
    <Panel
      title="Pipeline health"
      testid="pipeline-panel"
      aside={p && <span className="muted">as of <Time value={p.as_of} /></span>}
    >
      <ErrorMessage error={health.error} />
      {health.loading && <Loading what="pipeline health" />}
      {p && (
        <>
          <dl className="stats">
            <Stat label="ingest rate" value={`${formatNumber(p.ingest_rate_per_s, 1)} /s`} testid="pipeline-ingest-rate" />
            <Stat label="stream backlog" value={formatNumber(p.stream.backlog, 0)} testid="pipeline-backlog" warn={p.stream.backlog > 10_000} />
            <Stat label="stream length" value={formatNumber(p.stream.length, 0)} testid="pipeline-stream-length" />
            <Stat label="oldest pending" value={formatAge(p.stream.oldest_pending_age_s)} testid="pipeline-oldest-pending" />
            <Stat label="dead letters" value={formatNumber(p.dead_letters, 0)} testid="pipeline-dead-letters" warn={p.dead_letters > 0} />
            <Stat
              label="rollup watermark lag"
              value={p.rollup_watermark_lag_s === null ? "—" : formatAge(p.rollup_watermark_lag_s)}
              testid="pipeline-watermark-lag"
            />
          </dl>
          <table data-testid="pipeline-consumers">
            <caption>Consumers of the group</caption>
            <thead>
              <tr>
                <th scope="col">consumer</th>
                <th scope="col" className="num">pending</th>
                <th scope="col" className="num">idle</th>
              </tr>
            </thead>
            <tbody>
              {p.consumers.length === 0 && (
                <tr>
                  <td colSpan={3} className="muted">No consumer has joined the group.</td>
                </tr>
              )}
              {p.consumers.map((c) => (
                <tr key={c.name} data-testid="pipeline-consumer">
                  <th scope="row">{c.name}</th>
                  <td className="num">{formatNumber(c.pending, 0)}</td>
                  <td className="num">{formatAge(c.idle_ms / 1000)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {p.workers.length > 0 && (
            <p className="muted" data-testid="pipeline-workers">
              Workers:{" "}
              {p.workers.map((w) => (
                <span key={w.name} className={`badge ${w.status === "ok" ? "ok" : "warning"}`}>
                  {w.name} {w.status}
                </span>
              ))}
            </p>
          )}
        </>
      )}
    </Panel>
  );
}
