import { type FormEvent, useState } from "react";

export function SignIn({ onKey, error }: { onKey: (key: string) => void; error: string | null }) {
  const [key, setKey] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (key.trim()) onKey(key.trim());
  };
  return (
    <main className="signin">
      <form onSubmit={submit} data-testid="signin" aria-labelledby="signin-title">
        <h1 id="signin-title">Telemetry dashboard</h1>
        <label htmlFor="signin-key">API key</label>
        <input
          id="signin-key"
          data-testid="signin-key"
          type="password"
          autoComplete="off"
          value={key}
          onChange={(e) => setKey(e.target.value)}
          autoFocus
        />
        <p className="muted">Kept in this tab's session storage only (python -m scripts.keys create …).</p>
        {error && (
          <p className="message error" role="alert" data-testid="signin-error">
            {error}
          </p>
        )}
        <button type="submit" data-testid="signin-submit" disabled={!key.trim()}>
          Sign in
        </button>
      </form>
    </main>
  );
}
