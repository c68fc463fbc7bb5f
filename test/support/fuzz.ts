/**
 * The hostile-input runner (issue 13): every property runs with a fixed seed and a bounded number
 * of cases, each case under a time bound, and reports its figures — cases, crashes, hangs. Runs
 * are reproducible: DSO_FUZZ_SEED overrides the seed, DSO_FUZZ_RUNS the case count (bench/fuzz.ts
 * raises it). Phase one runs every case and counts every failure (fast-check would stop at the
 * first); when there was one, phase two lets fast-check shrink it to a small counterexample.
 *
 * Synchronous targets (the config parser, the name rules) run in a worker thread, so a case
 * that never returns is a counted hang that the worker's termination ends, not a frozen test.
 */
import { expect } from "bun:test";
import fc from "fast-check";

export const DEFAULT_FUZZ_SEED = 1313;

export function fuzzSeed(): number {
  const raw = process.env.DSO_FUZZ_SEED;
  return raw && /^-?\d+$/.test(raw) ? Number(raw) : DEFAULT_FUZZ_SEED;
}

/** The case count: DSO_FUZZ_RUNS when set, else the target's suite default. */
export function fuzzRuns(suiteDefault: number): number {
  const raw = process.env.DSO_FUZZ_RUNS;
  return raw && /^\d+$/.test(raw) && Number(raw) > 0 ? Number(raw) : suiteDefault;
}

/** What one case did: fine, a violated property, a crash (an exception the code should never let out), or a hang. */
export type Verdict = { ok: true } | { ok: false; kind: "violation" | "crash" | "hang"; detail: string };

export const OK: Verdict = { ok: true };
export const violation = (detail: string): Verdict => ({ ok: false, kind: "violation", detail });
export const crash = (error: unknown): Verdict => ({
  ok: false,
  kind: "crash",
  detail: error instanceof Error ? `${error.name}: ${error.message.slice(0, 300)}\n${error.stack?.split("\n").slice(1, 6).join("\n") ?? ""}` : String(error),
});

export interface FuzzFigures {
  target: string;
  seed: number;
  cases: number;
  crashes: number;
  hangs: number;
  violations: number;
  seconds: number;
  /** Slowest case, ms, and its input. */
  slowestMs: number;
  slowestInput?: string;
  /** The first failure seen and fast-check's shrunk counterexample, when any. */
  firstFailure?: string;
  counterexample?: string;
}

export interface FuzzOptions<T> {
  target: string;
  arbitrary: fc.Arbitrary<T>;
  check: (input: T) => Promise<Verdict>;
  runs: number;
  /** A case slower than this is a hang. */
  caseTimeoutMs: number;
  /** Inputs that once failed: always run first (regression cases). */
  examples?: T[];
  /** Time allowed for shrinking a failure. */
  shrinkMs?: number;
}

/** Races a case against its time bound. */
export async function withinBound(work: Promise<Verdict>, ms: number, onHang?: () => void): Promise<Verdict> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<Verdict>((resolve) => {
    timer = setTimeout(() => {
      onHang?.();
      resolve({ ok: false, kind: "hang", detail: `no answer within ${ms} ms` });
    }, ms);
  });
  try {
    return await Promise.race([work.catch((error: unknown) => crash(error)), hang]);
  } finally {
    clearTimeout(timer);
  }
}

const show = (value: unknown) => fc.stringify(value).slice(0, 2000);

