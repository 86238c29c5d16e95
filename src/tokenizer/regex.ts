// tokenizer.json carries regular expressions (pre-tokenizer splits, normalizer and decoder replacements) that
// @huggingface/tokenizers compiles with `new RegExp` and runs on every encode. JS regexes backtrack, so a hostile
// pattern such as `(a+)+$` could hang encode() on a short input; this refuses those shapes before compiling.
import { showValue } from '../config.ts';
import { ModelLoadError } from '../errors.ts';

/**
 * Refuse every `{"Regex": ...}` pattern (pre-tokenizer, normalizer, decoder) in which a repeated group holds a
 * quantifier or an alternation: `(a+)+`, `(a|aa)*`, `(a?){30}`, the shapes of exponential backtracking, which
 * would let one short input hang encode(). The patterns real tokenizers use (GPT-2, Qwen, Llama 3) have none.
 */
export function checkRegexes(node: unknown, remedy: string, depth = 0): void {
  if (typeof node !== 'object' || node === null || depth > 64) return;
  for (const [key, v] of Object.entries(node)) {
    if (key === 'Regex' && typeof v === 'string' && (v.length > 10_000 || backtracksExponentially(v))) {
      throw new ModelLoadError(`tokenizer.json: the pattern ${showValue(v)} repeats a group that itself repeats or alternates; matching it can take exponential time. ${remedy}`, 'tokenizer.json');
    }
    if (key !== 'vocab' && key !== 'merges' && key !== 'added_tokens') checkRegexes(v, remedy, depth + 1);
  }
}

/** True when some group holding a quantifier or `|` is itself repeated (`*`, `+`, `{n,}`, `{n,m}` with m > 1). */
export function backtracksExponentially(p: string): boolean {
  const outer: boolean[] = []; // for each open group: does the enclosing group hold a quantifier or '|'?
  let holds = false; // does the group being scanned hold one?
  for (let i = 0; i < p.length; i++) {
    const ch = p[i];
    if (ch === '\\') {
      i++;
    } else if (ch === '[') {
      for (i++; i < p.length && p[i] !== ']'; i++) if (p[i] === '\\') i++;
    } else if (ch === '(') {
      outer.push(holds);
      holds = false;
      if (p[i + 1] === '?') for (i += 2; i < p.length && !':=!>'.includes(p[i]); i++); // (?: (?= (?<! (?<name> (?i:
    } else if (ch === '|' || ch === '*' || ch === '+' || ch === '?' || ch === '{') {
      holds = true;
    } else if (ch === ')') {
      const inner: boolean = holds;
      holds = (outer.pop() ?? false) || inner;
      const q = /^(?:[*+]|\{(\d*)(,?)(\d*)\})/.exec(p.slice(i + 1, i + 24));
      const repeats = q !== null && (q[0] === '*' || q[0] === '+' || (q[2] === ',' && (q[3] === '' || Number(q[3]) > 1)) || Number(q[1]) > 1);
      if (repeats && inner) return true;
    }
  }
  return false;
}
