/**
 * Delivery latency, by mode, side by side with `docker cp` of the same files, in one run against
 * a private dockerd (the test daemon helper). Prints a markdown table of medians.
 *
 *   bun bench/delivery.ts            # root; starts and stops its own dockerd
 *
 * Every DSO figure is the full `deliverToContainer` call: inspect, mode pick, tar build and
 * delivery; the per-container tar probe (--tmpfs targets) is cached as the agent caches it, and
 * paid in the warm-up round. The fleet rounds run after that warm-up too. `docker cp` is the CLI a user would run, into a
 * tmpfs volume (where it at least lands in RAM), including the CLI's own start-up.
 */
import type Dockerode from "dockerode";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { deliverToContainer, deliverWithPlan } from "../src/delivery/deliver.ts";
import { pickDeliveryMode } from "../src/delivery/mode-picker.ts";
import { createVolumeDriver } from "../src/delivery/plugin/volume-driver.ts";
import type { DeliveryMode, SecretFile } from "../src/delivery/types.ts";
import { configureLogger } from "../src/log/logger.ts";
import { ensureDocker, stopDocker } from "../test/support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages, NOTAR_IMAGE } from "../test/support/test-images.ts";

const SINGLE_RUNS = 7;
const FLEET_RUNS = 3;
const FLEET_SIZE = 50;
const FLEET_FILES = 10;
const FILE_COUNTS = [1, 10, 100];
const VALUE_BYTES = 1024;
const DOCKER_CLI = ["/usr/local/bin/docker", "/usr/bin/docker"].find((path) => existsSync(path));
const DRIVER = `dso-bench-${process.pid}`;
const PLUGIN_SOCKET = `/run/docker/plugins/${DRIVER}.sock`;

/**
 * volume: as the agent on the host writes a tmpfs volume (at its host mountpoint); "volume /proc":
 * as the agent in its container deployment does (the data root is not mounted there: through
 * /proc/<pid>/root); "volume archive": the fallback when neither is visible (the Docker archive API).
 */
type Column = DeliveryMode | "volume /proc" | "volume archive" | "docker cp";
const COLUMNS: Column[] = ["plugin", "volume", "volume /proc", "volume archive", "exec", "procfs", "docker cp"];
/** Where each mode delivers inside a bench container. */
const PATHS: Record<Column, string> = {
  plugin: "/run/dso",
  volume: "/run/vol",
  "volume /proc": "/run/vol",
  "volume archive": "/run/vol",
  exec: "/run/tmpfs",
  procfs: "/run/tmpfs",
  "docker cp": "/run/vol",
};

interface BenchContainer {
  busybox: Dockerode.Container; // plugin, volume, exec and docker cp targets
  busyboxPid: number;
  notar: Dockerode.Container; // procfs target (no tar in the image)
}

