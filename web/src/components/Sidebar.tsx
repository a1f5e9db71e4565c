// The chat list: search, groups by date (pinned first), and per chat a menu to rename,
// pin, export or delete it.

import { useRef, useState } from "preact/hooks";
import { api } from "../api";
import type { Chat, User } from "../types";
import { download, groupChats, navigate } from "../util";
import { Icon } from "./icons";
import { MenuButton } from "./Menu";
import { ConfirmDialog } from "./Modal";

interface Props {
  chats: Chat[];
  query: string;
  onQuery: (q: string) => void;
  more: (() => void) | null;
  currentId: string | null;
  user: User | null;
  onLogout: () => void;
  onChanged: () => void;
  onClose: () => void;
}

export function Sidebar(props: Props) {
  const [renaming, setRenaming] = useState<string | null>(null);
  const [deleting, setDeleting] = useState<Chat | null>(null);
  const [problem, setProblem] = useState("");
  const groups = groupChats(props.chats);

  const patch = async (chat: Chat, body: Partial<Chat>) => {
    try {
      await api("PATCH", `/api/v1/chats/${chat.id}`, body);
      setProblem("");
    } catch {
      setProblem(`Could not update "${chat.title}". Try again.`);
    }
    props.onChanged();
  };

  const remove = async (chat: Chat) => {
    try {
      await api("DELETE", `/api/v1/chats/${chat.id}`);
      if (props.currentId === chat.id) navigate("/");
      setProblem("");
    } catch {
      setProblem(`Could not delete "${chat.title}". Try again.`);
    }
    props.onChanged();
  };

  const newChat = () => {
    navigate("/");
    props.onClose();
    window.dispatchEvent(new Event("ollm:new-chat"));
  };

  return (
    <aside class="sidebar">
      <div class="sidebar-head">
        <span class="brand">ollm</span>
        <button type="button" class="icon-btn mobile-only" aria-label="Close sidebar" onClick={props.onClose}>
          <Icon name="close" />
        </button>
      </div>
      <button type="button" class="btn new-chat" onClick={newChat}>
        <Icon name="plus" /> New chat
      </button>
      <div class="search">
        <Icon name="search" size={16} />
        <input
          type="search"
          aria-label="Search chats"
          placeholder="Search chats"
          value={props.query}
          onInput={(e) => props.onQuery(e.currentTarget.value)}
        />
      </div>
      {problem && (
        <p role="alert" class="sidebar-problem">
          {problem}
        </p>
      )}
      <nav aria-label="Chats" class="chat-list">
        {groups.length === 0 && <p class="muted empty-list">{props.query ? "No chats match." : "No chats yet."}</p>}
        {groups.map(([group, chats]) => (
          <section key={group} class="chat-group" aria-labelledby={`group-${group.replace(/\W/g, "")}`}>
            <h2 id={`group-${group.replace(/\W/g, "")}`}>{group}</h2>
            <ul>
              {chats.map((chat) => (
                <li key={chat.id} class={`chat-item${chat.id === props.currentId ? " current" : ""}`}>
                  {renaming === chat.id ? (
                    <RenameField
                      chat={chat}
                      onDone={(title) => {
                        setRenaming(null);
                        if (title !== null && title !== chat.title) patch(chat, { title });
                      }}
                    />
                  ) : (
                    <a
                      href={`/c/${chat.id}`}
                      aria-current={chat.id === props.currentId ? "page" : undefined}
                      onClick={(e) => {
                        if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
                        e.preventDefault();
                        navigate(`/c/${chat.id}`);
                        props.onClose();
                      }}
                    >
                      {chat.title}
                    </a>
                  )}
                  <MenuButton
                    label="Chat options"
                    class="chat-options"
                    items={[
                      { label: "Rename", action: () => setRenaming(chat.id) },
                      { label: chat.pinned ? "Unpin" : "Pin", action: () => patch(chat, { pinned: !chat.pinned }) },
                      { label: "Export Markdown", action: () => download(`/api/v1/chats/${chat.id}/export?format=markdown`) },
                      { label: "Export JSON", action: () => download(`/api/v1/chats/${chat.id}/export?format=json`) },
                      { label: "Delete", action: () => setDeleting(chat), danger: true },
                    ]}
                  />
                </li>
              ))}
            </ul>
          </section>
        ))}
        {props.more && (
          <button type="button" class="btn ghost show-more" onClick={props.more}>
            Show more chats
          </button>
        )}
      </nav>
      {props.user && (
        <div class="sidebar-foot">
          <span class="user" title={props.user.username}>
            {props.user.username}
          </span>
          <button type="button" class="btn ghost" onClick={props.onLogout}>
            <Icon name="logout" size={16} /> Log out
          </button>
        </div>
      )}
      {deleting && (
        <ConfirmDialog
          title="Delete chat?"
          message={`"${deleting.title}" and all its messages will be deleted. This cannot be undone.`}
          confirm="Delete"
          onConfirm={() => remove(deleting)}
          onClose={() => setDeleting(null)}
        />
      )}
    </aside>
  );
}

function RenameField(props: { chat: Chat; onDone: (title: string | null) => void }) {
  const done = useRef(false);
  const finish = (title: string | null) => {
    if (done.current) return;
    done.current = true;
    props.onDone(title === null ? null : title.trim() || props.chat.title);
  };
  return (
    <input
      class="rename"
      aria-label="Chat title"
      value={props.chat.title}
      maxLength={200}
      ref={(el) => {
        if (el && !done.current && document.activeElement !== el) {
          el.focus();
          el.select();
        }
      }}
      onKeyDown={(e) => {
        if (e.key === "Enter") {
          e.preventDefault();
          finish(e.currentTarget.value);
        } else if (e.key === "Escape") {
          e.preventDefault();
          finish(null);
        }
      }}
      onBlur={(e) => finish(e.currentTarget.value)}
    />
  );
}
