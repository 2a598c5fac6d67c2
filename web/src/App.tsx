import { useCallback, useEffect, useMemo, useState } from "react";
import { Api, type UiConfig, storeKey, storedKey } from "./api";
import { AlertFeed } from "./components/Alerts";
import { AggregatePanel, EnergyPanel, ForecastPanel } from "./components/Charts";
import { ErrorMessage, Loading } from "./components/Common";
import { Filters, type Target } from "./components/Filters";
import { GeneratorForm } from "./components/Generator";
import { PipelinePanel } from "./components/Pipeline";
import { SignIn } from "./components/SignIn";
import { DeviceCard, StatusTable } from "./components/Status";
import { ApiError, describeError } from "./lib/errors";
import { DEFAULT_INTERVALS, type TimeRange, chooseInterval, resolveRange } from "./lib/interval";

type Session =
  | { phase: "loading" }
  | { phase: "signin"; error: string | null }
  | { phase: "ready"; config: UiConfig }
  | { phase: "failed"; error: unknown };

export function App() {
  const [key, setKey] = useState<string | null>(storedKey);
  const [session, setSession] = useState<Session>({ phase: "loading" });

  const signOut = useCallback((error: string | null = null) => {
    storeKey(null);
    setKey(null);
    setSession({ phase: "signin", error });
  }, []);

  useEffect(() => {
    const controller = new AbortController();
    new Api(key)
      .get<UiConfig>("/v1/ui/config", {}, controller.signal)
      .then((config) => {
        if (config.auth === "disabled" || config.tenant) setSession({ phase: "ready", config });
        else setSession({ phase: "signin", error: key ? "This key was not accepted." : null });
      })
      .catch((error) => {
        if (controller.signal.aborted) return;
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
          storeKey(null);
          setSession({ phase: "signin", error: describeError(error) });
        } else setSession({ phase: "failed", error });
      });
    return () => controller.abort();
  }, [key]);

  const api = useMemo(
    () => new Api(key, () => signOut("The API refused the key (401); sign in again.")),
    [key, signOut],
  );

  if (session.phase === "loading") return <Loading what="the dashboard" />;
  if (session.phase === "failed") return <ErrorMessage error={session.error} testid="config-error" />;
  if (session.phase === "signin")
    return (
      <SignIn
        error={session.error}
        onKey={(k) => {
          storeKey(k);
          setSession({ phase: "loading" });
          setKey(k);
        }}
      />
    );
  return <Dashboard api={api} config={session.config} onSignOut={() => signOut()} />;
}

function Dashboard({ api, config, onSignOut }: { api: Api; config: UiConfig; onSignOut: () => void }) {
  const [target, setTarget] = useState<Target | null>(null);
  const [metric, setMetric] = useState<string>("");
  const [range, setRange] = useState<TimeRange>({ fromMs: 0, toMs: 0, preset: "1h" });
  const resolved = resolveRange(range);
  const intervals = config.intervals.length ? config.intervals : DEFAULT_INTERVALS;
  const choice = chooseInterval(resolved.fromMs, resolved.toMs, config.max_points, intervals);
  const metrics = useMemo(
    () => [...new Set([...(target?.metrics ?? []), ...(config.metrics ?? [])])].sort(),
    [target, config.metrics],
  );
  const chooseTarget = (t: Target) => {
    setTarget(t);
    if (t.metrics.length && !t.metrics.includes(metric)) setMetric(t.metrics.includes("power_w") ? "power_w" : t.metrics[0]);
  };
  useEffect(() => {
    if (!metric && metrics.length) setMetric(metrics.includes("power_w") ? "power_w" : metrics[0]);
  }, [metric, metrics]);
  const site = target ? (target.kind === "site" ? target.id : target.siteId) : null;

  return (
    <div className="app">
      <header className="top">
        <h1>Telemetry</h1>
        <span className="muted" data-testid="tenant">
          {config.auth === "disabled" ? "auth disabled · tenant " : "tenant "}
          {config.tenant ?? "default"}
        </span>
        {config.auth === "key" && (
          <button type="button" onClick={onSignOut} data-testid="signout">
            Sign out
          </button>
        )}
      </header>
      <Filters
        api={api}
        target={target}
        onTarget={chooseTarget}
        metrics={metrics}
        metric={metric}
        onMetric={setMetric}
        range={range}
        onRange={setRange}
        choice={choice}
        maxPoints={config.max_points}
      />
      <main className="grid">
        <div className="main-column">
          {!target && (
            <section className="panel" data-testid="no-target">
              <p className="message muted">Choose a device or a site above (or a device in the status table) to chart it.</p>
            </section>
          )}
          {target && metric && (
            <>
              <AggregatePanel api={api} target={target} metric={metric} range={range} choice={choice} />
              <ForecastPanel api={api} target={target} metric={metric} available={config.forecast?.available ?? false} />
              {target.kind === "device" && <DeviceCard api={api} deviceId={target.id} />}
            </>
          )}
          <EnergyPanel api={api} site={site} range={range} maxPoints={config.max_points} intervals={intervals} />
          <StatusTable api={api} target={target} onTarget={chooseTarget} metric={metric} />
        </div>
        <aside className="side-column">
          <AlertFeed apiKey={api.key} />
          <PipelinePanel api={api} />
          <GeneratorForm api={api} />
        </aside>
      </main>
    </div>
  );
}
