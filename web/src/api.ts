// Same-origin calls to the API with the signed-in key; errors become ApiError.
import { ApiError, apiError } from "./lib/errors";

const KEY = "telemetry.apiKey";

export function storedKey(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function storeKey(key: string | null): void {
  try {
    if (key) sessionStorage.setItem(KEY, key);
    else sessionStorage.removeItem(KEY);
  } catch {
    // storage disabled: the key lives only in memory for this page
  }
}

export type Params = Record<string, string | number | boolean | null | undefined>;

export function withQuery(path: string, params: Params = {}): string {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export function headers(key: string | null, extra: Record<string, string> = {}): HeadersInit {
  return key ? { ...extra, "X-API-Key": key } : extra;
}

async function answer<T>(response: Response): Promise<T> {
  const text = await response.text();
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) throw apiError(response.status, body);
  return body as T;
}

export class Api {
  constructor(
    readonly key: string | null,
    private readonly onUnauthorized: () => void = () => {},
  ) {}

  private async call<T>(path: string, init: RequestInit): Promise<T> {
    let response: Response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      if ((error as Error).name === "AbortError") throw error;
      throw new ApiError(0, "network", `the API did not answer (${(error as Error).message})`);
    }
    if (response.status === 401) this.onUnauthorized();
    return answer<T>(response);
  }

  get<T>(path: string, params?: Params, signal?: AbortSignal): Promise<T> {
    return this.call<T>(withQuery(path, params), { headers: headers(this.key), signal });
  }

  put<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>(path, {
      method: "PUT",
      headers: headers(this.key, { "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
  }
}

// The shapes of the dashboard's own endpoints (app/ui, app/health on the dash-api branch).

export interface UiConfig {
  auth: "disabled" | "key";
  /** Whether the key sent (if any) was accepted; the tenant's fields are null otherwise. */
  authenticated?: boolean;
  tenant: string | null;
  metrics: string[] | null;
  forecast: { available: boolean } | null;
  max_points: number;
  intervals: string[];
}

export interface DeviceRow {
  device_id: string;
  site_id: string | null;
  last_ts: string | null;
  metrics: Record<string, number>;
}

export interface SiteRow {
  site_id: string;
  devices: number;
}

export interface Pipeline {
  as_of: string;
  ingest_rate_per_s: number | null;
  ingest_rate_window_s?: number;
  stream: { name?: string; length: number; backlog: number; oldest_pending_age_s: number | null };
  consumers: { name: string; pending: number; idle_ms: number }[];
  dead_letters: number;
  rollup_watermark_lag_s: number | null;
  database?: string;
  workers: { name: string; status: string }[];
}
