// Qwen3 "thinking": the model writes its reasoning inside <think>...</think> before the answer. This splits generated
// text the way Qwen3's own chat template splits an assistant message it is given back (reasoning_content: after
// <think>, before the first </think>; content: after the last </think>, without leading newlines), so a message
// built from this split renders back to the same prompt.

export interface ThinkingSplit {
  /** The reasoning, without the tags and the newlines around it ('' when there was none). */
  reasoning_content: string;
  /** The answer. */
  content: string;
  /** True while the reasoning is still open: no </think> yet (useful when re-splitting a growing stream). */
  thinking: boolean;
}

const OPEN = '<think>';
const CLOSE = '</think>';

/**
 * Split generated text into reasoning and answer. `startsInThinking`: the prompt itself ended with an opened
 * <think> (Qwen3-Next-Thinking's template does this), so text before </think> is reasoning even without the tag.
 * While streaming, call it again on the accumulated text: an open <think> with no </think> yet is all reasoning.
 */
export function splitThinking(text: string, { startsInThinking = false }: { startsInThinking?: boolean } = {}): ThinkingSplit {
  const close = text.indexOf(CLOSE);
  if (close >= 0) {
    const before = text.slice(0, close).replace(/\n+$/, '');
    const open = before.lastIndexOf(OPEN);
    const reasoning = (open >= 0 ? before.slice(open + OPEN.length) : before).replace(/^\n+/, '');
    const content = text.slice(text.lastIndexOf(CLOSE) + CLOSE.length).replace(/^\n+/, '');
    return { reasoning_content: reasoning, content, thinking: false };
  }
  const lead = text.trimStart();
  if (lead.startsWith(OPEN)) return { reasoning_content: lead.slice(OPEN.length).replace(/^\n+/, ''), content: '', thinking: true };
  if (startsInThinking) return { reasoning_content: text.replace(/^\n+/, ''), content: '', thinking: true };
  return { reasoning_content: '', content: text, thinking: false };
}
