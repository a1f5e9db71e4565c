// One turn: a user's (plain text, editable into a new branch) or the model's (Markdown,
// with its stats, Regenerate, and the ‹ n/m › switch between versions).

import { Component } from "preact";
import { useMemo, useState } from "preact/hooks";
import { copyText, renderMarkdown } from "../markdown";
import type { Message } from "../types";
import { replyStats } from "../util";
import { Icon } from "./icons";

interface Props {
  message: Message;
  busy: boolean;
  queue?: number | null;
  canRegenerate: boolean;
  locked: boolean;
  onRegenerate: () => void;
  onEdit: (content: string) => void;
  onSwitch: (messageId: number) => void;
}

function Markdown({ text }: { text: string }) {
  const html = useMemo(() => renderMarkdown(text), [text]);
  const onClick = async (e: MouseEvent) => {
    const button = (e.target as HTMLElement).closest("button.copy-code") as HTMLButtonElement | null;
    if (!button) return;
    const code = button.closest(".code-block")?.querySelector("code")?.textContent ?? "";
    try {
      await copyText(code);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => (button.textContent = "Copy"), 1500);
  };
  return <div class="message-content markdown" onClick={onClick} dangerouslySetInnerHTML={{ __html: html }} />;
}

function CopyButton({ text, label }: { text: string; label: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      class="icon-btn small"
      aria-label={label}
      title={label}
      onClick={async () => {
        await copyText(text).catch(() => {});
        setDone(true);
        setTimeout(() => setDone(false), 1500);
      }}
    >
      <Icon name={done ? "check" : "copy"} size={16} />
    </button>
  );
}

function BranchSwitch({ message, locked, onSwitch }: { message: Message; locked: boolean; onSwitch: (id: number) => void }) {
  const ids = message.sibling_ids ?? [];
  const at = message.sibling_index ?? ids.indexOf(message.id);
  if (ids.length < 2) return null;
  return (
    <div class="branch-switch">
      <button type="button" class="icon-btn small" aria-label="Previous version" disabled={locked || at <= 0} onClick={() => onSwitch(ids[at - 1])}>
        <Icon name="left" size={16} />
      </button>
      <span class="branch-indicator">
        {at + 1}/{ids.length}
      </span>
      <button
        type="button"
        class="icon-btn small"
        aria-label="Next version"
        disabled={locked || at >= ids.length - 1}
        onClick={() => onSwitch(ids[at + 1])}
      >
        <Icon name="right" size={16} />
      </button>
    </div>
  );
}

function EditBox({ initial, onSave, onCancel }: { initial: string; onSave: (text: string) => void; onCancel: () => void }) {
  const [value, setValue] = useState(initial);
  const submit = () => value.trim() && onSave(value);
  return (
    <div class="edit-box">
      <textarea
        aria-label="Edit message"
        value={value}
        rows={Math.min(12, Math.max(2, value.split("\n").length))}
        ref={(el) => {
          if (el && document.activeElement !== el && value === initial) {
            el.focus();
            el.setSelectionRange(el.value.length, el.value.length);
          }
        }}
        onInput={(e) => setValue(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === "Escape") {
            e.preventDefault();
            onCancel();
          } else if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            submit();
          }
        }}
      />
      <div class="edit-actions">
        <button type="button" class="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="button" class="btn primary" disabled={!value.trim()} onClick={submit}>
          Save &amp; submit
        </button>
      </div>
    </div>
  );
}

function MessageViewImpl(props: Props) {
  const { message, busy } = props;
  const [editing, setEditing] = useState(false);
  const isUser = message.role === "user";
  const stats = !busy && !isUser ? replyStats(message) : null;
  const waiting = busy && !message.content;

  if (isUser) {
    return (
      <article class="message user" aria-label="User message">
        {editing ? (
          <EditBox
            initial={message.content}
            onCancel={() => setEditing(false)}
            onSave={(text) => {
              setEditing(false);
              props.onEdit(text);
            }}
          />
        ) : (
          <>
            <div class="bubble">
              <div class="message-content plain">{message.content}</div>
            </div>
            <div class="message-actions">
              <BranchSwitch message={message} locked={props.locked} onSwitch={props.onSwitch} />
              {message.id > 0 && (
                <button
                  type="button"
                  class="icon-btn small"
                  aria-label="Edit"
                  title="Edit"
                  disabled={props.locked}
                  onClick={() => setEditing(true)}
                >
                  <Icon name="edit" size={16} />
                </button>
              )}
              <CopyButton text={message.content} label="Copy text" />
            </div>
          </>
        )}
      </article>
    );
  }

  return (
    <article class="message assistant" aria-label="Assistant message" aria-busy={busy ? "true" : "false"}>
      {props.queue != null && waiting && (
        <p role="status" class="queue">
          Position {props.queue} in queue
        </p>
      )}
      {waiting && props.queue == null && (
        <div class="typing" aria-hidden="true">
          <span />
          <span />
          <span />
        </div>
      )}
      <Markdown text={message.content} />
      {!busy && message.status === "interrupted" && <p class="note">Stopped before the end.</p>}
      {!busy && message.status === "error" && <p class="note error">The model failed while writing this reply.</p>}
      {!busy && (
        <div class="message-actions">
          <BranchSwitch message={message} locked={props.locked} onSwitch={props.onSwitch} />
          <CopyButton text={message.content} label="Copy text" />
          {props.canRegenerate && (
            <button
              type="button"
              class="icon-btn small"
              aria-label="Regenerate"
              title="Regenerate"
              disabled={props.locked}
              onClick={props.onRegenerate}
            >
              <Icon name="regen" size={16} />
            </button>
          )}
          {stats && (
            <span class="reply-stats" title={message.model ? `Written by ${message.model}` : undefined}>
              {stats}
            </span>
          )}
        </div>
      )}
    </article>
  );
}

function same(a: Props, b: Props): boolean {
  const m = a.message;
  const n = b.message;
  const message = m === n || (m.id === n.id && m.content === n.content && m.status === n.status && m.sibling_ids === n.sibling_ids);
  return message && a.busy === b.busy && a.queue === b.queue && a.canRegenerate === b.canRegenerate && a.locked === b.locked;
}

/** Earlier turns do not re-render while a reply streams (their callbacks read the latest
 * state when called, so skipping their new closures is safe). */
export class MessageView extends Component<Props> {
  shouldComponentUpdate(next: Props): boolean {
    return !same(this.props, next);
  }
  render() {
    return <MessageViewImpl {...this.props} />;
  }
}
