import { type FormEvent, useEffect, useState } from "react";
import type { Api } from "../api";
import { type FieldErrors, fieldErrors } from "../lib/errors";
import { ErrorMessage, Loading, Panel, Time } from "./Common";

type Config = Record<string, number | boolean | string | null>;

const HELP: Record<string, string> = {
  rate: "events/s outside bursts",
  burst_multiplier: "rate × this during a burst",
  burst_seconds: "0 disables bursts",
  burst_every_s: "seconds between burst starts",
  duplicate_rate: "share re-sent with the same id",
  out_of_order_rate: "share sent late",
  max_out_of_order_ms: "how late, at most",
  correction_rate: "share re-sent with new values",
  batch_size: "events per request",
  paused: "stop producing",
};

/** The form's values as the server takes them: numbers, booleans; an unreadable number is
 * sent as typed so the server's message names it. */
export function formBody(values: Record<string, string | boolean>): Config {
  const body: Config = {};
  for (const [name, value] of Object.entries(values)) {
    if (typeof value === "boolean") body[name] = value;
    else if (value.trim() === "") body[name] = null;
    else body[name] = Number.isFinite(Number(value)) ? Number(value) : value;
  }
  return body;
}

function formValues(config: Config): Record<string, string | boolean> {
  const values: Record<string, string | boolean> = {};
  for (const [name, value] of Object.entries(config)) {
    if (name === "updated_at") continue;
    values[name] = typeof value === "boolean" ? value : value === null ? "" : String(value);
  }
  return values;
}

export function GeneratorForm({ api }: { api: Api }) {
  const [values, setValues] = useState<Record<string, string | boolean> | null>(null);
  const [updatedAt, setUpdatedAt] = useState<string | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [errors, setErrors] = useState<FieldErrors>({ fields: {}, form: null });
  const [saving, setSaving] = useState(false);
  const [saved, setSaved] = useState(false);

  useEffect(() => {
    const controller = new AbortController();
    api
      .get<Config>("/v1/generator/config", {}, controller.signal)
      .then((config) => {
        setValues(formValues(config));
        setUpdatedAt(typeof config.updated_at === "string" ? config.updated_at : null);
      })
      .catch((error) => {
        if (!controller.signal.aborted) setLoadError(error);
      });
    return () => controller.abort();
  }, [api]);

  const names = values ? Object.keys(values) : [];
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!values) return;
    setSaving(true);
    setSaved(false);
    try {
      const stored = await api.put<Config>("/v1/generator/config", formBody(values));
      setValues(formValues(stored));
      setUpdatedAt(typeof stored.updated_at === "string" ? stored.updated_at : null);
      setErrors({ fields: {}, form: null });
      setSaved(true);
    } catch (error) {
      setErrors(fieldErrors(error, names));
    } finally {
      setSaving(false);
    }
  };

  return (
    <Panel
      title="Generator configuration"
      testid="generator-panel"
      aside={updatedAt ? <span className="muted">stored <Time value={updatedAt} testid="generator-updated-at" /></span> : <span className="muted">defaults (never stored)</span>}
    >
      <ErrorMessage error={loadError} />
      {!values && !loadError && <Loading what="the generator configuration" />}
      {values && (
        <form onSubmit={submit} noValidate data-testid="generator-form" className="generator">
          {errors.form && (
            <p className="message error" role="alert" data-testid="generator-form-error">
              {errors.form}
            </p>
          )}
          {names.map((name) => {
            const value = values[name];
            const error = errors.fields[name];
            const id = `gen-${name}`;
            return (
              <div key={name} className={`field${error ? " invalid" : ""}`}>
                <label htmlFor={id}>{name}</label>
                {typeof value === "boolean" ? (
                  <input
                    id={id}
                    type="checkbox"
                    checked={value}
                    data-testid={id}
                    aria-invalid={!!error}
                    aria-describedby={error ? `${id}-error` : `${id}-help`}
                    onChange={(e) => setValues({ ...values, [name]: e.target.checked })}
                  />
                ) : (
                  <input
                    id={id}
                    type="text"
                    inputMode="decimal"
                    value={value}
                    data-testid={id}
                    aria-invalid={!!error}
                    aria-describedby={error ? `${id}-error` : `${id}-help`}
                    onChange={(e) => setValues({ ...values, [name]: e.target.value })}
                  />
                )}
                <small id={`${id}-help`} className="muted">
                  {HELP[name] ?? ""}
                </small>
                {error && (
                  <span id={`${id}-error`} className="field-error" role="alert" data-testid={`field-error-${name}`}>
                    {error}
                  </span>
                )}
              </div>
            );
          })}
          <div className="actions">
            <button type="submit" disabled={saving} data-testid="gen-save">
              {saving ? "Saving…" : "Save"}
            </button>
            {saved && (
              <span className="message ok" role="status" data-testid="generator-saved">
                Saved.
              </span>
            )}
          </div>
        </form>
      )}
    </Panel>
  );
}
