// The shell: who is signed in (or the login page), the sidebar and the chat.

import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api, ApiError, humanError, setCsrfToken, setUnauthorizedHandler } from "../api";
import type { AuthConfig, Chat, ChatPage, User } from "../types";
import { navigate, useRoute } from "../util";
import { ChatView } from "./ChatView";
import { Login } from "./Login";
import { Sidebar } from "./Sidebar";

type AuthState = "loading" | "in" | "out" | "down";
const MODEL_KEY = "ollm.model";
const PAGE = 100; // chats listed at first; "Show more chats" adds as many

interface ModelList {
  data: { id: string }[];
}

export function App() {
  const route = useRoute();
  const [config, setConfig] = useState<AuthConfig | null>(null);
  const [state, setState] = useState<AuthState>("loading");
  const [user, setUser] = useState<User | null>(null);
  const [bootError, setBootError] = useState("");
  const [chats, setChats] = useState<Chat[]>([]);
  const [query, setQuery] = useState("");
  const [listLimit, setListLimit] = useState(PAGE);
  const [chatTotal, setChatTotal] = useState(0);
  const [models, setModels] = useState<string[]>([]);
  const [defaultModel, setDefaultModel] = useState<string | null>(null);
  const [sidebarOpen, setSidebarOpen] = useState(false);
  const afterLogin = useRef("/");
  const wantSearch = useRef(false);

  const boot = useCallback(async () => {
    setState("loading");
    try {
      const cfg = await api<AuthConfig>("GET", "/api/v1/auth/config");
      setConfig(cfg);
      if (!cfg.auth) {
        setUser(null);
        setState("in");
        return;
      }
      try {
        const me = await api<{ user: User }>("GET", "/api/v1/auth/me");
        setUser(me.user);
        setState("in");
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) setState("out");
        else throw e;
      }
    } catch (e) {
      setBootError(humanError(e));
      setState("down");
    }
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(() => setState((s) => (s === "in" ? "out" : s)));
    boot();
  }, [boot]);

  // Signed out: the login page (coming back where the person was going afterwards).
  useEffect(() => {
    if (state === "out" && route.name !== "login") {
      afterLogin.current = location.pathname;
      navigate("/login", true);
    } else if (state === "in" && route.name === "login") {
      navigate(afterLogin.current, true);
      afterLogin.current = "/";
    }
  }, [state, route.name]);

  const refreshChats = useCallback(async () => {
    const q = query.trim();
    try {
      const items: Chat[] = [];
      let total = 0;
      // Pages of at most 200 (the API's limit) until the number asked for is listed.
      for (let offset = 0; offset < listLimit; offset += 200) {
        const limit = Math.min(200, listLimit - offset);
        const params = new URLSearchParams({ limit: String(limit), offset: String(offset) });
        if (q) params.set("q", q);
        const page = await api<ChatPage>("GET", `/api/v1/chats?${params}`);
        items.push(...page.items);
        total = page.total;
        if (page.items.length < limit) break;
      }
      setChats(items);
      setChatTotal(total);
    } catch {
      // the list stays as it was; the chat view reports failures of its own calls
    }
  }, [query, listLimit]);

  useEffect(() => {
    if (state !== "in") return;
    const timer = setTimeout(refreshChats, query ? 200 : 0);
    return () => clearTimeout(timer);
  }, [state, refreshChats, query]);

  useEffect(() => {
    if (state !== "in") return;
    (async () => {
      try {
        const list = await api<ModelList>("GET", "/v1/models");
        // The server's order: its bundled models first, the default chat model leading.
        const names = list.data.map((m) => m.id);
        setModels(names);
        const saved = localStorage.getItem(MODEL_KEY);
        setDefaultModel(saved && names.includes(saved) ? saved : names[0] ?? null);
      } catch {
        setModels([]);
      }
    })();
  }, [state]);

  // Phone width: Escape closes the sidebar; opening it moves the focus into it.
  useEffect(() => {
    if (!sidebarOpen) return;
    document.querySelector<HTMLElement>(wantSearch.current ? ".search input" : ".sidebar .new-chat")?.focus();
    wantSearch.current = false;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape" && !document.querySelector("dialog[open], [role=menu]")) {
        setSidebarOpen(false);
        document.querySelector<HTMLElement>("[aria-label='Open sidebar']")?.focus();
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [sidebarOpen]);

  // Shortcuts: Ctrl/Cmd+Shift+O a new chat, Ctrl/Cmd+K the chat search.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const mod = e.ctrlKey || e.metaKey;
      if (mod && e.shiftKey && e.key.toLowerCase() === "o") {
        e.preventDefault();
        navigate("/");
        window.dispatchEvent(new Event("ollm:new-chat"));
      } else if (mod && !e.shiftKey && e.key.toLowerCase() === "k") {
        e.preventDefault();
        wantSearch.current = true;
        setSidebarOpen(true);
        document.querySelector<HTMLInputElement>(".search input")?.focus();
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, []);

  const chooseDefaultModel = useCallback((name: string) => {
    localStorage.setItem(MODEL_KEY, name);
    setDefaultModel(name);
  }, []);

  const logout = useCallback(async () => {
    try {
      await api("POST", "/api/v1/auth/logout");
    } catch {
      // logged out locally all the same
    }
    setCsrfToken(null);
    setUser(null);
    setChats([]);
    // The next person at this browser starts blank.
    for (const key of Object.keys(sessionStorage)) if (key.startsWith("ollm.draft")) sessionStorage.removeItem(key);
    setState("out");
  }, []);

  const loggedIn = useCallback((u: User, csrf: string) => {
    setCsrfToken(csrf);
    setUser(u);
    setConfig((c) => c && { ...c, signup: c.signup });
    setState("in");
  }, []);

  if (state === "loading") return <div class="splash" aria-busy="true">Loading…</div>;
  if (state === "down")
    return (
      <div class="splash">
        <div role="alert" class="error-box">
          <p>{bootError}</p>
          <button type="button" class="btn" onClick={boot}>
            Retry
          </button>
        </div>
      </div>
    );
  if (state === "out" || route.name === "login")
    return state === "out" ? <Login signup={config?.signup ?? false} onLoggedIn={loggedIn} /> : null;

  const chatId = route.name === "chat" ? route.id : null;
  return (
    <div class={`layout${sidebarOpen ? " sidebar-open" : ""}`}>
      <Sidebar
        chats={chats}
        query={query}
        onQuery={setQuery}
        more={chatTotal > chats.length ? () => setListLimit((n) => n + PAGE) : null}
        currentId={chatId}
        user={config?.auth ? user : null}
        onLogout={logout}
        onChanged={refreshChats}
        onClose={() => setSidebarOpen(false)}
      />
      <div class="backdrop" onClick={() => setSidebarOpen(false)} />
      <ChatView
        chatId={chatId}
        models={models}
        defaultModel={defaultModel}
        onDefaultModel={chooseDefaultModel}
        onChatsChanged={refreshChats}
        onOpenSidebar={() => setSidebarOpen(true)}
        sidebarOpen={sidebarOpen}
      />
    </div>
  );
}
