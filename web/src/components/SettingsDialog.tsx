// A chat's system prompt and sampling parameters (empty = the model's default).

import { useState } from "preact/hooks";
import type { ChatParams } from "../types";
import { Modal } from "./Modal";

export interface ChatSettings {
  system_prompt: string | null;
  params: ChatParams;
}

type NumberField = "temperature" | "top_p" | "max_tokens" | "seed";

const FIELDS: { key: NumberField; label: string; min?: number; max?: number; step: string; hint: string; integer?: boolean }[] = [
  { key: "temperature", label: "Temperature", min: 0, max: 5, step: "0.05", hint: "0–5; lower is more focused" },
  { key: "top_p", label: "Top P", min: 0.01, max: 1, step: "0.01", hint: "0–1; nucleus sampling" },
  { key: "max_tokens", label: "Max tokens", min: 1, step: "1", hint: "longest reply", integer: true },
  { key: "seed", label: "Seed", step: "1", hint: "same seed, same reply", integer: true },
];

export function SettingsDialog(props: {
  settings: ChatSettings;
  onSave: (settings: ChatSettings) => Promise<string | null>;
  onClose: () => void;
}) {
  const [system, setSystem] = useState(props.settings.system_prompt ?? "");
  const [values, setValues] = useState<Record<NumberField, string>>(() => {
    const p = props.settings.params;
    const text = (v: number | null | undefined) => (v == null ? "" : String(v));
    return { temperature: text(p.temperature), top_p: text(p.top_p), max_tokens: text(p.max_tokens), seed: text(p.seed) };
  });
  const [error, setError] = useState("");
  const [saving, setSaving] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const params: ChatParams = { ...props.settings.params };
    for (const field of FIELDS) {
      const raw = values[field.key].trim();
      if (raw === "") {
        params[field.key] = null;
        continue;
      }
      const n = Number(raw);
      if (!Number.isFinite(n) || (field.integer && !Number.isInteger(n))) {
        setError(`${field.label} must be ${field.integer ? "a whole number" : "a number"}.`);
        return;
      }
      if ((field.min !== undefined && n < field.min) || (field.max !== undefined && n > field.max)) {
        setError(`${field.label} must be between ${field.min ?? "−∞"} and ${field.max ?? "∞"}.`);
        return;
      }
      params[field.key] = n;
    }
    setSaving(true);
    const problem = await props.onSave({ system_prompt: system.trim() ? system : null, params });
    setSaving(false);
    if (problem) setError(problem);
    else props.onClose();
  };

  return (
    <Modal title="Chat settings" onClose={props.onClose} class="settings">
      <form onSubmit={submit} noValidate>
        <label for="set-system">System prompt</label>
        <textarea
          id="set-system"
          rows={4}
          value={system}
          placeholder="You are a helpful assistant."
          onInput={(e) => setSystem(e.currentTarget.value)}
        />
        <div class="field-grid">
          {FIELDS.map((field) => (
            <div key={field.key} class="field">
              <label for={`set-${field.key}`}>{field.label}</label>
              <input
                id={`set-${field.key}`}
                type="number"
                inputMode={field.integer ? "numeric" : "decimal"}
                step={field.step}
                min={field.min}
                max={field.max}
                placeholder="default"
                value={values[field.key]}
                onInput={(e) => setValues({ ...values, [field.key]: e.currentTarget.value })}
              />
              <small class="muted">{field.hint}</small>
            </div>
          ))}
        </div>
        {error && (
          <p role="alert" class="form-error">
            {error}
          </p>
        )}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" class="btn primary" disabled={saving}>
            Save
          </button>
        </div>
      </form>
    </Modal>
  );
}
