import type uPlot from "uplot";
import type { Api } from "../api";
import { useResource } from "../hooks";
import { ApiError } from "../lib/errors";
import {
  type IntervalChoice,
  type TimeRange,
  chooseInterval,
  durationSeconds,
  formatDuration,
  rangeKey,
  resolveRange,
} from "../lib/interval";
import {
  type Bucket,
  type EnergyWindow,
  type Prediction,
  aggregateColumns,
  energyColumns,
  forecastColumns,
} from "../lib/series";
import { Chart } from "./Chart";
import { Empty, ErrorMessage, Loading, Panel, Time, formatNumber } from "./Common";
import type { Target } from "./Filters";

interface Aggregate {
  as_of: string;
  staleness_bound_s: number;
  interval: string;
  interval_s: number;
  buckets: Bucket[];
}

const REFRESH_MS = 15_000;
const BLUE = "#2563eb";
const ORANGE = "#ea580c";
const GREEN = "#16a34a";

function scope(target: Target): Record<string, string> {
  return target.kind === "device" ? { device_id: target.id } : { site_id: target.id };
}

export function AggregatePanel({
  api,
  target,
  metric,
  range,
  choice,
}: {
  api: Api;
  target: Target;
  metric: string;
  /** Resolved again at each refresh: a preset rolls with the clock. */
  range: TimeRange;
  choice: IntervalChoice;
}) {
  const answer = useResource<Aggregate>(
    (signal) => {
      const { fromMs, toMs } = resolveRange(range);
      return api.get<Aggregate>(
        "/v1/metrics/aggregate",
        { metric, ...scope(target), from_time: fromMs, to_time: toMs, interval: choice.interval },
        signal,
      );
    },
    `${target.kind}|${target.id}|${metric}|${choice.interval}|${rangeKey(range)}`,
    REFRESH_MS,
  );
  const series: uPlot.Series[] = [
    { label: "avg", stroke: BLUE, width: 2 },
    { label: "min", stroke: "rgba(37,99,235,0.35)", width: 1 },
    { label: "max", stroke: "rgba(37,99,235,0.35)", width: 1 },
  ];
  const bands: uPlot.Band[] = [{ series: [3, 2], fill: "rgba(37,99,235,0.15)" }];
  return (
    <Panel
      title={`${metric} of ${target.kind} ${target.id}`}
      testid="aggregate-panel"
      aside={answer.data && <span className="muted">as of <Time value={answer.data.as_of} /></span>}
    >
      <ErrorMessage error={answer.error} />
      {answer.loading && <Loading what="aggregates" />}
      {answer.data && answer.data.buckets.length === 0 && (
        <Empty testid="aggregate-empty">No {metric} data in this range.</Empty>
      )}
      {answer.data && answer.data.buckets.length > 0 && (
        <Chart
          testid="aggregate-chart"
          label={`${metric} average with min–max band`}
          data={aggregateColumns(answer.data.buckets, answer.data.interval_s)}
          series={series}
          bands={bands}
        />
      )}
    </Panel>
  );
}

const HORIZON = "1h";

export function ForecastPanel({
  api,
  target,
  metric,
  available,
}: {
  api: Api;
  target: Target;
  metric: string;
  available: boolean;
}) {
  const answer = useResource<{ prediction: Prediction; history: Bucket[] }>(
    available
      ? async (signal) => {
          const prediction = await api.get<Prediction>(
            "/v1/forecast",
            { ...scope(target), metric, horizon: HORIZON },
            signal,
          );
          // Recent history at the model's step: three horizons before the forecast starts.
          const first = prediction.points.length ? Date.parse(prediction.points[0].time) : Date.now();
          const stepS = prediction.step_s;
          const spanS = Math.max(3 * durationSeconds(prediction.horizon || HORIZON), 60 * stepS);
          const history = await api.get<Aggregate>(
            "/v1/metrics/aggregate",
            {
              metric,
              ...scope(target),
              from_time: first - spanS * 1000,
              to_time: first,
              interval: formatDuration(stepS),
            },
            signal,
          );
          return { prediction, history: history.buckets };
        }
      : null,
    `${target.kind}|${target.id}|${metric}|${available}`,
    60_000,
  );
  const missing =
    answer.error instanceof ApiError && (answer.error.status === 404 || answer.error.status === 409);
  const series: uPlot.Series[] = [
    { label: "history", stroke: BLUE, width: 2 },
    { label: "forecast", stroke: ORANGE, width: 2, dash: [6, 4] },
    { label: "80% lo", stroke: "rgba(234,88,12,0.4)", width: 1 },
    { label: "80% hi", stroke: "rgba(234,88,12,0.4)", width: 1 },
    { label: "95% lo", stroke: "rgba(234,88,12,0.2)", width: 1 },
    { label: "95% hi", stroke: "rgba(234,88,12,0.2)", width: 1 },
  ];
  const bands: uPlot.Band[] = [
    { series: [4, 3], fill: "rgba(234,88,12,0.25)" },
    { series: [6, 5], fill: "rgba(234,88,12,0.12)" },
  ];
  const p = answer.data?.prediction;
  return (
    <Panel
      title={`Forecast of ${metric}`}
      testid="forecast-panel"
      aside={
        p && (
          <span className="muted">
            {p.model} v{p.version}, step {p.step}, trained <Time value={p.trained_at} />
          </span>
        )
      }
    >
      {!available && <Empty testid="forecast-unavailable">The forecaster is not available.</Empty>}
      {missing ? (
        <Empty testid="forecast-empty">
          No forecast for {target.kind} {target.id} / {metric}: {(answer.error as ApiError).message}
        </Empty>
      ) : (
        <ErrorMessage error={answer.error} />
      )}
      {answer.loading && <Loading what="the forecast" />}
      {answer.data && (
        <>
          <Chart
            testid="forecast-chart"
            label="history then forecast with 80% and 95% bands"
            data={forecastColumns(answer.data.history, answer.data.prediction)}
            series={series}
            bands={bands}
            counted={[1, 2]}
          />
          <p className="legend muted">
            Solid: recent history · dashed: forecast · bands: 80 % (darker) and 95 % prediction intervals
          </p>
        </>
      )}
    </Panel>
  );
}

