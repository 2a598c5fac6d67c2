// Times as the API spells them (ISO 8601 with Z, or the alert payload's "YYYY-MM-DD HH:MM:SS"
// in UTC) shown in the viewer's zone, with the UTC spelling for the title attribute.

/** Epoch ms of an API time; a time without a zone is UTC. NaN when unreadable. */
export function parseApiTime(value: string | number | null | undefined): number {
  if (value === null || value === undefined) return NaN;
  if (typeof value === "number") return value;
  let text = value.trim().replace(" ", "T");
  // JavaScript reads at most milliseconds: drop the rest of a microsecond fraction.
  text = text.replace(/(\.\d{3})\d+/, "$1");
  if (!/(Z|[+-]\d{2}:?\d{2})$/i.test(text)) text += "Z";
  return Date.parse(text);
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** "2025-01-15 10:00:00 UTC". */
export function formatUtc(ms: number): string {
  if (!Number.isFinite(ms)) return "";
  const d = new Date(ms);
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`
  );
}

/** The viewer's local time (or the given zone), with the zone's short name. */
export function formatLocal(ms: number, timeZone?: string, locale = "en-GB"): string {
  if (!Number.isFinite(ms)) return "—";
  return new Intl.DateTimeFormat(locale, {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
    timeZoneName: "short",
  }).format(new Date(ms));
}

/** "12 s ago", "3 min ago": how long before `nowMs`. */
export function formatAge(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** The value of a datetime-local input for epoch ms, in the viewer's zone. */
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}`
  );
}

/** Epoch ms of a datetime-local input's value (the viewer's zone); NaN when empty. */
export function fromLocalInput(value: string): number {
  if (!value) return NaN;
  return new Date(value).getTime();
}
