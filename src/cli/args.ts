// Minimal argv parsing for q3n: `--name value` and `--flag`, with typed lookups and clear errors.
export class UsageError extends Error {
  override name = 'UsageError';
}

export class Args {
  private readonly values = new Map<string, string | true>();
  readonly positional: string[] = [];

  constructor(argv: string[], private readonly flags: ReadonlySet<string>) {
    for (let i = 0; i < argv.length; i++) {
      const a = argv[i];
      if (!a.startsWith('--')) { this.positional.push(a); continue; }
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      if (eq >= 0) this.values.set(name, a.slice(eq + 1));
      else if (flags.has(name)) this.values.set(name, true);
      else {
        const v = argv[++i];
        if (v === undefined) throw new UsageError(`--${name} needs a value`);
        this.values.set(name, v);
      }
    }
  }

  /** Throw on options the command does not know (typos should not be silently ignored). */
  allow(names: string[]): this {
    for (const k of this.values.keys()) if (!names.includes(k)) throw new UsageError(`unknown option --${k}`);
    return this;
  }

  str(name: string, fallback?: string): string {
    const v = this.values.get(name);
    if (v === undefined || v === true) {
      if (fallback !== undefined) return fallback;
      throw new UsageError(`--${name} is required`);
    }
    return v;
  }

  num(name: string, fallback?: number): number {
    const v = this.values.get(name);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      throw new UsageError(`--${name} is required`);
    }
    const n = Number(v);
    if (v === true || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${v}"`);
    return n;
  }

  flag(name: string): boolean {
    return this.values.get(name) === true;
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  ids(name: string): number[] {
    const v = this.str(name, '');
    if (v === '') return [];
    return v.split(',').map((s) => {
      const n = Number(s.trim());
      if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${name}: "${s}" is not a token id`);
      return n;
    });
  }
}
