// The model state across requests. `ids` are the tokens the GPU cache has consumed (cache.position ===
// ids.length). A request whose prompt starts with `ids` prefills only the rest (the next turn of a chat: the
// previous prompt + reply, then the new message). Each turn also snapshots the state right after its prompt's
// prefill, so a request that edits or regenerates the last reply resumes from there; anything else starts over.
import type { CacheSnapshot } from '../model/dynamic-cache.ts';
import type { ForwardHooks, Qwen3NextGpuModel } from '../model/model.ts';

/** Feeds prompt tokens into the model's state. */
export type PromptRunner = (ids: number[], progress?: ForwardHooks['progress']) => Promise<unknown>;

export class Conversation {
  private ids: number[] = [];
  private saved?: { ids: number[]; state: CacheSnapshot };

  /** `run` feeds prompt tokens (default model.forward; with speculative decoding, its prefill, which the MTP layer follows). */
  constructor(private readonly model: Qwen3NextGpuModel, private readonly run: PromptRunner = (ids, progress) => model.forward(ids, {}, { progress })) {}

  /** Bring the state to the longest stored prefix of `prompt` (always leaving its last token to run); returns its length. */
  resume(prompt: number[]): number {
    const fits = (ids: number[]) => ids.length < prompt.length && ids.every((id, i) => prompt[i] === id);
    const live = fits(this.ids) ? this.ids.length : -1;
    const saved = this.saved && fits(this.saved.ids) ? this.saved.ids.length : -1;
    if (live >= saved && live >= 0) return live;
    if (saved >= 0) {
      this.model.cache.restore(this.saved!.state);
      this.ids = this.saved!.ids.slice();
      return saved;
    }
    this.model.reset();
    this.ids = [];
    return 0;
  }

  /** Run `ids` (prompt tokens) and record them, without sampling; `progress` hears of each step the GPU has run. */
  async prefill(ids: number[], progress?: ForwardHooks['progress']): Promise<void> {
    if (ids.length === 0) return;
    await this.run(ids, progress);
    this.ids.push(...ids);
  }

  /** Keep the current state as the turn's snapshot (GPU copies into the previous snapshot's buffers). */
  snapshot(): void {
    this.saved = { ids: this.ids.slice(), state: this.model.cache.snapshot(this.saved?.state) };
  }

  /** The model consumed `id` (nextToken ran it). */
  consumed(id: number): void {
    this.ids.push(id);
  }

  /** The tokens the state holds (a saved session's ids). */
  get tokens(): number[] {
    return this.ids.slice();
  }

  /** The GPU state was just written (a restored session): it holds `ids`; no turn snapshot yet. */
  restored(ids: number[]): void {
    for (const b of this.saved?.state.states ?? []) b.destroy();
    this.saved = undefined;
    this.ids = ids.slice();
  }

  /** Forget everything (resetChat, or after a failure left the GPU state unknown). */
  reset(): void {
    this.model.reset();
    this.ids = [];
    for (const b of this.saved?.state.states ?? []) b.destroy();
    this.saved = undefined;
  }

  get length(): number {
    return this.ids.length;
  }
}
