// Typed errors. Each message says what went wrong *and what to do about it*; each class keeps its
// `name` so it survives structured cloning across the worker boundary (comlink transfers name/message/stack).

export class Qwen3NextError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The browser or Node process has no usable WebGPU adapter. */
export class WebGPUNotAvailableError extends Qwen3NextError {}

/** A checkpoint or packed model could not be read: bad header, unknown dtype, missing tensor, wrong shape. */
export class ModelLoadError extends Qwen3NextError {
  constructor(
    message: string,
    readonly file?: string,
    readonly tensor?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** config.json is missing a field we need, or holds a value we cannot run. */
export class ConfigError extends ModelLoadError {}

/**
 * The chat template could not render these messages: it raised an error itself (Qwen3's template refuses a
 * conversation without a user turn, for example), failed on a value, or broke a limit (steps, string size).
 */
export class ChatTemplateError extends Qwen3NextError {}

/** Browser storage has too little room for the model. */
export class QuotaExceededError extends Qwen3NextError {
  constructor(message: string, readonly neededBytes: number, readonly availableBytes: number) {
    super(message);
  }
}

/**
 * A context too long: the prompt plus max_tokens past the engine's maxContext (`limit`), or at load a maxContext past the
 * positions the model was made for (promptTokens then holds the maxContext asked for).
 */
export class ContextLengthError extends Qwen3NextError {
  constructor(message: string, readonly promptTokens: number, readonly limit: number) {
    super(message);
  }
}

/** The GPU device was lost (driver reset, tab backgrounded too long, device.destroy()). */
export class DeviceLostError extends Qwen3NextError {}

/**
 * The GPU device cannot hold or run this model as configured: it ran out of memory loading it, or a kernel at this
 * shape passes one of the device's limits (workgroup memory, binding size). Thrown at load; the message names the
 * limit and what to lower. (Not named after WebGPU's own GPUValidationError, which it would shadow.)
 */
export class DeviceLimitError extends Qwen3NextError {
  constructor(message: string, readonly reason: 'out-of-memory' | 'limits') {
    super(message);
  }
}

/**
 * A saved session (engine.restoreSession) cannot be restored here: it was saved with another model, by another
 * format version, for a longer context than this engine has, or the bytes are not a session.
 */
export class SessionError extends Qwen3NextError {}

/**
 * A routed expert the model needs is neither in browser storage yet nor fetchable (the network is gone, or the
 * server stopped): a model opened before its download completed (EngineOptions.backgroundExperts). Nothing stored
 * is lost and the conversation's messages stand: send the request again once the network is back.
 */
export class ExpertUnavailableError extends Qwen3NextError {
  constructor(message: string, readonly layer: number, readonly expert: number, readonly storedExperts: number, readonly totalExperts: number, options?: { cause?: unknown }) {
    super(message, options);
  }
}
