// Errors across the worker boundary. Comlink's default 'throw' handler rebuilds every error as a plain Error
// (the class is lost); this one sends name, message, stack and the error's own fields (ContextLengthError's
// limit, ModelLoadError's file, ...) and rebuilds our typed classes by name, so `instanceof` and `err.name`
// work in the page as they do in the worker. Both sides register it (worker.ts and worker-engine.ts).
import { transferHandlers, type TransferHandler } from 'comlink';
import * as errors from '../errors.ts';

const classes = new Map<string, new (...args: never[]) => Error>([
  ...Object.values(errors).map((c) => [c.name, c] as [string, new (...args: never[]) => Error]),
  ...[Error, TypeError, RangeError, SyntaxError].map((c) => [c.name, c] as [string, new (...args: never[]) => Error]),
]);

type Serialized = { isError: true; value: Record<string, unknown> } | { isError: false; value: unknown };

/** Structured-cloneable own fields (cause is dropped: it may hold anything). */
function fields(e: Error): Record<string, unknown> {
  const out: Record<string, unknown> = { name: e.name, message: e.message, stack: e.stack };
  for (const [k, v] of Object.entries(e)) if (k !== 'cause' && (v === null || ['string', 'number', 'boolean'].includes(typeof v))) out[k] = v;
  return out;
}

export function rebuildError(value: Record<string, unknown>): Error {
  const Cls = classes.get(String(value.name)) ?? Error;
  const e = Object.create(Cls.prototype) as Error;
  for (const [k, v] of Object.entries(value)) Object.defineProperty(e, k, { value: v, writable: true, configurable: true, enumerable: k !== 'stack' && k !== 'message' && k !== 'name' });
  return e;
}

export function registerErrorTransfer(): void {
  const builtin = transferHandlers.get('throw')!;
  const handler: TransferHandler<{ value: unknown }, Serialized> = {
    canHandle: builtin.canHandle as (v: unknown) => v is { value: unknown },
    serialize: ({ value }) => [value instanceof Error ? { isError: true, value: fields(value) } : { isError: false, value }, []],
    deserialize: (s) => {
      throw s.isError ? rebuildError(s.value) : s.value;
    },
  };
  transferHandlers.set('throw', handler);
}
