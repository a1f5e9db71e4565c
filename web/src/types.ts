// Shapes of ollm's /api/v1 (see src/ollm/db/schemas.py and src/ollm/services/replies.py).

export interface ChatParams {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  repeat_penalty?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  seed?: number | null;
  max_tokens?: number | null;
  stop?: string[] | null;
}

export interface Chat {
  id: string;
  title: string;
  model: string | null;
  system_prompt: string | null;
  params: ChatParams;
  pinned: boolean;
  archived: boolean;
  active_leaf_id: number | null;
  created_at: string;
  updated_at: string;
}

export type MessageStatus = "complete" | "streaming" | "interrupted" | "error";

export interface Message {
  id: number;
  chat_id: string;
  parent_id: number | null;
  role: "system" | "user" | "assistant";
  content: string;
  model: string | null;
  status: MessageStatus;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  ttft_ms: number | null;
  tokens_per_second: number | null;
  created_at: string;
  sibling_ids?: number[];
  sibling_index?: number;
  sibling_count?: number;
}

export interface ChatDetail extends Chat {
  messages: Message[];
  generating: boolean;
}

export interface ChatPage {
  items: Chat[];
  total: number;
  offset: number;
  limit: number;
}

export interface User {
  id: number;
  username: string;
  role: "admin" | "user";
}

export interface AuthConfig {
  auth: boolean;
  signup: boolean;
}

export interface ErrorBody {
  message: string;
  type?: string;
  code?: string | null;
  param?: string | null;
}

export interface Timings {
  ttft_ms: number | null;
  tokens_per_second: number | null;
  duration_ms: number;
}

export type ReplyEvent =
  | { type: "start"; chat_id: string; user_message: Message | null; message: Message; dropped_turns: number }
  | { type: "queue"; position: number }
  | { type: "delta"; content: string }
  | {
      type: "done";
      message: Message;
      finish_reason: string;
      usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
      timings: Timings;
      dropped_turns: number;
      error: ErrorBody | null;
    }
  | { type: "error"; error: ErrorBody };
