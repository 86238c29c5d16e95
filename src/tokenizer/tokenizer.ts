// The Qwen3 tokenizer and chat template, built from the *contents* of tokenizer.json and tokenizer_config.json
// (so the same code runs in a browser worker reading IndexedDB and in Node reading files; see node.ts).
// Byte-level BPE is @huggingface/tokenizers (the tokenizer half of transformers.js); chat templates are rendered
// by @huggingface/jinja under budgets (template.ts). The API mirrors transformers' PreTrainedTokenizer: encode,
// decode, apply_chat_template, eos/pad/bos ids, token <-> id lookups. No network at any point.
// The files are untrusted data: sizes are capped, the JSON is checked before the library sees it, and regexes
// that could backtrack exponentially are refused (checkRegexes), so a hostile model cannot hang encode().
import { Tokenizer } from '@huggingface/tokenizers';
import { showValue } from '../config.ts';
import { ModelLoadError } from '../errors.ts';
import { checkRegexes } from './regex.ts';
import { ChatTemplate, TEMPLATE_LIMITS, type TemplateLimits } from './template.ts';

/** The files a tokenizer is built from, as JSON text or already-parsed objects. */
export interface TokenizerFiles {
  /** tokenizer.json (required): the model, pre-tokenizer, decoder and added tokens. */
  tokenizerJson: string | object;
  /** tokenizer_config.json: special-token names, the chat template, clean-up flags. */
  tokenizerConfig?: string | object;
  /** generation_config.json: its `eos_token_id` (one id or a list) adds to the stop tokens. */
  generationConfig?: string | object;
  /** chat_template.jinja, for repos that ship the template beside tokenizer_config.json; wins over the config's. */
  chatTemplate?: string;
}

/** One chat turn, as transformers takes it (`reasoning_content` and `tool_calls` are read by Qwen3's template). */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | (string & {});
  content: string;
  reasoning_content?: string;
  tool_calls?: unknown[];
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** End with the opening of an assistant turn, so the model writes the reply. Default false, as in HF. */
  addGenerationPrompt?: boolean;
  /** Qwen3: `false` makes the template emit an empty <think></think> block (no reasoning). Unset: template default. */
  enableThinking?: boolean;
  /** JSON-schema tool descriptions, passed to the template as `tools`. */
  tools?: object[];
  /** Any other template variables (e.g. `documents`). */
  extra?: Record<string, unknown>;
}

// transformers' SPECIAL_TOKENS_ATTRIBUTES: each is passed to the chat template when the config sets it.
const SPECIAL_TOKEN_ATTRIBUTES = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;

type Json = Record<string, unknown>;

/** Far above the real files (tokenizer.json 11 MB, tokenizer_config.json 10 KB); the manifest caps them the same. */
const MAX_FILE_CHARS = 64 << 20;
/** Token ids live below the largest vocabulary config.ts accepts. */
const MAX_TOKEN_ID = 1 << 22;
/** Text the tokenizer must handle at load: a broken pipeline fails here, as a ModelLoadError, not at the first chat. */
const PROBE = 'Hello, world! 123 \u00e9\u4f60\u597d \u{1F680}\n\n  x';

/** A library's error message, short enough to quote (a hostile file can put megabytes into one). */
const brief = (e: unknown): string => String((e as Error)?.message ?? e).slice(0, 200);

function parseJson(src: string | object | undefined, file: string, remedy: string): Json {
  if (src === undefined) return {};
  let obj: unknown = src;
  if (typeof src === 'string') {
    if (src.length > MAX_FILE_CHARS) throw new ModelLoadError(`${file} has ${src.length} characters, more than a tokenizer file needs. ${remedy}`, file);
    try {
      obj = JSON.parse(src);
    } catch (e) {
      throw new ModelLoadError(`${file} is not valid JSON (${brief(e)}). ${remedy}`, file, undefined, { cause: e });
    }
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new ModelLoadError(`${file} must hold a JSON object. ${remedy}`, file);
  }
  return obj as Json;
}