interface SiteEnergy {
  window: string;
  windows: EnergyWindow[];
  energy_wh: number;
}

interface Efficiency {
  window: string;
  efficiency_pct: number | null;
  dc_delivered: number;
  ac_consumed: number;
  threshold_pct: number;
  status: string;
}

export function EnergyPanel({
  api,
  site,
  range,
  maxPoints,
  intervals,
}: {
  api: Api;
  site: string | null;
  range: TimeRange;
  maxPoints: number;
  intervals: string[];
}) {
  const { fromMs, toMs } = resolveRange(range);
  const choice = chooseInterval(fromMs, toMs, maxPoints, intervals);
  const energy = useResource<SiteEnergy>(
    site
      ? (signal) => {
          const w = resolveRange(range);
          return api.get<SiteEnergy>(
            `/sites/${encodeURIComponent(site)}/agg`,
            { window: choice.interval, from: w.fromMs, to: w.toMs },
            signal,
          );
        }
      : null,
    `${site}|${choice.interval}|${rangeKey(range)}`,
    REFRESH_MS,
  );
  const spanMinutes = Math.max(1, Math.round((toMs - fromMs) / 60_000));
  const efficiency = useResource<Efficiency>(
    site
      ? (signal) =>
          api.get<Efficiency>(
            "/v1/analytics/efficiency",
            { site_id: site, window: formatDuration(spanMinutes * 60) },
            signal,
          )
      : null,
    `${site}|${spanMinutes}`,
    REFRESH_MS,
  );
  const series: uPlot.Series[] = [
    { label: "avg power W", stroke: GREEN, width: 2, scale: "W" },
    { label: "peak power W", stroke: "rgba(22,163,74,0.4)", width: 1, scale: "W" },
    { label: "cumulative Wh", stroke: "#7c3aed", width: 2, scale: "Wh" },
  ];
  const axes: uPlot.Axis[] = [{}, { scale: "W", label: "W" }, { scale: "Wh", side: 1, label: "Wh", grid: { show: false } }];
  const e = efficiency.data;
  return (
    <Panel title={site ? `Energy of site ${site}` : "Site energy"} testid="energy-panel">
      {!site && <Empty>Choose a site, or a device that belongs to one, to see its energy.</Empty>}
      <ErrorMessage error={energy.error} />
      {energy.loading && <Loading what="energy" />}
      {energy.data && energy.data.windows.length === 0 && (
        <Empty testid="energy-empty">No power readings for this site in the range.</Empty>
      )}
      {energy.data && energy.data.windows.length > 0 && (
        <>
          <p>
            Energy in range: <strong data-testid="energy-total">{formatNumber(energy.data.energy_wh)} Wh</strong> (window{" "}
            {energy.data.window})
          </p>
          <Chart
            testid="energy-chart"
            label="site power and cumulative energy"
            data={energyColumns(energy.data.windows)}
            series={series}
            axes={axes}
            height={180}
          />
        </>
      )}
      {site && (
        <div className="efficiency" data-testid="efficiency">
          <ErrorMessage error={efficiency.error} />
          {e && (
            <p>
              Efficiency over {e.window}:{" "}
              <strong data-testid="efficiency-pct">
                {e.efficiency_pct === null ? "no data" : `${formatNumber(e.efficiency_pct, 1)} %`}
              </strong>{" "}
              <span className={`badge ${e.status}`}>{e.status}</span>{" "}
              <span className="muted">
                (DC delivered {formatNumber(e.dc_delivered)} / AC consumed {formatNumber(e.ac_consumed)}, threshold{" "}
                {formatNumber(e.threshold_pct, 1)} %)
              </span>
            </p>
          )}
        </div>
      )}
    </Panel>
  );
}
