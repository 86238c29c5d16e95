// Chat templates under budgets. A chat template is data: Jinja source run by @huggingface/jinja, a tree-walking
// interpreter over its own value types (strings, numbers, lists, Map-backed objects). It never calls eval or
// Function, attribute lookups go through those Maps (no JS prototypes, globals, `constructor` or `__proto__`), and
// it has no imports, files or network. The only JS it can call is what we put in its environment (below).
// What a hostile template *can* do is spin or grow: loops, recursion, strings that double. The library has no
// limits and renders synchronously, so every render here runs in a subclass of its interpreter that counts steps
// (every evaluation, and every loop iteration: each for-loop body gets a no-op statement), nesting depth and wall
// time, and checks the size of every value produced; the `range` global refuses huge lists. A single step can
// still build a string past the cap before the check sees it (`replace`, `indent`, `join`); the string cap keeps
// that to ~100 ms and ~100 MB here, and the JS engine's own string limit (2^29) bounds it anyway.
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { ChatTemplateError, ModelLoadError } from '../errors.ts';

export interface TemplateLimits {
  /** Interpreter steps (expression or statement evaluations): Qwen3's template takes ~62 per message. */
  maxSteps: number;
  /** Characters in any string the template builds, its output included (~250k tokens of English). */
  maxChars: number;
  /** Items in any list or object (messages included) and in a `range()`. */
  maxItems: number;
  /** Nested evaluations (recursive macros): real templates stay under ~50. */
  maxDepth: number;
  /** Wall-clock milliseconds, checked at every step: the backstop when single steps are expensive (sorting big lists). */
  maxMs: number;
}

/** Qwen3's template renders 1,000 messages in ~62,000 steps and ~150 ms; these stop a hostile one within ~1-3 s. */
export const TEMPLATE_LIMITS: Readonly<TemplateLimits> = { maxSteps: 1_000_000, maxChars: 1 << 20, maxItems: 100_000, maxDepth: 400, maxMs: 3000 };
/** Template source size: real chat templates are 1-20 KB (parsing 128 KiB of tags takes ~150 ms). */
export const MAX_TEMPLATE_CHARS = 128 << 10;

/** A library's (or the template's own) error message, short enough to quote. */
const brief = (e: unknown): string => String((e as Error)?.message ?? e).slice(0, 200);

/** A limit broke (internal: becomes a ChatTemplateError). */
class LimitExceeded extends Error {}
/** The template called raise_exception (internal: becomes a ChatTemplateError). */
class TemplateRaised extends Error {}

type Statement = Parameters<Interpreter['evaluate']>[0];
type Value = ReturnType<Interpreter['evaluate']>;
/** Nodes whose numbers the template makes itself (not the messages'): these are capped at maxChars. */
const MADE_NUMBERS = new Set(['IntegerLiteral', 'FloatLiteral', 'BinaryExpression', 'UnaryExpression']);

/** The library's interpreter, with every evaluation counted and every value's size checked. */
class BoundedInterpreter extends Interpreter {
  private steps = 0;
  private depth = 0;
  private readonly deadline: number;

  constructor(env: Environment, private readonly limits: TemplateLimits) {
    super(env);
    this.deadline = performance.now() + limits.maxMs;
  }

  override evaluate(statement: Statement, environment: Environment): Value {
    const { maxSteps, maxDepth, maxChars, maxItems, maxMs } = this.limits;
    if (++this.steps > maxSteps) throw new LimitExceeded(`ran more than ${maxSteps} steps`);
    if (performance.now() > this.deadline) throw new LimitExceeded(`ran longer than ${maxMs} ms`);
    if (++this.depth > maxDepth) throw new LimitExceeded(`nested deeper than ${maxDepth} levels`);
    try {
      const value = super.evaluate(statement, environment);
      const v: unknown = value.value;
      if (typeof v === 'number' && Math.abs(v) > maxChars && statement !== undefined && MADE_NUMBERS.has(statement.type)) {
        throw new LimitExceeded(`computed the number ${v}, larger than any template needs (the limit is ${maxChars}; \`indent\` or \`tojson\` widths that large allocate gigabytes)`);
      }
      if (typeof v === 'string' && v.length > maxChars) throw new LimitExceeded(`built a string of ${v.length} characters (the limit is ${maxChars})`);
      if (Array.isArray(v) && v.length > maxItems) throw new LimitExceeded(`built a list of ${v.length} items (the limit is ${maxItems})`);
      if (v instanceof Map && v.size > maxItems) throw new LimitExceeded(`built an object of ${v.size} keys (the limit is ${maxItems})`);
      return value;
    } finally {
      this.depth--;
    }
  }
}