/** A special token in tokenizer_config.json is a string, or an AddedToken object `{content, ...}` in older files. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

/** Templates by name: chat_template.jinja, else the config's `chat_template` (a string, or `[{name, template}]`). */
function chatTemplates(override: string | undefined, fromConfig: unknown): Map<string, string> {
  if (typeof override === 'string') return new Map([['default', override]]);
  if (typeof fromConfig === 'string') return new Map([['default', fromConfig]]);
  if (!Array.isArray(fromConfig)) return new Map();
  return new Map(fromConfig.map((e: unknown) => {
    const { name, template } = (e ?? {}) as Json;
    if (typeof name !== 'string' || typeof template !== 'string') {
      throw new ModelLoadError(`tokenizer_config.json: chat_template entry ${showValue(e)} is not {"name": ..., "template": ...}.`, 'tokenizer_config.json');
    }
    return [name, template];
  }));
}

/** added_tokens as the library needs them: objects with a string `content` and an integer `id`. */
function addedTokens(v: unknown, remedy: string): { id: number; content: string; special?: boolean }[] {
  if (!Array.isArray(v)) throw new ModelLoadError(`tokenizer.json: "added_tokens" is not a list. ${remedy}`, 'tokenizer.json');
  for (const t of v) {
    const { id, content } = (t ?? {}) as Json;
    if (typeof content !== 'string' || !Number.isInteger(id) || (id as number) < 0 || (id as number) >= MAX_TOKEN_ID) {
      throw new ModelLoadError(`tokenizer.json: added token ${showValue(t)} needs a string "content" and an "id" in [0, ${MAX_TOKEN_ID}). ${remedy}`, 'tokenizer.json');
    }
  }
  return v;
}

export class Qwen3Tokenizer {
  /** Ids that end generation: the config's eos_token, then generation_config's eos_token_id(s). */
  readonly eosTokenIds: number[];
  readonly bosTokenId: number | null;
  readonly padTokenId: number | null;
  /** Ids of added tokens marked `special` (skipped by `decode(..., {skipSpecialTokens: true})`, as in HF). */
  readonly allSpecialIds: ReadonlySet<number>;
  /** Number of ids the tokenizer knows (base vocabulary + added tokens); the model's embedding may be larger. */
  readonly vocabSize: number;
  readonly config: Json;

  private readonly tok: Tokenizer;
  private readonly cleanUpSpaces: boolean;
  private readonly templates: Map<string, string>;
  private readonly compiled = new Map<string, ChatTemplate>();
  private readonly templateLimits: TemplateLimits;
  private readonly templateFile: string;

  /** `templateLimits`: budgets for rendering the chat template (template.ts TEMPLATE_LIMITS by default). */
  constructor(files: TokenizerFiles, options: { templateLimits?: Partial<TemplateLimits> } = {}) {
    const redownload = 'Re-download it from the model repository (the file may be truncated or an HTML error page).';
    const json = parseJson(files.tokenizerJson, 'tokenizer.json', redownload);
    const model = json.model as Json | undefined;
    if (!model || typeof model !== 'object' || Array.isArray(model)) {
      throw new ModelLoadError(`tokenizer.json has no "model" section: it is not a Hugging Face tokenizers file. ${redownload}`, 'tokenizer.json');
    }
    this.config = parseJson(files.tokenizerConfig, 'tokenizer_config.json', redownload);
    const generation = parseJson(files.generationConfig, 'generation_config.json', redownload);
    const added = addedTokens(json.added_tokens ?? [], redownload);
    checkRegexes(json, redownload);

    // @huggingface/tokenizers wants every pipeline stage present; the Rust serializer writes null for absent ones.
    const full = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...json, added_tokens: added };
    try {
      this.tok = new Tokenizer(full, this.config);
      const probe = this.tok.encode(PROBE).ids.filter((id) => this.tok.id_to_token(id) !== undefined);
      if (probe.length > 0) this.tok.decode(probe);
    } catch (e) {
      throw new ModelLoadError(
        `tokenizer.json could not be built (${brief(e)}): it uses a component @huggingface/tokenizers lacks, or is corrupt. ${redownload}`,
        'tokenizer.json', undefined, { cause: e },
      );
    }

    this.allSpecialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
    this.vocabSize = added.reduce((n, t) => Math.max(n, t.id + 1), Object.keys((model.vocab as object) ?? {}).length);
    // transformers >= 4.45 defaults clean_up_tokenization_spaces to false (the JS library to true): follow HF.
    this.cleanUpSpaces = this.config.clean_up_tokenization_spaces === true;

