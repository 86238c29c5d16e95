// The Qwen3 tokenizer and chat template, built from the *contents* of tokenizer.json and tokenizer_config.json
// (so the same code runs in a browser worker reading IndexedDB and in Node reading files; see node.ts).
// Byte-level BPE is @huggingface/tokenizers (the tokenizer half of transformers.js); chat templates are rendered
// by @huggingface/jinja. The API mirrors transformers' PreTrainedTokenizer: encode, decode, apply_chat_template,
// eos/pad/bos ids, token <-> id lookups. No network at any point.
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelLoadError } from '../errors.ts';

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

function parseJson(src: string | object | undefined, file: string, remedy: string): Json {
  if (src === undefined) return {};
  let obj: unknown = src;
  if (typeof src === 'string') {
    try {
      obj = JSON.parse(src);
    } catch (e) {
      throw new ModelLoadError(`${file} is not valid JSON (${(e as Error).message}). ${remedy}`, file, undefined, { cause: e });
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
  if (override !== undefined) return new Map([['default', override]]);
  if (typeof fromConfig === 'string') return new Map([['default', fromConfig]]);
  if (Array.isArray(fromConfig)) return new Map(fromConfig.map((e: { name: string; template: string }) => [e.name, e.template]));
  return new Map();
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
  private readonly compiled = new Map<string, Template>();

  constructor(files: TokenizerFiles) {
    const redownload = 'Re-download it from the model repository (the file may be truncated or an HTML error page).';
    const json = parseJson(files.tokenizerJson, 'tokenizer.json', redownload);
    const model = json.model as Json | undefined;
    if (!model || typeof model !== 'object' || Array.isArray(model)) {
      throw new ModelLoadError(`tokenizer.json has no "model" section: it is not a Hugging Face tokenizers file. ${redownload}`, 'tokenizer.json');
    }
    this.config = parseJson(files.tokenizerConfig, 'tokenizer_config.json', redownload);
    const generation = parseJson(files.generationConfig, 'generation_config.json', redownload);

    // @huggingface/tokenizers wants every pipeline stage present; the Rust serializer writes null for absent ones.
    const full = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...json };
    try {
      this.tok = new Tokenizer(full, this.config);
    } catch (e) {
      throw new ModelLoadError(
        `tokenizer.json could not be built (${(e as Error).message}): it uses a component @huggingface/tokenizers lacks, or is corrupt. ${redownload}`,
        'tokenizer.json', undefined, { cause: e },
      );
    }

    const added = full.added_tokens as { id: number; special?: boolean }[];
    this.allSpecialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
    this.vocabSize = Math.max(Object.keys((model.vocab as object) ?? {}).length, ...added.map((t) => t.id + 1));
    // transformers >= 4.45 defaults clean_up_tokenization_spaces to false (the JS library to true): follow HF.
    this.cleanUpSpaces = this.config.clean_up_tokenization_spaces === true;

    this.bosTokenId = this.specialId('bos_token');
    this.padTokenId = this.specialId('pad_token');
    const eos = [this.specialId('eos_token')];
    const genEos = generation.eos_token_id;
    eos.push(...(Array.isArray(genEos) ? genEos : [genEos]).filter((id): id is number => Number.isInteger(id)));
    this.eosTokenIds = [...new Set(eos.filter((id): id is number => id !== null))];

    this.templates = chatTemplates(files.chatTemplate, this.config.chat_template);
  }

  /** Text -> ids. `addSpecialTokens` runs the post-processor (Qwen3's adds nothing; BOS for some other models). */
  encode(text: string, { addSpecialTokens = true }: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
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
    return this.tok.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: this.cleanUpSpaces });
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
    return this.template(options.tools !== undefined).render(vars);
  }

  /** The rendered prompt's ids, as apply_chat_template(tokenize=True): the template already holds its special tokens. */
  encodeChat(messages: ChatMessage[], options: ChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecialTokens: false });
  }

  /** The named template to use: `tool_use` when tools are given and the config has one (as transformers picks). */
  private template(withTools: boolean): Template {
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
      t = this.compile(source);
      this.compiled.set(name, t);
    }
    return t;
  }

  private compile(source: string): Template {
    try {
      return new Template(source);
    } catch (e) {
      throw new ModelLoadError(`The chat template does not parse (${(e as Error).message}). Use the template shipped with the model.`, 'tokenizer_config.json', undefined, { cause: e });
    }
  }
}
