// Incremental detokenization while generating, the algorithm of the Rust tokenizers' `DecodeStream` (and TGI):
// decode a short window of recent ids twice, with and without the newest ones, and emit the difference once it
// no longer ends in U+FFFD (an incomplete UTF-8 sequence: a byte-level BPE token may hold part of a character,
// e.g. the emoji 🚀 is three tokens). The window keeps one already-emitted token before the unread ones so that
// decoders which treat the first token specially (Metaspace's leading space) see the same context as a full
// decode. Every piece is a prefix-difference of decodes that end on a character boundary, so the pieces
// concatenate to decode(all ids).
import type { Qwen3Tokenizer } from './tokenizer.ts';

export class DecodeStream {
  private ids: number[] = [];
  /** ids[0, prefixOffset) are context only; ids[prefixOffset, readOffset) were emitted; the rest are pending. */
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(
    private readonly tokenizer: Qwen3Tokenizer,
    private readonly options: { skipSpecialTokens?: boolean } = {},
  ) {}

  /** Add one generated id; returns the text it completes ('' while a character is still partial). */
  step(id: number): string {
    this.ids.push(id);
    const prefix = this.decode(this.prefixOffset, this.readOffset);
    const full = this.decode(this.prefixOffset, this.ids.length);
    if (full.length <= prefix.length || full.endsWith('\uFFFD')) return '';
    // Slide the window: the tokens just emitted become the context for the next step.
    this.ids = this.ids.slice(this.readOffset);
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
    return full.slice(prefix.length);
  }

  /** Ids fed so far that have not produced text yet (a partial character, or skipped special tokens). */
  get pending(): number {
    return this.ids.length - this.readOffset;
  }

  /** End of generation: return whatever is left, invalid UTF-8 included (as U+FFFD, like decode). */
  flush(): string {
    const prefix = this.decode(this.prefixOffset, this.readOffset);
    const rest = this.decode(this.prefixOffset, this.ids.length).slice(prefix.length);
    this.ids = [];
    this.prefixOffset = this.readOffset = 0;
    return rest;
  }

  private decode(from: number, to: number): string {
    return this.tokenizer.decode(this.ids.slice(from, to), this.options);
  }
}
