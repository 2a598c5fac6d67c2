import type { Api, DeviceRow } from "../api";
import { useResource } from "../hooks";
import { Empty, ErrorMessage, Loading, Panel, Time, formatNumber } from "./Common";
import type { Target } from "./Filters";

const MAX_COLUMNS = 6;

/** The table's metric columns: the chosen metric, then those most devices report. */
export function metricColumns(devices: readonly DeviceRow[], chosen: string, max = MAX_COLUMNS): string[] {
  const counts = new Map<string, number>();
  for (const d of devices) for (const name of Object.keys(d.metrics ?? {})) counts.set(name, (counts.get(name) ?? 0) + 1);
  const ranked = [...counts.keys()].sort((a, b) => (counts.get(b) ?? 0) - (counts.get(a) ?? 0) || a.localeCompare(b));
  const names = chosen && counts.has(chosen) ? [chosen, ...ranked.filter((n) => n !== chosen)] : ranked;
  return names.slice(0, max);
}

/** The hot table: each device's latest value per metric. */
export function StatusTable({
  api,
  target,
  onTarget,
  metric,
}: {
  api: Api;
  target: Target | null;
  onTarget: (t: Target) => void;
  metric: string;
}) {
  const list = useResource<{ devices: DeviceRow[]; truncated: boolean }>(
    (signal) => api.get("/v1/devices", { limit: 50 }, signal),
    "devices",
    10_000,
  );
  const devices = list.data?.devices ?? [];
  const names = metricColumns(devices, metric);
  return (
    <Panel title="Device status" testid="status-panel" aside={list.data?.truncated && <span className="muted">first 50</span>}>
      <ErrorMessage error={list.error} />
      {list.loading && <Loading what="devices" />}
      {list.data && devices.length === 0 && <Empty>No device has sent data yet.</Empty>}
      {devices.length > 0 && (
        <div className="scroll">
          <table data-testid="status-table">
            <thead>
              <tr>
                <th scope="col">device</th>
                <th scope="col">site</th>
                <th scope="col">last seen</th>
                {names.map((n) => (
                  <th scope="col" key={n} className="num">
                    {n}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {devices.map((d) => (
                <tr
                  key={d.device_id}
                  data-testid="status-row"
                  data-device={d.device_id}
                  className={target?.kind === "device" && target.id === d.device_id ? "chosen" : ""}
                >
                  <th scope="row">
                    <button
                      type="button"
                      className="link"
                      onClick={() =>
                        onTarget({ kind: "device", id: d.device_id, siteId: d.site_id, metrics: Object.keys(d.metrics ?? {}) })
                      }
                    >
                      {d.device_id}
                    </button>
                  </th>
                  <td>{d.site_id ?? "—"}</td>
                  <td>
                    <Time value={d.last_ts} />
                  </td>
                  {names.map((n) => (
                    <td key={n} className="num">
                      {formatNumber(d.metrics?.[n], 3)}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Panel>
  );
}

interface DeviceStatus {
  device_id: string;
  site_id: string | null;
  last_seen: string;
  metrics: Record<string, { value: number; ts: string }>;
}

/** The chosen device's latest readings, each with its own time. */
export function DeviceCard({ api, deviceId }: { api: Api; deviceId: string }) {
  const status = useResource<DeviceStatus>(
    (signal) => api.get(`/v1/devices/${encodeURIComponent(deviceId)}/status`, {}, signal),
    deviceId,
    10_000,
  );
  const s = status.data;
  return (
    <div className="device-card" data-testid="device-status">
      <ErrorMessage error={status.error} />
      {s && (
        <dl>
          <dt>last seen</dt>
          <dd>
            <Time value={s.last_seen} />
          </dd>
          {Object.entries(s.metrics)
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([name, m]) => (
              <div key={name} className="pair">
                <dt>{name}</dt>
                <dd title={`at ${m.ts}`}>{formatNumber(m.value, 3)}</dd>
              </div>
            ))}
        </dl>
      )}
    </div>
  );
}
