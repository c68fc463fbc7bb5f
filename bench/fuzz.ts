/**
 * The hostile-input properties of test/fuzz with many more cases; prints a markdown table
 * (target, cases, crashes, hangs, seconds) for docs/reliability.md "Hostile input".
 *
 *   bun run build && bun bench/fuzz.ts              # root; starts and stops its own dockerd
 *   DSO_FUZZ_RUNS=10000 DSO_FUZZ_SEED=7 bun bench/fuzz.ts
 *
 * Without DSO_FUZZ_RUNS each target gets its bench default below (dso.yaml cases cost about
 * 100 ms each, the others well under 10 ms). A failure prints its shrunk counterexample.
 */
import { ensureDocker, stopDocker } from "../test/support/docker-daemon.ts";
import { type FuzzFigures, failureReport, fuzzRuns, fuzzSeed } from "../test/support/fuzz.ts";
import { fuzzConfig, fuzzConfigRewrites, fuzzLabels, fuzzNames, fuzzVolumeOptions } from "../test/fuzz/properties.ts";
import { fuzzSocket, startSocketAgent } from "../test/fuzz/socket-cases.ts";
import { fuzzTemplates } from "../test/fuzz/template-cases.ts";

const BENCH_RUNS = { config: 3_000, configRewrite: 2_000, labels: 10_000, volumeOptions: 10_000, names: 10_000, templates: 10_000, socket: 3_000 };

const rows: FuzzFigures[] = [];
const notes: string[] = [];
const run = async (f: Promise<FuzzFigures>) => {
  const figures = await f;
  rows.push(figures);
  console.error(`${figures.target}: ${figures.cases} cases, ${figures.crashes} crashes, ${figures.hangs} hangs, ${figures.seconds.toFixed(1)} s`);
  if (figures.firstFailure) notes.push(failureReport(figures));
};

await run(fuzzConfig(fuzzRuns(BENCH_RUNS.config)));
await run(fuzzConfigRewrites(fuzzRuns(BENCH_RUNS.configRewrite)));
await run(fuzzLabels(fuzzRuns(BENCH_RUNS.labels)));
await run(fuzzVolumeOptions(fuzzRuns(BENCH_RUNS.volumeOptions)));
await run(fuzzNames(fuzzRuns(BENCH_RUNS.names)));
await run(fuzzTemplates(fuzzRuns(BENCH_RUNS.templates)));

const docker = await ensureDocker();
const { agent, cleanup } = await startSocketAgent(docker.host);
try {
  const socket = await fuzzSocket(agent, fuzzRuns(BENCH_RUNS.socket));
  rows.push(socket.figures);
  if (socket.figures.firstFailure) notes.push(failureReport(socket.figures));
  notes.push(
    `socket: agent alive after the run: ${agent.proc.exitCode === null}; dso status answered ${socket.latencies.length} times during the run, ${socket.unanswered} unanswered, worst ${Math.max(...socket.latencies).toFixed(0)} ms; after the run ${socket.after?.toFixed(0) ?? "no answer"} ms`,
  );
} finally {
  await cleanup();
  await stopDocker();
}

console.log(`seed ${fuzzSeed()}\n`);
console.log("| target | cases | crashes | hangs | property violations | slowest case (ms) | seconds |");
console.log("|---|---:|---:|---:|---:|---:|---:|");
for (const r of rows) console.log(`| ${r.target} | ${r.cases} | ${r.crashes} | ${r.hangs} | ${r.violations} | ${r.slowestMs.toFixed(0)} | ${r.seconds.toFixed(1)} |`);
for (const note of notes) console.log(`\n${note}`);
