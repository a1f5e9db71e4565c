// The message box: Enter sends, Shift+Enter is a new line; Stop while a reply streams.

import type { RefObject } from "preact";
import { useEffect, useRef } from "preact/hooks";
import { Icon } from "./icons";

interface Props {
  value: string;
  onChange: (value: string) => void;
  onSend: () => void;
  onStop: () => void;
  streaming: boolean;
  stopping: boolean;
  disabled: boolean;
  focusRef: RefObject<() => void>;
}

export function Composer(props: Props) {
  const box = useRef<HTMLTextAreaElement>(null);
  props.focusRef.current = () => box.current?.focus();

  // Grow with the text, up to a limit (set through the DOM: allowed by the page's CSP).
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 240)}px`;
  }, [props.value]);

  useEffect(() => {
    if (!matchMedia("(pointer: coarse)").matches) box.current?.focus();
  }, []);

  const canSend = !props.streaming && !props.disabled && props.value.trim().length > 0;

  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        if (canSend) props.onSend();
      }}
    >
      <div class="composer-box">
        <textarea
          ref={box}
          aria-label="Message"
          placeholder="Message ollm…"
          rows={1}
          value={props.value}
          onInput={(e) => props.onChange(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
              e.preventDefault();
              if (canSend) props.onSend();
            }
          }}
        />
        {props.streaming ? (
          <button type="button" class="send-btn stop" aria-label="Stop" title="Stop" disabled={props.stopping} onClick={props.onStop}>
            <Icon name="stop" />
          </button>
        ) : (
          <button type="submit" class="send-btn" aria-label="Send" title="Send" disabled={!canSend}>
            <Icon name="send" />
          </button>
        )}
      </div>
      <p class="hint">Enter to send, Shift+Enter for a new line. Local models can be wrong.</p>
    </form>
  );
}
