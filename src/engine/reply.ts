// The reply's text as it grows: stop strings cut it, and while streaming the tail that might still become a stop
// string is held back; Qwen3's <think> block is split off into reasoning_content (splitThinking), and deltas are
// what each piece adds to the (reasoning, content) pair.
import { splitThinking } from '../tokenizer/thinking.ts';

export class ReplyText {
  private text = '';
  private sent = { reasoning_content: '', content: '' };
  stopped = false;

  constructor(private readonly stops: string[]) {}

  /** Append decoded text; sets `stopped` (and drops the stop string and what follows) when a stop string appears. */
  push(piece: string): void {
    if (this.stopped || piece === '') return;
    const from = Math.max(0, this.text.length - Math.max(0, ...this.stops.map((s) => s.length)));
    this.text += piece;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.text.indexOf(s, from);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.text = this.text.slice(0, cut);
      this.stopped = true;
    }
  }

  /** The (reasoning, content) added since the last call. `final`: release the held-back tail too. */
  delta(final: boolean): { reasoning_content?: string; content?: string } {
    const now = splitThinking(this.text.slice(0, final ? this.text.length : this.safeLength()));
    const out: { reasoning_content?: string; content?: string } = {};
    for (const k of ['reasoning_content', 'content'] as const) {
      if (now[k].length > this.sent[k].length && now[k].startsWith(this.sent[k])) {
        out[k] = now[k].slice(this.sent[k].length);
        this.sent[k] = now[k];
      }
    }
    return out;
  }

  /** The whole reply, split. */
  message(): { role: 'assistant'; content: string; reasoning_content?: string } {
    const { reasoning_content, content } = splitThinking(this.text);
    return reasoning_content ? { role: 'assistant', content, reasoning_content } : { role: 'assistant', content };
  }

  /** Text that can no longer turn into a stop string: all but the longest tail that is a prefix of one. */
  private safeLength(): number {
    let hold = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.text.length); n > hold; n--) {
        if (this.text.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    return this.text.length - hold;
  }
}