/** strftime_now through the library's own implementation (its globals are not exported). */
const STRFTIME = new Template('{{ strftime_now(format) }}');

export class ChatTemplate {
  private readonly template: Template;

  /** Parses `source`; a template that does not parse, or is absurdly large, is a ModelLoadError naming `file`. */
  constructor(source: string, file: string) {
    if (source.length > MAX_TEMPLATE_CHARS) {
      throw new ModelLoadError(`The chat template in ${file} has ${source.length} characters (the limit is ${MAX_TEMPLATE_CHARS}). Use the template shipped with the model.`, file);
    }
    try {
      this.template = new Template(source);
      countLoopIterations(this.template.parsed);
    } catch (e) {
      throw new ModelLoadError(`The chat template in ${file} does not parse (${brief(e)}). Use the template shipped with the model.`, file, undefined, { cause: e });
    }
  }

  /** The rendered text; any failure (the template's own raise_exception included) is a ChatTemplateError. */
  render(vars: Record<string, unknown>, limits: TemplateLimits = TEMPLATE_LIMITS): string {
    try {
      const env = new Environment();
      const globals: Record<string, unknown> = {
        true: true, false: false, none: null, True: true, False: false, None: null,
        raise_exception: (message: unknown) => {
          throw new TemplateRaised(String(message));
        },
        range: (...args: unknown[]) => range(args, limits.maxItems),
        strftime_now: (format: unknown) => STRFTIME.render({ format }),
      };
      for (const [k, v] of Object.entries({ ...globals, ...vars })) env.set(k, v);
      const out: unknown = new BoundedInterpreter(env, limits).run(this.template.parsed).value;
      if (typeof out !== 'string') throw new Error('the template did not produce text');
      return out;
    } catch (e) {
      const why = brief(e);
      if (e instanceof TemplateRaised) {
        throw new ChatTemplateError(`The chat template refused these messages: ${why}. Check the roles and order of the messages (most templates need a user turn).`, { cause: e });
      }
      if (e instanceof LimitExceeded) {
        throw new ChatTemplateError(`The chat template ${why}, so it was stopped: it is broken or hostile, or the conversation is far too long. Use the template shipped with the model.`, { cause: e });
      }
      throw new ChatTemplateError(`The chat template failed on these messages (${why}). Check the messages' fields, or use the template shipped with the model.`, { cause: e });
    }
  }
}

/**
 * Give every for-loop body a no-op statement (a comment), so each iteration passes through evaluate() and counts
 * as a step: `{% for a in x %}{% for b in x %}{% endfor %}{% endfor %}` would otherwise spin uncounted.
 */
function countLoopIterations(node: unknown, seen = new Set<object>()): void {
  if (typeof node !== 'object' || node === null || seen.has(node)) return;
  seen.add(node);
  const n = node as { type?: unknown; body?: unknown };
  if (n.type === 'For' && Array.isArray(n.body)) n.body.push({ type: 'Comment', value: '' });
  for (const child of Object.values(node)) countLoopIterations(child, seen);
}

/** Python's range() over integers, refusing more than `maxItems` numbers (the library's builds any length). */
function range(args: unknown[], maxItems: number): number[] {
  const [start, stop, step = 1] = args.length === 1 ? [0, args[0]] : args;
  if (![start, stop, step].every(Number.isSafeInteger) || step === 0) throw new Error('range() takes integers and a non-zero step');
  const [a, b, s] = [start, stop, step] as number[];
  const n = Math.max(0, Math.ceil((b - a) / s));
  if (n > maxItems) throw new LimitExceeded(`asked for range() of ${n} numbers (the limit is ${maxItems})`);
  return Array.from({ length: n }, (_, i) => a + i * s);
}
