// The client of ollm's /api/v1: JSON calls with the CSRF header, and replies streamed as
// server-sent events over fetch (EventSource cannot POST).

import type { ErrorBody, ReplyEvent } from "./types";

export type ErrorKind = "http" | "network" | "stream";

export class ApiError extends Error {
  constructor(
    message: string,
    readonly kind: ErrorKind,
    readonly status = 0,
    readonly code: string | null = null,
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
let csrfToken: string | null = null;
let onUnauthorized: () => void = () => {};

export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

function readCookie(name: string): string | null {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

function headers(method: string, json: boolean, accept = "application/json"): Headers {
  const h = new Headers({ Accept: accept });
  if (json) h.set("Content-Type", "application/json");
  if (UNSAFE.has(method)) {
    const token = readCookie("csrf_token") ?? csrfToken;
    if (token) h.set("X-CSRF-Token", token);
  }
  return h;
}

async function errorFrom(response: Response): Promise<ApiError> {
  let body: ErrorBody | null = null;
  try {
    const data = await response.json();
    const error = data?.error;
    body = typeof error === "string" ? { message: error } : error ?? null;
  } catch {
    // not JSON: keep the status alone
  }
  const retry = Number(response.headers.get("Retry-After"));
  if (response.status === 401) onUnauthorized();
  return new ApiError(
    body?.message || `${response.status} ${response.statusText}`,
    "http",
    response.status,
    body?.code ?? null,
    Number.isFinite(retry) && retry > 0 ? retry : null,
  );
}

async function send(method: string, path: string, body?: unknown, signal?: AbortSignal, accept?: string) {
  try {
    return await fetch(path, {
      method,
      headers: headers(method, body !== undefined, accept),
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError("network", "network");
  }
}

export async function api<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const response = await send(method, path, body, signal);
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

/** POST that answers with server-sent events; yields each event until ``[DONE]``.
 * A stream that ends without ``[DONE]`` (the connection dropped) throws a "stream" error. */
export async function* streamEvents(path: string, body: unknown, signal: AbortSignal): AsyncGenerator<ReplyEvent> {
  const response = await send("POST", path, body, signal, "text/event-stream");
  if (!response.ok) throw await errorFrom(response);
  if (!response.body) throw new ApiError("stream", "stream");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<string>;
      try {
        chunk = await reader.read();
      } catch (e) {
        if ((e as Error).name === "AbortError") throw e;
        throw new ApiError("stream", "stream");
      }
      if (chunk.done) break;
      buffer += chunk.value;
      let end: number;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, "");
        buffer = buffer.slice(end + 1);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trimStart();
        if (data === "[DONE]") return;
        const event = JSON.parse(data);
        if (event && typeof event.type === "string") yield event as ReplyEvent;
        else if (event && event.error) {
          const error = typeof event.error === "string" ? { message: event.error } : event.error;
          yield { type: "error", error };
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  throw new ApiError("stream", "stream");
}

/** A sentence a person can act on, for any failure of a call. */
export function humanError(error: unknown, model?: string | null): string {
  if (!(error instanceof ApiError)) return "Something went wrong in the page. Reload and try again.";
  if (error.kind === "network") return "Can't reach the ollm server. Check that it is running and your connection is up, then retry.";
  if (error.kind === "stream") return "The connection was lost while the reply was streaming. What arrived so far is kept.";
  const { status, code } = error;
  if (status === 404 && code === "model_not_found")
    return `The model ${model ? `"${model}" ` : ""}is not available on this server. Pick another model in the Model list.`;
  if (status === 404 && code === "chat_not_found") return "This chat no longer exists (it may have been deleted).";
  if (status === 429) {
    const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : " Try again in a moment.";
    return `The server is busy: every place in its queue is taken.${wait}`;
  }
  if (status === 400 && code === "context_length_exceeded")
    // Older turns are dropped to fit, so only the new message (with the system prompt and
    // room for the reply) can be too long: a new chat would not help.
    return "This message is too long for the model's context window (with the system prompt and room for the reply). Shorten it, or lower Max tokens in Chat settings.";
  if (status === 409) return "A reply is still being written in this chat. Wait for it to finish, or press Stop.";
  if (status === 503) return "The server is unavailable right now (it may be restarting). Try again in a moment.";
  if (status === 413) return "That message is too large for the server to accept.";
  if (status >= 500) return `The server had a problem: ${sentence(error.message)}`;
  return sentence(error.message);
}

function sentence(text: string): string {
  const trimmed = text.trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}
