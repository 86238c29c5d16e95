// A minimal stand-in for the parts of vitest our GPU tests use, so the same test files can be bundled into one
// script and run on the GPU machine, which has Node and Dawn but no node_modules (see test/device/run.ts).
// expect() is vitest's own (@vitest/expect on chai); describe/it/hooks are a small sequential runner.
import { chai, JestAsymmetricMatchers, JestChaiExpect, JestExtend, setState } from '@vitest/expect';
import { fn, spyOn } from '@vitest/spy';

chai.use(JestExtend);
chai.use(JestChaiExpect);
chai.use(JestAsymmetricMatchers);

export const expect = ((value: unknown, message?: string) => chai.expect(value, message)) as unknown as typeof import('vitest').expect;
Object.assign(expect, chai.expect);
setState({ assertionCalls: 0, isExpectingAssertions: false, isExpectingAssertionsError: null, expectedAssertionsNumber: null, expectedAssertionsNumberErrorGen: null, testPath: '', currentTestName: '' } as never, expect as never);

type Fn = () => unknown | Promise<unknown>;
interface Suite { name: string; tests: { name: string; fn?: Fn }[]; beforeAll: Fn[]; afterAll: Fn[]; children: Suite[]; skip: boolean }

const root: Suite = { name: '', tests: [], beforeAll: [], afterAll: [], children: [], skip: false };
let current = root;

function describeImpl(name: string, body: () => void, skip = false) {
  const suite: Suite = { name, tests: [], beforeAll: [], afterAll: [], children: [], skip };
  current.children.push(suite);
  const parent = current;
  current = suite;
  body();
  current = parent;
}
export const describe = Object.assign((name: string, body: () => void) => describeImpl(name, body), {
  runIf: (cond: unknown) => (name: string, body: () => void) => describeImpl(name, body, !cond),
  skipIf: (cond: unknown) => (name: string, body: () => void) => describeImpl(name, body, !!cond),
});
// vitest's it(name, fn) and it(name, { timeout }, fn): the options are vitest's business, the body is the last function.
type ItArgs = unknown[];
const body = (args: ItArgs): Fn | undefined => args.find((a): a is Fn => typeof a === 'function');
const itImpl = (name: string, ...args: ItArgs) => void current.tests.push({ name, fn: body(args) });
export const it = Object.assign(itImpl, {
  runIf: (cond: unknown) => (name: string, ...args: ItArgs) => itImpl(name, ...(cond ? args : [])),
  skipIf: (cond: unknown) => (name: string, ...args: ItArgs) => itImpl(name, ...(cond ? [] : args)),
});
/** The spies our GPU tests use (vi.spyOn, vi.fn), from vitest's own @vitest/spy. */
export const vi = { spyOn, fn };
export const test = it;
export const beforeAll = (fn: Fn) => void current.beforeAll.push(fn);
export const afterAll = (fn: Fn) => void current.afterAll.push(fn);

/** Run every registered test in order; print one line per test and vitest-like totals. */
export async function runAll(): Promise<{ passed: number; failed: number; skipped: number }> {
  const totals = { passed: 0, failed: 0, skipped: 0 };
  const visit = async (s: Suite, path: string, skip: boolean) => {
    const here = s.name ? `${path}${s.name} > ` : path;
    skip ||= s.skip;
    if (!skip) for (const f of s.beforeAll) await f();
    for (const t of s.tests) {
      if (skip || !t.fn) { totals.skipped++; continue; }
      const start = performance.now();
      try {
        await t.fn();
        totals.passed++;
        console.log(`  ✓ ${here}${t.name} (${(performance.now() - start).toFixed(0)} ms)`);
      } catch (e) {
        totals.failed++;
        console.log(`  × ${here}${t.name}\n    ${String((e as Error).message ?? e).split('\n').slice(0, 6).join('\n    ')}`);
      }
    }
    for (const c of s.children) await visit(c, here, skip);
    if (!skip) for (const f of s.afterAll) await f();
  };
  await visit(root, '', false);
  return totals;
}