function files(count: number, round: number): SecretFile[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `secret_${i}`,
    content: new TextEncoder().encode(`${round}:${i}:`.padEnd(VALUE_BYTES, "x")),
    mode: 0o400,
    uid: 65534,
    gid: 65534,
  }));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function main(): Promise<void> {
  if (!DOCKER_CLI) throw new Error("docker CLI not found");
  configureLogger({ level: "warn", format: "pretty" });
  const daemon = await ensureDocker();
  const { docker } = daemon;
  await ensureTestImages(docker);

  const root = await mkdtemp("/tmp/dso-bench-root-");
  Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0711", "tmpfs", root]);
  const srcRoot = await mkdtemp("/tmp/dso-bench-src-");
  const driver = await createVolumeDriver({ root, resolveFiles: async () => ({ files: files(1, 0) }) });
  await mkdir("/run/docker/plugins", { recursive: true });
  const server = Bun.serve({ unix: PLUGIN_SOCKET, development: false, fetch: async (req) => (await driver.handle(req)) ?? new Response(null, { status: 404 }) });
  const created: Dockerode.Container[] = [];
  // As the agent does: the tar probe runs once per container (in the warm-up round), not per delivery.
  const tarProbeCache = new Map<string, boolean>();
  const volumes: string[] = [];

  async function benchContainer(index: number): Promise<BenchContainer> {
    const vol = `dso-bench-tmpfs-${process.pid}-${index}`;
    const dsoVol = `dso-bench-dso-${process.pid}-${index}`;
    volumes.push(vol, dsoVol);
    await docker.createVolume({ Name: vol, DriverOpts: { type: "tmpfs", device: "tmpfs", o: "size=16m" } });
    const busybox = await docker.createContainer({
      Image: BUSYBOX_IMAGE,
      HostConfig: {
        NetworkMode: "none",
        Tmpfs: { "/run/tmpfs": "size=16m" },
        Mounts: [
          { Type: "volume", Source: vol, Target: "/run/vol" },
          { Type: "volume", Source: dsoVol, Target: "/run/dso", VolumeOptions: { DriverConfig: { Name: DRIVER, Options: { secrets: "bench" } } } } as unknown as Dockerode.MountSettings,
        ],
      },
    });
    const notar = await docker.createContainer({ Image: NOTAR_IMAGE, HostConfig: { NetworkMode: "none", Tmpfs: { "/run/tmpfs": "size=16m" } } });
    created.push(busybox, notar);
    await Promise.all([busybox.start(), notar.start()]);
    return { busybox, busyboxPid: (await busybox.inspect()).State.Pid, notar };
  }

  /** Writes the file set to a host dir once, for docker cp (bench values are not secrets). */
  async function sourceDir(set: SecretFile[]): Promise<string> {
    const dir = await mkdtemp(join(srcRoot, "set-"));
    await Promise.all(set.map((file) => writeFile(join(dir, file.name), file.content)));
    return dir;
  }

  /** `warmUp`: a tar probe that timed out on a loaded host may pick another mode once; not measured. */
  async function deliverOnce(column: Column, target: BenchContainer, set: SecretFile[], src: string, warmUp = false): Promise<void> {
    if (column === "docker cp") {
      const proc = Bun.spawn([DOCKER_CLI as string, "cp", `${src}/.`, `${target.busybox.id}:${PATHS[column]}`], {
        env: { DOCKER_HOST: daemon.host, PATH: process.env.PATH ?? "" },
        stdout: "ignore",
        stderr: "pipe",
      });
      if ((await proc.exited) !== 0) throw new Error(`docker cp failed: ${await new Response(proc.stderr).text()}`);
      return;
    }
    const container = column === "procfs" ? target.notar : target.busybox;
    // procfs as the agent picks it where it sees the host's PIDs (planner.ts: preferProcfs), no tar probe first.
    const opts = { pluginDrivers: [DRIVER], pluginVolumeDir: driver.mountpointOf, tarProbeCache, writeVolumesDirectly: column !== "volume archive", preferProcfs: column === "procfs" };
    if (column === "volume /proc") {
      // The full pick (inspect, volume inspect, mountpoint check), then the way in the agent takes
      // where the mountpoint is not visible (the PID is what the pick's inspect reported).
      const plan = await pickDeliveryMode(docker, container.id, PATHS[column], opts);
      const result = await deliverWithPlan(docker, { ...plan, hostPath: undefined, pid: target.busyboxPid }, set);
      if (result.mode !== "volume" || !plan.hostPath) throw new Error(`expected a direct volume plan, got ${plan.mode}: ${plan.reason}`);
      return;
    }
    const result = await deliverToContainer(docker, container.id, PATHS[column], set, opts);
    const expected = column === "volume archive" ? "volume" : column;
    if (result.mode !== expected && !warmUp) throw new Error(`expected mode ${expected}, got ${result.mode}`);
  }

  /** Failures (on a loaded machine: exec timeouts) count as Infinity and are reported beside the median. */
  const failures = new Map<string, number>();
  async function time(work: () => Promise<unknown>, cell?: string): Promise<number> {
    const started = performance.now();
    try {
      await work();
    } catch (error) {
      // A warm-up round (no cell) is not measured; its failure is only reported.
      if (cell) failures.set(cell, (failures.get(cell) ?? 0) + 1);
      console.error(`${cell ?? "warm-up"}: ${(error as Error).message.split("\n")[0]}`);
      return Number.POSITIVE_INFINITY;
    }
    return performance.now() - started;
  }

  const rows: Array<{ label: string; key: string; cells: Record<Column, number> }> = [];
  const loadAtStart = loadavg()[0] ?? Number.NaN;
  try {
    const fleet = await Promise.all(Array.from({ length: FLEET_SIZE }, (_, i) => benchContainer(i)));
    const single = fleet[0] as BenchContainer;

    for (const count of FILE_COUNTS) {
      const cells = {} as Record<Column, number>;
      for (const column of COLUMNS) {
        const samples: number[] = [];
        for (let round = 0; round <= SINGLE_RUNS; round++) {
          const set = files(count, round);
          const src = await sourceDir(set);
          const ms = await time(() => deliverOnce(column, single, set, src, round === 0), round > 0 ? `${count}/1/${column}` : undefined);
          if (round > 0) samples.push(ms); // round 0 warms up (plugin activation, first exec)
        }
        cells[column] = median(samples);
      }
      rows.push({ label: `${count} file${count > 1 ? "s" : ""}, 1 container`, key: `${count}/1`, cells });
    }

    const coldCells = {} as Record<Column, number>;
    const fleetCells = {} as Record<Column, number>;
    for (const column of COLUMNS) {
      const samples: number[] = [];
      for (let round = 0; round <= FLEET_RUNS; round++) {
        const set = files(FLEET_FILES, 100 + round);
        const src = await sourceDir(set);
        const ms = await time(() => Promise.all(fleet.map((target) => deliverOnce(column, target, set, src, round === 0))), `fleet/${round === 0 ? "cold" : "warm"}/${column}`);
        if (round === 0) coldCells[column] = ms; // first delivery: exec's tar probe runs for all 50
        else samples.push(ms);
      }
      fleetCells[column] = median(samples);
    }
    rows.push({ label: `${FLEET_FILES} files, ${FLEET_SIZE} containers at once (first delivery)`, key: "fleet/cold", cells: coldCells });
    rows.push({ label: `${FLEET_FILES} files, ${FLEET_SIZE} containers at once`, key: "fleet/warm", cells: fleetCells });
  } finally {
    await Promise.all(created.map((c) => c.remove({ force: true }).catch(() => undefined)));
    await Promise.all(volumes.map((v) => docker.getVolume(v).remove({ force: true }).catch(() => undefined)));
    server.stop(true);
    await rm(PLUGIN_SOCKET, { force: true });
    Bun.spawnSync(["umount", "-l", root]);
    await rm(root, { recursive: true, force: true });
    await rm(srcRoot, { recursive: true, force: true });
    await stopDocker();
  }

  const fmt = (ms: number) => (!Number.isFinite(ms) ? "failed" : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);
  console.log(`\nmedian wall time (${SINGLE_RUNS} runs single, ${FLEET_RUNS} runs fleet); ${VALUE_BYTES} B per file; docker ${DOCKER_CLI}; load average ${loadAtStart.toFixed(1)} at start, ${(loadavg()[0] ?? Number.NaN).toFixed(1)} at end\n`);
  console.log(`| scenario | ${COLUMNS.join(" | ")} | DSO vs docker cp |`);
  console.log(`|---|${COLUMNS.map(() => "---:").join("|")}|---:|`);
  for (const row of rows) {
    const cp = row.cells["docker cp"];
    const speedups = COLUMNS.filter((c) => c !== "docker cp").map((c) => `${c} ${(cp / row.cells[c]).toFixed(1)}×`);
    const cell = (c: Column) => fmt(row.cells[c]) + (failures.get(`${row.key}/${c}`) ? ` (${failures.get(`${row.key}/${c}`)} failed)` : "");
    console.log(`| ${row.label} | ${COLUMNS.map(cell).join(" | ")} | ${speedups.join(", ")} |`);
  }
}

await main();