    this.bosTokenId = this.specialId('bos_token');
    this.padTokenId = this.specialId('pad_token');
    const eos = [this.specialId('eos_token')];
    const genEos = generation.eos_token_id;
    eos.push(...(Array.isArray(genEos) ? genEos : [genEos]).filter((id): id is number => Number.isInteger(id)));
    this.eosTokenIds = [...new Set(eos.filter((id): id is number => id !== null))];

    this.templates = chatTemplates(files.chatTemplate, this.config.chat_template);
    this.templateFile = typeof files.chatTemplate === 'string' ? 'chat_template.jinja' : 'tokenizer_config.json';
    this.templateLimits = { ...TEMPLATE_LIMITS, ...options.templateLimits };
  }

  /** Text -> ids. `addSpecialTokens` runs the post-processor (Qwen3's adds nothing; BOS for some other models). */
  encode(text: string, { addSpecialTokens = true }: { addSpecialTokens?: boolean } = {}): number[] {
    return this.guard('encode', () => this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids);
  }

  /**
   * Ids -> text. Like the Rust tokenizer, ids outside the vocabulary (the model's padded embedding rows) are dropped,
   * and incomplete UTF-8 at the end becomes U+FFFD; use DecodeStream to decode while generating.
   */
  decode(ids: ArrayLike<number>, { skipSpecialTokens = false }: { skipSpecialTokens?: boolean } = {}): string {
    const kept: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (this.tok.id_to_token(id) === undefined || (skipSpecialTokens && this.allSpecialIds.has(id))) continue;
      kept.push(id);
    }
    if (kept.length === 0) return '';
    return this.guard('decode', () => this.tok.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: this.cleanUpSpaces }));
  }

  /** A tokenizer.json component that throws on some input (the probe at load missed it) is the file's fault. */
  private guard<T>(what: string, run: () => T): T {
    try {
      return run();
    } catch (e) {
      throw new ModelLoadError(`tokenizer.json failed to ${what} (${brief(e)}): the file is corrupt or uses an unsupported component. Re-download it from the model repository.`, 'tokenizer.json', undefined, { cause: e });
    }
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  /** The id of a special token named in tokenizer_config.json (`'eos_token'`, `'pad_token'`, ...), or null. */
  specialId(attribute: (typeof SPECIAL_TOKEN_ATTRIBUTES)[number]): number | null {
    const content = tokenContent(this.config[attribute]);
    return content === null ? null : (this.tok.token_to_id(content) ?? null);
  }

  /**
   * Render a conversation with the model's chat template, exactly as transformers' apply_chat_template(tokenize=False):
   * the template sees `messages`, `add_generation_prompt`, `tools`, `documents`, the special tokens by name, and
   * `enable_thinking` only when set (Qwen3's template tests `enable_thinking is defined`).
   */
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions = {}): string {
    const vars: Record<string, unknown> = {
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? false,
      tools: options.tools ?? null,
      documents: null,
    };
    for (const attr of SPECIAL_TOKEN_ATTRIBUTES) {
      const content = tokenContent(this.config[attr]);
      if (content !== null) vars[attr] = content;
    }
    if (Array.isArray(this.config.additional_special_tokens)) {
      vars.additional_special_tokens = this.config.additional_special_tokens.map(tokenContent);
    }
    if (options.enableThinking !== undefined) vars.enable_thinking = options.enableThinking;
    Object.assign(vars, options.extra);
    return this.template(options.tools !== undefined).render(vars, this.templateLimits);
  }

  /** The rendered prompt's ids, as apply_chat_template(tokenize=True): the template already holds its special tokens. */
  encodeChat(messages: ChatMessage[], options: ChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecialTokens: false });
  }

  /** The named template to use: `tool_use` when tools are given and the config has one (as transformers picks). */
  private template(withTools: boolean): ChatTemplate {
    const name = withTools && this.templates.has('tool_use') ? 'tool_use' : 'default';
    let t = this.compiled.get(name);
    if (!t) {
      const source = this.templates.get(name);
      if (source === undefined) {
        throw new ModelLoadError(
          "tokenizer_config.json has no chat_template. Pass the model's chat_template.jinja as `chatTemplate`, or use a tokenizer_config.json that has one.",
          'tokenizer_config.json',
        );
      }
      t = new ChatTemplate(source, this.templateFile);
      this.compiled.set(name, t);
    }
    return t;
  }
}
