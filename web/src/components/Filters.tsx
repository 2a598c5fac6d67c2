import { type FormEvent, useEffect, useState } from "react";
import type { Api, DeviceRow, SiteRow } from "../api";
import { useDebounced, useResource } from "../hooks";
import { ErrorMessage } from "./Common";
import { type IntervalChoice, PRESETS, type Preset, type TimeRange, resolveRange } from "../lib/interval";
import { fromLocalInput, toLocalInput } from "../lib/time";

export interface Target {
  kind: "device" | "site";
  id: string;
  /** A device's site, for the energy panel. */
  siteId: string | null;
  metrics: string[];
}

interface Option {
  id: string;
  detail: string;
  siteId: string | null;
  metrics: string[];
}

function TargetPicker({
  api,
  target,
  onChoose,
}: {
  api: Api;
  target: Target | null;
  onChoose: (t: Target) => void;
}) {
  const [kind, setKind] = useState<"device" | "site">(target?.kind ?? "device");
  const [query, setQuery] = useState("");
  const q = useDebounced(query, 250);
  const list = useResource<{ options: Option[]; truncated: boolean }>(
    async (signal) => {
      if (kind === "device") {
        const a = await api.get<{ devices: DeviceRow[]; truncated: boolean }>(
          "/v1/devices",
          { q, limit: 20 },
          signal,
        );
        return {
          truncated: a.truncated,
          options: a.devices.map((d) => ({
            id: d.device_id,
            detail: d.site_id ? `site ${d.site_id}` : "no site",
            siteId: d.site_id,
            metrics: Object.keys(d.metrics ?? {}),
          })),
        };
      }
      const a = await api.get<{ sites: SiteRow[]; truncated: boolean }>(
        "/v1/sites",
        { q, limit: 20 },
        signal,
      );
      return {
        truncated: a.truncated,
        options: a.sites.map((s) => ({
          id: s.site_id,
          detail: `${s.devices} device${s.devices === 1 ? "" : "s"}`,
          siteId: s.site_id,
          metrics: [],
        })),
      };
    },
    `${kind}|${q}`,
  );
  return (
    <fieldset className="picker" data-testid="target-picker">
      <legend>Device or site</legend>
      <div role="radiogroup" aria-label="Show a device or a site" className="segmented">
        {(["device", "site"] as const).map((k) => (
          <label key={k}>
            <input
              type="radio"
              name="target-kind"
              value={k}
              checked={kind === k}
              onChange={() => setKind(k)}
              data-testid={`target-kind-${k}`}
            />
            {k}
          </label>
        ))}
      </div>
      <input
        type="search"
        aria-label={`Search ${kind}s`}
        placeholder={`Search ${kind}s…`}
        value={query}
        onChange={(e) => setQuery(e.target.value)}
        data-testid="target-search"
      />
      <ErrorMessage error={list.error} />
      <ul className="options" aria-label={`${kind}s`} data-testid="target-options">
        {list.loading && !list.data && <li className="muted">Loading…</li>}
        {list.data && list.data.options.length === 0 && <li className="muted">No {kind} matches.</li>}
        {list.data?.options.map((o) => {
          const chosen = target?.kind === kind && target.id === o.id;
          return (
            <li key={o.id}>
              <button
                type="button"
                aria-pressed={chosen}
                className={chosen ? "chosen" : ""}
                data-testid="target-option"
                data-id={o.id}
                onClick={() => onChoose({ kind, id: o.id, siteId: o.siteId, metrics: o.metrics })}
              >
                {o.id} <span className="muted">{o.detail}</span>
              </button>
            </li>
          );
        })}
        {list.data?.truncated && <li className="muted">More match: refine the search.</li>}
      </ul>
    </fieldset>
  );
}

function RangePicker({ range, onRange }: { range: TimeRange; onRange: (r: TimeRange) => void }) {
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  // The custom fields start from the range shown, and follow each preset chosen.
  useEffect(() => {
    const shown = resolveRange(range);
    setFrom(toLocalInput(shown.fromMs));
    setTo(toLocalInput(shown.toMs));
  }, [range]);
  const apply = (event: FormEvent) => {
    event.preventDefault();
    const lo = fromLocalInput(from);
    const hi = fromLocalInput(to);
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) return setProblem("Give both from and to.");
    if (hi <= lo) return setProblem("From must be before to.");
    setProblem(null);
    onRange({ fromMs: lo, toMs: hi, preset: null });
  };
  return (
    <fieldset className="range" data-testid="range-picker">
      <legend>Time range</legend>
      <div className="segmented" role="group" aria-label="Range presets">
        {PRESETS.map((p: Preset) => (
          <button
            key={p}
            type="button"
            aria-pressed={range.preset === p}
            className={range.preset === p ? "chosen" : ""}
            onClick={() => onRange({ fromMs: 0, toMs: 0, preset: p })}
            data-testid={`range-${p}`}
          >
            {p}
          </button>
        ))}
      </div>
      <form className="custom" onSubmit={apply} aria-label="Custom range">
        <label title="in your time zone">
          from{" "}
          <input type="datetime-local" value={from} onChange={(e) => setFrom(e.target.value)} data-testid="range-from" />
        </label>
        <label title="in your time zone">
          to{" "}
          <input type="datetime-local" value={to} onChange={(e) => setTo(e.target.value)} data-testid="range-to" />
        </label>
        <button type="submit" data-testid="range-apply" aria-pressed={range.preset === null}>
          Apply
        </button>
        {problem && (
          <span className="message error" role="alert">
            {problem}
          </span>
        )}
      </form>
    </fieldset>
  );
}

export function Filters({
  api,
  target,
  onTarget,
  metrics,
  metric,
  onMetric,
  range,
  onRange,
  choice,
  maxPoints,
}: {
  api: Api;
  target: Target | null;
  onTarget: (t: Target) => void;
  metrics: string[];
  metric: string;
  onMetric: (m: string) => void;
  range: TimeRange;
  onRange: (r: TimeRange) => void;
  choice: IntervalChoice;
  maxPoints: number;
}) {
  return (
    <div className="filters" data-testid="filters">
      <TargetPicker api={api} target={target} onChoose={onTarget} />
      <fieldset>
        <legend>Metric</legend>
        <select
          aria-label="Metric"
          value={metric}
          onChange={(e) => onMetric(e.target.value)}
          data-testid="metric-select"
        >
          {metrics.length === 0 && <option value="">no metrics yet</option>}
          {metrics.map((m) => (
            <option key={m} value={m}>
              {m}
            </option>
          ))}
        </select>
      </fieldset>
      <RangePicker range={range} onRange={onRange} />
      <p className="interval" data-testid="chosen-interval" data-interval={choice.interval}>
        Interval <strong>{choice.interval}</strong> · {choice.points} point{choice.points === 1 ? "" : "s"} at most (limit{" "}
        {maxPoints})
      </p>
    </div>
  );
}