export async function runFuzz<T>(options: FuzzOptions<T>): Promise<FuzzFigures> {
  const seed = fuzzSeed();
  const figures: FuzzFigures = { target: options.target, seed, cases: 0, crashes: 0, hangs: 0, violations: 0, seconds: 0, slowestMs: 0 };
  const started = performance.now();
  const timed = async (input: T) => {
    const t0 = performance.now();
    const verdict = await withinBound(options.check(input), options.caseTimeoutMs);
    const ms = performance.now() - t0;
    if (ms > figures.slowestMs) {
      figures.slowestMs = ms;
      figures.slowestInput = show(input).slice(0, 300);
    }
    return verdict;
  };
  const examples = (options.examples ?? []).map((e) => [e] as [T]);
  await fc.check(
    fc.asyncProperty(options.arbitrary, async (input) => {
      figures.cases++;
      const verdict = await timed(input);
      if (verdict.ok) return true;
      if (verdict.kind === "crash") figures.crashes++;
      else if (verdict.kind === "hang") figures.hangs++;
      else figures.violations++;
      figures.firstFailure ??= `${verdict.kind}: ${verdict.detail}\ninput: ${show(input)}`;
      return true;
    }),
    { seed, numRuns: options.runs, examples },
  );
  if (figures.firstFailure) {
    const shrinkDeadline = performance.now() + (options.shrinkMs ?? 20_000);
    const details = await fc.check(
      fc.asyncProperty(options.arbitrary, async (input) => {
        if (performance.now() > shrinkDeadline) return true;
        return (await timed(input)).ok;
      }),
      { seed, numRuns: options.runs, examples, interruptAfterTimeLimit: options.shrinkMs ?? 20_000 },
    );
    if (details.failed && details.counterexample) {
      const verdict = await timed(details.counterexample[0]);
      figures.counterexample = `${show(details.counterexample[0])}${verdict.ok ? "" : `\n→ ${verdict.kind}: ${verdict.detail}`}`;
    }
  }
  figures.seconds = (performance.now() - started) / 1000;
  return figures;
}

/** One line per target, the figures the suite prints (docs/reliability.md, "Hostile input"). */
export function formatFigures(f: FuzzFigures): string {
  const extra = f.violations ? `, violations ${f.violations}` : "";
  return `fuzz ${f.target}: seed ${f.seed}, cases ${f.cases}, crashes ${f.crashes}, hangs ${f.hangs}${extra}, slowest case ${f.slowestMs.toFixed(0)} ms, ${f.seconds.toFixed(1)} s`;
}

/** The failure text a test shows when a target failed: the first failure and the shrunk counterexample. */
export function failureReport(f: FuzzFigures): string {
  if (!f.firstFailure) return "";
  return `${formatFigures(f)}\nfirst failure: ${f.firstFailure}\nshrunk: ${f.counterexample ?? "(none within the shrink budget)"}\nreplay: DSO_FUZZ_SEED=${f.seed}`;
}

interface WorkerReply {
  id: number;
  verdict: Verdict;
}

/**
 * A check that runs `target` (a name in test/fuzz/checks.ts) in a worker thread. A case past
 * `boundMs` terminates the worker (it may be stuck in a loop) and the next case gets a new one.
 */
export function workerCheck<T>(target: string, boundMs: number): { check: (input: T) => Promise<Verdict>; close: () => void } {
  let worker: Worker | undefined;
  let nextId = 0;
  const pending = new Map<number, (v: Verdict) => void>();
  const spawn = () => {
    const w = new Worker(new URL("../fuzz/worker.ts", import.meta.url).href);
    w.onmessage = (event: MessageEvent<WorkerReply>) => {
      pending.get(event.data.id)?.(event.data.verdict);
      pending.delete(event.data.id);
    };
    w.onerror = (event) => {
      for (const resolve of pending.values()) resolve(crash(new Error(`worker error: ${event.message}`)));
      pending.clear();
      if (worker === w) worker = undefined;
    };
    return w;
  };
  const check = (input: T): Promise<Verdict> => {
    worker ??= spawn();
    const w = worker;
    const id = nextId++;
    const answer = new Promise<Verdict>((resolve) => {
      pending.set(id, resolve);
      w.postMessage({ id, target, input });
    });
    return withinBound(answer, boundMs, () => {
      pending.delete(id);
      w.terminate();
      if (worker === w) worker = undefined;
    });
  };
  return {
    check,
    close: () => {
      worker?.terminate();
      worker = undefined;
    },
  };
}

/** Prints a target's figures and asserts it ran clean: no failure, no crash, no hang, cases run. */
export function expectClean(figures: FuzzFigures): void {
  console.log(formatFigures(figures));
  expect(failureReport(figures)).toBe("");
  expect(figures.crashes).toBe(0);
  expect(figures.hangs).toBe(0);
  expect(figures.cases).toBeGreaterThan(0);
}
