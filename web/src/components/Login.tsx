// Log in, or create an account when the server allows sign-up.

import { useState } from "preact/hooks";
import { api, ApiError, humanError } from "../api";
import type { User } from "../types";

export function Login(props: { signup: boolean; onLoggedIn: (user: User, csrf: string) => void }) {
  const [mode, setMode] = useState<"login" | "signup">("login");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const signingUp = mode === "signup";

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      const path = signingUp ? "/api/v1/auth/signup" : "/api/v1/auth/login";
      const result = await api<{ user: User; csrf_token: string }>("POST", path, { username, password });
      props.onLoggedIn(result.user, result.csrf_token);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setError("Wrong username or password.");
      else if (err instanceof ApiError && err.status === 429)
        setError(`Too many attempts. Try again${err.retryAfter ? ` in ${err.retryAfter} s` : " later"}.`);
      else if (err instanceof ApiError && err.status === 409) setError("That username is taken. Pick another one.");
      else setError(humanError(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <form class="login-card" onSubmit={submit}>
        <div class="brand big">ollm</div>
        <h1>{signingUp ? "Create account" : "Log in"}</h1>
        <label for="login-username">Username</label>
        <input
          id="login-username"
          autoComplete="username"
          autoFocus
          required
          value={username}
          onInput={(e) => setUsername(e.currentTarget.value)}
        />
        <label for="login-password">Password</label>
        <input
          id="login-password"
          type="password"
          autoComplete={signingUp ? "new-password" : "current-password"}
          required
          minLength={signingUp ? 8 : undefined}
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
        {signingUp && (
          <small class="muted">At least 8 characters of two kinds (letters and digits, or a space), or 16 of any.</small>
        )}
        {error && (
          <p role="alert" class="form-error">
            {error}
          </p>
        )}
        <button type="submit" class="btn primary wide" disabled={busy}>
          {signingUp ? "Sign up" : "Log in"}
        </button>
        {signingUp ? (
          <button type="button" class="link-btn" onClick={() => (setMode("login"), setError(""))}>
            I have an account: log in
          </button>
        ) : props.signup ? (
          <button type="button" class="link-btn" onClick={() => (setMode("signup"), setError(""))}>
            Create account
          </button>
        ) : (
          <p class="muted small">Ask an administrator for an account.</p>
        )}
      </form>
    </main>
  );
}
