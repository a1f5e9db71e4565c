// Small helpers: client-side routes, date groups for the sidebar, reply stats.

import { useEffect, useState } from "preact/hooks";
import type { Chat, Message } from "./types";

export type Route = { name: "new" } | { name: "chat"; id: string } | { name: "login" };

export function parseRoute(path: string): Route {
  if (path === "/login") return { name: "login" };
  const match = /^\/c\/([^/]+)\/?$/.exec(path);
  if (match) return { name: "chat", id: decodeURIComponent(match[1]) };
  return { name: "new" };
}

export function navigate(path: string, replace = false): void {
  if (path === location.pathname) return;
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  window.dispatchEvent(new Event("ollm:navigate"));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.pathname));
  useEffect(() => {
    const update = () => setRoute(parseRoute(location.pathname));
    window.addEventListener("popstate", update);
    window.addEventListener("ollm:navigate", update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener("ollm:navigate", update);
    };
  }, []);
  return route;
}

export const GROUPS = ["Pinned", "Today", "Yesterday", "Previous 7 days", "Older"] as const;
export type Group = (typeof GROUPS)[number];

function startOfDay(date: Date): number {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
}

export function groupChats(chats: Chat[], now = new Date()): [Group, Chat[]][] {
  const today = startOfDay(now);
  const day = 86_400_000;
  const groups = new Map<Group, Chat[]>(GROUPS.map((g) => [g, []]));
  const sorted = [...chats].sort((a, b) => Date.parse(b.updated_at) - Date.parse(a.updated_at));
  for (const chat of sorted) {
    const at = Date.parse(chat.updated_at);
    let group: Group;
    if (chat.pinned) group = "Pinned";
    else if (at >= today) group = "Today";
    else if (at >= today - day) group = "Yesterday";
    else if (at >= today - 7 * day) group = "Previous 7 days";
    else group = "Older";
    groups.get(group)!.push(chat);
  }
  return [...groups.entries()].filter(([, items]) => items.length > 0);
}

/** "42 tokens · 61.3 tok/s · TTFT 0.35 s" from a reply's stored counts and timings. */
export function replyStats(message: Message): string | null {
  if (message.completion_tokens == null) return null;
  const parts = [`${message.completion_tokens} ${message.completion_tokens === 1 ? "token" : "tokens"}`];
  if (message.tokens_per_second != null) parts.push(`${message.tokens_per_second.toFixed(1)} tok/s`);
  if (message.ttft_ms != null) parts.push(`TTFT ${(message.ttft_ms / 1000).toFixed(2)} s`);
  return parts.join(" · ");
}

export function download(url: string): void {
  const link = document.createElement("a");
  link.href = url;
  link.download = "";
  document.body.appendChild(link);
  link.click();
  link.remove();
}
