// One chat: its messages on the active branch, the reply streaming into it, and the box
// to write the next message. A new chat (route "/") is created on its first message.

import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { api, ApiError, humanError, streamEvents } from "../api";
import type { Chat, ChatDetail, Message } from "../types";
import { navigate } from "../util";
import { Composer } from "./Composer";
import { Icon } from "./icons";
import { MessageView } from "./MessageView";
import { SettingsDialog, type ChatSettings } from "./SettingsDialog";

interface Props {
  chatId: string | null;
  models: string[];
  defaultModel: string | null;
  onDefaultModel: (name: string) => void;
  onChatsChanged: () => void;
  onOpenSidebar: () => void;
  sidebarOpen: boolean;
}

/** A reply being generated: what is shown instead of the branch's tail meanwhile. */
interface Run {
  base: Message[];
  user: Message | null;
  assistant: Message | null;
  text: string;
  queue: number | null;
  stopping: boolean;
}

interface Failure {
  message: string;
  retry: (() => void) | null;
}

let localIds = -1;

function draftMessage(chatId: string, role: "user" | "assistant", content: string): Message {
  return {
    id: localIds--,
    chat_id: chatId,
    parent_id: null,
    role,
    content,
    model: null,
    status: role === "user" ? "complete" : "streaming",
    prompt_tokens: null,
    completion_tokens: null,
    ttft_ms: null,
    tokens_per_second: null,
    created_at: new Date().toISOString(),
  };
}

/** Where the Message box's unsent text of a chat (or of a new chat) is kept. */
const draftKey = (chatId: string | null) => `ollm.draft:${chatId ?? "new"}`;
const EMPTY_SETTINGS: ChatSettings = { system_prompt: null, params: {} };

export function ChatView(props: Props) {
  const [detail, setDetail] = useState<ChatDetail | null>(null);
  const [loading, setLoading] = useState(false);
  const [run, setRun] = useState<Run | null>(null);
  const [failure, setFailure] = useState<Failure | null>(null);
  // Each chat keeps its own unsent text, across chat switches and page reloads.
  const [text, setText] = useState(() => sessionStorage.getItem(draftKey(props.chatId)) ?? "");
  const [draftModel, setDraftModel] = useState<string | null>(null);
  const [draftSettings, setDraftSettings] = useState<ChatSettings>(EMPTY_SETTINGS);
  const [settingsOpen, setSettingsOpen] = useState(false);
  const [stoppingOther, setStoppingOther] = useState(false);
  const [scrolledUp, setScrolledUp] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const created = useRef<string | null>(null); // the chat this view just created
  const creating = useRef(false);
  const loadingChat = useRef<{ id: string; pending: Promise<ChatDetail | null> } | null>(null);
  const keepDraft = useRef(false); // back to "/" after a failed first send: keep the state
  const shown = useRef<string | null>(props.chatId);
  const runToken = useRef(0); // bumped when the view leaves a chat: its reply runs on unseen
  const abort = useRef<AbortController | null>(null);
  const textRef = useRef(text);
  textRef.current = text;
  const scroller = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const composerFocus = useRef<() => void>(() => {});
  const latest = useRef<{
    send: (content: string) => void;
    regenerate: (messageId?: number) => void;
    edit: (message: Message, content: string) => void;
    switchBranch: (messageId: number) => void;
  }>(null!);

  const chatId = props.chatId;
  const model = detail ? detail.model ?? props.defaultModel : draftModel ?? props.defaultModel;

  const load = useCallback((id: string, quiet = false) => {
    const pending = fetchChat(id, quiet);
    if (!quiet) loadingChat.current = { id, pending };
    return pending;
  }, []);

  const fetchChat = async (id: string, quiet: boolean): Promise<ChatDetail | null> => {
    if (!quiet) setLoading(true);
    try {
      const chat = await api<ChatDetail>("GET", `/api/v1/chats/${id}`);
      if (shown.current === id) setDetail(chat); // not a chat the person has since left
      return chat;
    } catch (e) {
      if (!quiet && shown.current === id) {
        setDetail(null);
        const gone = e instanceof ApiError && e.status === 404;
        setFailure({ message: humanError(e), retry: gone ? null : () => load(id) });
      }
      return null;
    } finally {
      if (!quiet) setLoading(false);
    }
  };

  // Follow the route: load the chat (unless this view just created it), or start afresh.
  useEffect(() => {
    if (chatId && chatId === created.current) return;
    created.current = null;
    shown.current = chatId;
    if (keepDraft.current) {
      keepDraft.current = false;
      setDetail(null);
      if (textRef.current) sessionStorage.setItem(draftKey(null), textRef.current);
      return;
    }
    // A reply streaming in the chat being left goes on (the server keeps writing and saving
    // it; coming back follows it), but no longer updates this view.
    runToken.current++;
    abort.current = null;
    setText(sessionStorage.getItem(draftKey(chatId)) ?? "");
    setRun(null);
    setFailure(null);
    setNotice(null);
    setScrolledUp(false);
    setSettingsOpen(false);
    stick.current = true;
    if (chatId) load(chatId);
    else {
      setDetail(null);
      setDraftModel(null);
      setDraftSettings(EMPTY_SETTINGS);
    }
    composerFocus.current();
  }, [chatId, load]);

  useEffect(() => {
    const fresh = () => {
      if (!chatId && !run) {
        setFailure(null);
        composerFocus.current();
      }
    };
    window.addEventListener("ollm:new-chat", fresh);
    return () => window.removeEventListener("ollm:new-chat", fresh);
  }, [chatId, run]);

  // A reply still being written elsewhere (another tab, before a reload): follow it.
  useEffect(() => {
    if (!detail?.generating || run) return;
    const timer = setTimeout(() => load(detail.id, true), 1000);
    return () => clearTimeout(timer);
  }, [detail, run, load]);

  useEffect(() => {
    const key = draftKey(shown.current);
    if (text) sessionStorage.setItem(key, text);
    else sessionStorage.removeItem(key);
  }, [text]);

  useEffect(() => {
    document.title = detail ? `${detail.title} · ollm` : "ollm";
  }, [detail?.title]);

  // Keep the newest text in view while the person has not scrolled up.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  });

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    if (stick.current === scrolledUp) setScrolledUp(!stick.current);
  };

  const toBottom = () => {
    const el = scroller.current;
    stick.current = true;
    setScrolledUp(false);
    el?.scrollTo({ top: el.scrollHeight, behavior: "smooth" });
  };

  /** Stream one reply into the view; on failure, say what happened and offer a retry. */
  const runReply = async (
    id: string,
    path: string,
    body: Record<string, unknown>,
    base: Message[],
    pendingUser: Message | null,
    retry: (failedBeforeStart: boolean) => void,
    restore: string | null = null,
  ): Promise<{ started: boolean; failed: boolean }> => {
    const controller = new AbortController();
    const token = ++runToken.current;
    const mine = () => runToken.current === token;
    abort.current = controller;
    stick.current = true;
    setScrolledUp(false);
    setFailure(null);
    setNotice(null);
    setRun({ base, user: pendingUser, assistant: draftMessage(id, "assistant", ""), text: "", queue: null, stopping: false });
    let acc = "";
    let frame = 0;
    let started = false;
    let user = pendingUser;
    let assistant: Message | null = null;
    let problem: unknown = null;
    let streamProblem: string | null = null;
    // Markdown is re-rendered once per animation frame with all text so far, not per token.
    const paint = () => {
      frame = 0;
      if (mine()) setRun((r) => r && { ...r, text: acc, queue: null });
    };
    try {
      for await (const event of streamEvents(path, body, controller.signal)) {
        if (event.type === "start") {
          started = true;
          user = event.user_message ?? user;
          assistant = event.message;
          if (event.dropped_turns > 0 && mine()) {
            const n = event.dropped_turns;
            setNotice(`${n} earlier ${n === 1 ? "turn does" : "turns do"} not fit the model's context and ${n === 1 ? "was" : "were"} left out of this reply.`);
          }
          if (mine()) setRun((r) => r && { ...r, user: event.user_message ?? r.user, assistant: event.message });
          props.onChatsChanged(); // the server titles a new chat from its first message
        } else if (event.type === "queue") {
          if (mine()) setRun((r) => r && { ...r, queue: event.position });
        } else if (event.type === "delta") {
          acc += event.content;
          if (!frame) frame = requestAnimationFrame(paint);
        } else if (event.type === "done") {
          if (event.error) streamProblem = event.error.message;
          else if (event.finish_reason === "length" && mine())
            setNotice("The reply stopped at its length limit (Max tokens in Chat settings, or the context window).");
        } else if (event.type === "error") {
          streamProblem = event.error.message;
        }
      }
    } catch (e) {
      if ((e as Error).name !== "AbortError") problem = e;
    } finally {
      if (frame) cancelAnimationFrame(frame);
      if (abort.current === controller) abort.current = null;
    }
    const outcome = { started, failed: !!(problem || streamProblem) };
    if (!mine()) {
      props.onChatsChanged();
      return outcome;
    }
    const fresh = await load(id, true);
    if (!mine()) return outcome;
    if (fresh === null) {
      // The server cannot be reached: keep showing what arrived, marked as cut short.
      const kept = [...base, ...(user ? [user] : [])];
      if (assistant && acc) kept.push({ ...assistant, content: acc, status: "interrupted" });
      setDetail((d) => d && { ...d, messages: kept });
    }
    setRun(null);
    props.onChatsChanged();
    if (problem || streamProblem) {
      const message = problem ? humanError(problem, fresh?.model ?? model) : `The reply failed: ${streamProblem}`;
      // Nothing reached the server: the typed text goes back to the box, never lost.
      if (!started && restore) setText((t) => t || restore);
      setFailure({ message, retry: () => retry(!started) });
    }
    return outcome;
  };

  /** The chat to send to: the one shown, the one in the address bar once it has loaded
   * (Enter may come before it has), or a new one (``isNew``). */
  const ensureChat = async (): Promise<{ chat: ChatDetail; isNew: boolean }> => {
    if (detail) return { chat: detail, isNew: false };
    if (chatId) {
      const opening = loadingChat.current?.id === chatId ? loadingChat.current.pending : load(chatId);
      const chat = await opening;
      if (!chat || shown.current !== chatId) throw new ApiError("chat not loaded", "http", 404, "chat_not_found");
      return { chat, isNew: false };
    }
    const chat = await api<Chat>("POST", "/api/v1/chats", {
      model: model ?? undefined,
      system_prompt: draftSettings.system_prompt || undefined,
      params: draftSettings.params,
    });
    created.current = chat.id;
    shown.current = chat.id;
    const fresh: ChatDetail = { ...chat, messages: [], generating: false };
    setDetail(fresh);
    navigate(`/c/${chat.id}`);
    props.onChatsChanged();
    return { chat: fresh, isNew: true };
  };

  const send = async (content: string) => {
    if (!content.trim() || run || creating.current) return;
    setText("");
    setFailure(null);
    let chat: ChatDetail;
    let isNew: boolean;
    creating.current = true; // a second Enter while the chat is being created sends nothing
    try {
      ({ chat, isNew } = await ensureChat());
    } catch (e) {
      setText((t) => t || content);
      setFailure({ message: humanError(e, model), retry: () => latest.current.send(textRef.current || content) });
      return;
    } finally {
      creating.current = false;
    }
    const base = chat.messages;
    const outcome = await runReply(chat.id, `/api/v1/chats/${chat.id}/messages`, { content }, base, draftMessage(chat.id, "user", content), (lost) => {
      if (lost) latest.current.send(textRef.current || content);
      else latest.current.regenerate();
    }, content);
    if (isNew && outcome.failed && !outcome.started && shown.current === chat.id) {
      // The first message never got in: drop the empty chat rather than leave it listed.
      api("DELETE", `/api/v1/chats/${chat.id}`).then(props.onChatsChanged, () => {});
      keepDraft.current = true;
      setDraftModel(chat.model);
      setDraftSettings({ system_prompt: chat.system_prompt, params: chat.params });
      navigate("/", true);
    }
  };

  const regenerate = async (messageId?: number) => {
    if (!detail || run) return;
    const messages = detail.messages;
    const at = messageId === undefined ? messages.length - 1 : messages.findIndex((m) => m.id === messageId);
    const target = messages[at];
    const base = target && target.role === "assistant" ? messages.slice(0, at) : messages.slice(0, at + 1);
    await runReply(detail.id, `/api/v1/chats/${detail.id}/regenerate`, target ? { message_id: target.id } : {}, base, null, () => latest.current.regenerate());
  };

  const edit = async (message: Message, content: string) => {
    if (!detail || run) return;
    const at = detail.messages.findIndex((m) => m.id === message.id);
    const base = detail.messages.slice(0, Math.max(at, 0));
    await runReply(detail.id, `/api/v1/chats/${detail.id}/edit`, { message_id: message.id, content }, base, draftMessage(detail.id, "user", content), (lost) => {
      if (lost) latest.current.edit(message, content);
      else latest.current.regenerate();
    });
  };

  const switchBranch = async (messageId: number) => {
    if (!detail || run) return;
    try {
      const chat = await api<ChatDetail>("PUT", `/api/v1/chats/${detail.id}/active-leaf`, { message_id: messageId });
      setDetail(chat);
      setFailure(null);
    } catch (e) {
      setFailure({ message: humanError(e), retry: () => latest.current.switchBranch(messageId) });
    }
  };

  const stop = async () => {
    const controller = abort.current;
    setRun((r) => r && { ...r, stopping: true });
    if (!run) setStoppingOther(true); // a reply followed by polling (started elsewhere)
    if (detail) {
      const stopped = api("POST", `/api/v1/chats/${detail.id}/stop`).catch(() => null);
      await Promise.race([stopped, new Promise((r) => setTimeout(r, 1500))]);
      if (!run) await load(detail.id, true);
    }
    setStoppingOther(false);
    controller?.abort();
  };

  const changeModel = async (name: string) => {
    props.onDefaultModel(name);
    if (!detail) {
      setDraftModel(name);
      return;
    }
    setDetail({ ...detail, model: name });
    try {
      await api("PATCH", `/api/v1/chats/${detail.id}`, { model: name });
    } catch (e) {
      setFailure({ message: humanError(e), retry: () => changeModel(name) });
    }
  };

  const saveSettings = async (settings: ChatSettings): Promise<string | null> => {
    if (!detail) {
      setDraftSettings(settings);
      return null;
    }
    try {
      const chat = await api<Chat>("PATCH", `/api/v1/chats/${detail.id}`, {
        system_prompt: settings.system_prompt ?? "",
        params: settings.params,
      });
      setDetail({ ...detail, ...chat });
      return null;
    } catch (e) {
      return humanError(e);
    }
  };

  // Retries run later, with the state of that moment, not of the failed attempt's render.
  latest.current = { send, regenerate, edit, switchBranch };

  const messages = run ? [...run.base, ...(run.user ? [run.user] : [])] : detail?.messages ?? [];
  const visible = messages.filter((m) => m.role !== "system");
  const lastAssistant = !run ? [...visible].reverse().find((m) => m.role === "assistant") : undefined;
  const following = !run && detail?.generating ? visible[visible.length - 1] : undefined;
  const settings: ChatSettings = detail ? { system_prompt: detail.system_prompt, params: detail.params } : draftSettings;
  const modelOptions = model && !props.models.includes(model) ? [model, ...props.models] : props.models;

  return (
    <main class="main">
      <header class="chat-header">
        <button type="button" class="icon-btn mobile-only" aria-label="Open sidebar" aria-expanded={props.sidebarOpen} onClick={props.onOpenSidebar}>
          <Icon name="menu" />
        </button>
        <h1 class="chat-title">{detail?.title ?? "New chat"}</h1>
        <label class="visually-hidden" for="model-select">
          Model
        </label>
        <select
          id="model-select"
          class="model-select"
          value={model ?? ""}
          disabled={!!run}
          onChange={(e) => changeModel(e.currentTarget.value)}
        >
          {modelOptions.length === 0 && <option value="">No models</option>}
          {modelOptions.map((name) => (
            <option key={name} value={name}>
              {name}
            </option>
          ))}
        </select>
        <button type="button" class="icon-btn" aria-label="Chat settings" title="Chat settings" onClick={() => setSettingsOpen(true)}>
          <Icon name="sliders" />
        </button>
        <button
          type="button"
          class="icon-btn mobile-only"
          aria-label="New chat"
          onClick={() => {
            navigate("/");
            window.dispatchEvent(new Event("ollm:new-chat"));
          }}
        >
          <Icon name="plus" />
        </button>
      </header>

      <div class="messages" ref={scroller} onScroll={onScroll}>
        <div class="messages-inner">
          {!loading && visible.length === 0 && !run && (
            <div class="welcome">
              <h2>What can I help with?</h2>
              <p class="muted">{model ? `Chatting with ${model}.` : "Pick a model to start."}</p>
            </div>
          )}
          {loading && <p class="muted center">Loading chat…</p>}
          {visible.map((m) => (
            <MessageView
              key={m.id}
              message={m}
              busy={m === following}
              canRegenerate={m === lastAssistant}
              locked={!!run}
              onRegenerate={() => latest.current.regenerate(m.id)}
              onEdit={(content) => latest.current.edit(m, content)}
              onSwitch={(id) => latest.current.switchBranch(id)}
            />
          ))}
          {run?.assistant && (
            <MessageView
              key="running"
              message={{ ...run.assistant, content: run.text }}
              busy
              queue={run.queue}
              canRegenerate={false}
              locked
              onRegenerate={() => {}}
              onEdit={() => {}}
              onSwitch={() => {}}
            />
          )}
          {notice && !run && <p class="notice">{notice}</p>}
          {failure && (
            <div role="alert" class="error-box">
              <p>{failure.message}</p>
              {failure.retry && (
                <button
                  type="button"
                  class="btn"
                  onClick={() => {
                    const retry = failure.retry!;
                    setFailure(null);
                    retry();
                  }}
                >
                  <Icon name="regen" size={16} /> Retry
                </button>
              )}
            </div>
          )}
        </div>
      </div>

      {scrolledUp && (
        <button type="button" class="to-bottom" aria-label="Scroll to the latest message" onClick={toBottom}>
          <Icon name="down" size={18} />
        </button>
      )}

      <Composer
        value={text}
        onChange={setText}
        onSend={() => send(text)}
        onStop={stop}
        streaming={!!run || !!detail?.generating}
        stopping={run?.stopping ?? stoppingOther}
        disabled={false}
        focusRef={composerFocus}
      />

      {settingsOpen && (
        <SettingsDialog settings={settings} onSave={saveSettings} onClose={() => setSettingsOpen(false)} />
      )}
    </main>
  );
}
