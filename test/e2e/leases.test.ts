/**
 * Dynamic Vault credentials end to end: the compiled agent, the private test daemon and the Vault
 * wire server (database engine, 6 s leases, 8 s max_ttl). Two containers get two distinct
 * credentials; an agent restart renews and issues nothing; the 6 s lease is renewed, then replaced
 * before max_ttl with the container's strategy (SIGHUP) run once; container removal revokes its
 * lease within the grace period; a Vault outage longer than the lease raises the alarm before
 * expiry; a memory scan finds no password in the agent after its window. Then, on the same agent:
 * a `scope: shared` credential in a DSO volume mounted by two containers (one lease, the same
 * credential in both); a PKI certificate whose key matches it; a dockerd restart (live-restore)
 * that issues nothing for the running containers.
 * One agent for the file (restarted once).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readInside } from "../support/agent-probe.ts";
import { dsoProcesses, scanProcessMemory } from "../support/memory-scan.ts";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { dsoBinary } from "../support/dso-binary.ts";
import { eventually } from "../support/container-exec.ts";
import { ensureDocker, restartDocker, setDaemonConfig } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";
import { startVaultServer, type VaultServer } from "../support/vault-server.ts";

/** Counts SIGHUPs into a file the test reads through /proc/<pid>/root. */
const IDLE = 'trap "exit 0" TERM; trap "echo hup >> /tmp/hups" HUP; while true; do sleep 0.1; done';

let docker: Dockerode;
let dockerHost: string;
let dir: string;
let volumesRoot: string;
let vault: VaultServer;
let agentToken: string;
let agent: AgentProcess;
const containers: Array<{ id: string; pid: number }> = [];
const volumes: string[] = [];
/** The agent is also the volume driver of this name (a DSO volume for the shared credential). */
const DRIVER = `dsolease-${process.pid}`;
const PLUGIN_DIR = "/run/docker/plugins";
const CERT_CN = "web.dso.test";

async function runContainer(name: string, options: { secrets?: string; volume?: string } = {}): Promise<{ id: string; pid: number }> {
  const c = await docker.createContainer({
    name: `${name}-${process.pid}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", IDLE],
    Labels: options.volume ? {} : { "dso.reloader": "true", "dso.secrets": options.secrets ?? "db", "dso.update.strategy": "signal" },
    HostConfig: {
      NetworkMode: "none",
      ...(options.volume ? { Mounts: [{ Type: "volume" as const, Source: options.volume, Target: "/run/secrets" }] } : { Tmpfs: { "/run/secrets": "rw,mode=0755" } }),
    },
  });
  await c.start();
  const member = { id: c.id, pid: (await c.inspect()).State.Pid };
  containers.push(member);
  return member;
}

const start = () => startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost, name: DRIVER, env: { VAULT_TOKEN: agentToken } });
const usernameIn = (c: { pid: number }) => readInside(c.pid, "/run/secrets/username");
const hupsIn = (c: { pid: number }) => (readInside(c.pid, "/tmp/hups") ?? "").split("\n").filter(Boolean).length;
const issued = () => vault.state.dynamic.calls.creds ?? 0;

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  dockerHost = d.host;
  await ensureTestImages(docker);
  vault = await startVaultServer({
    engines: {
      database: { type: "database", roles: { app: { defaultTtl: 6, maxTtl: 8 }, shared: { defaultTtl: 600, maxTtl: 1200 } } },
      pki: { type: "pki", roles: { web: { defaultTtl: 3600, maxTtl: 7200 } } },
    },
  });
  // The agent's token: periodic and an orphan, so its leases outlive any parent token.
  const created = await fetch(`${vault.url}/v1/auth/token/create`, { method: "POST", headers: { "x-vault-token": vault.state.rootToken }, body: JSON.stringify({ period: "1h", no_parent: true, policies: ["root"] }) });
  agentToken = ((await created.json()) as { auth: { client_token: string } }).auth.client_token;
  dir = await mkdtemp(join(tmpdir(), "dso-leases-"));
  volumesRoot = join(dir, "volumes");
  await mkdir(volumesRoot);
  Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", volumesRoot]);
  await writeFile(
    join(dir, "dso.yaml"),
    [
      "providers:",
      "  vault:",
      "    type: vault",
      `    config: { address: "${vault.url}" }`,
      "secrets:",
      "  - name: db",
      "    provider: vault",
      "    dynamic: { path: database/creds/app, revoke_grace: 500ms, reissue_margin: 30% }",
      "  - name: dbshared",
      "    provider: vault",
      "    dynamic: { path: database/creds/shared, scope: shared }",
      "    templates:",
      '      - { file: dsn, template: "postgres://{{ .username }}:{{ .password | urlquery }}@db.internal/app" }',
      "      - { file: db.env, format: env }",
      "  - name: tls",
      "    provider: vault",
      `    dynamic: { path: pki/issue/web, params: { common_name: ${CERT_CN}, alt_names: "a.${CERT_CN}", ttl: 1h } }`,
      "agent:",
      `  volumes_root: ${volumesRoot}`,
      "  metrics: { enabled: true }",
      "  watch: { polling_interval: 1h }",
      "",
    ].join("\n"),
  );
  agent = await start();
  await mkdir(PLUGIN_DIR, { recursive: true });
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  await Bun.$`ln -s ${agent.socket} ${join(PLUGIN_DIR, `${DRIVER}.sock`)}`.quiet();
}, 60_000);

afterAll(async () => {
  // DSO volumes go while their driver still answers (a volume without its driver costs dockerd ~15 s).
  await Promise.all(containers.map((c) => docker.getContainer(c.id).remove({ force: true }).catch(() => {})));
  for (const v of volumes) await docker.getVolume(v).remove().catch(() => {});
  await agent?.stop("SIGKILL");
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  Bun.spawnSync(["umount", "-l", volumesRoot]);
  await vault?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("dynamic Vault credentials, per container", () => {
  test("two containers get two credentials; an agent restart issues none; renewed, then replaced before max_ttl with one SIGHUP; removal revokes; an outage alarms before expiry", async () => {
    const [a, b] = await Promise.all([runContainer("lease-a"), runContainer("lease-b")]);
    const userA = await eventually("credential in a", async () => usernameIn(a));
    const userB = await eventually("credential in b", async () => usernameIn(b));
    const issuedAt = Date.now();
    const passwordA = readInside(a.pid, "/run/secrets/password");
    expect(passwordA).toBeString();
    expect(userA).not.toBe(userB);
    expect(issued()).toBe(2);
    const leaseOf = (user: string) => [...vault.state.dynamic.leases.values()].find((l) => l.identity === user)!;
    expect(leaseOf(userA).tokenId).toBe(agentToken);

    // The value lives only in its window: after delivery no copy of a's password is in the agent
    // or its provider processes; the lease id (metadata the agent keeps) is found: positive control.
    await Bun.sleep(300);
    const needles = [{ label: "password", value: passwordA! }, { label: "lease id", value: leaseOf(userA).id }];
    const found = { password: 0, lease: 0 };
    const processes = dsoProcesses(agent.proc.pid, await dsoBinary());
    expect(processes.length).toBeGreaterThanOrEqual(1);
    for (const p of processes) {
      const counts = scanProcessMemory(p.pid, needles).counts;
      found.password += counts.get("password")!.latin1 + counts.get("password")!.utf16;
      found.lease += counts.get("lease id")!.latin1 + counts.get("lease id")!.utf16;
    }
    expect(found.lease).toBeGreaterThan(0);
    expect(found.password).toBe(0);

    // Agent restart: the records on the tmpfs say who has what; a reconcile issues nothing.
    await agent.stop("SIGTERM");
    agent = await start();
    await agent.waitForLog(/connected to Docker/);
    await Bun.sleep(500);
    expect(issued()).toBe(2);
    expect(usernameIn(a)).toBe(userA);

    // Renewed at 2/3 (4 s) by the restarted agent, capped by the 8 s max_ttl, then replaced.
    await eventually("renewed", async () => (leaseOf(userA).lastRenewalMs !== undefined ? true : undefined), 6_000);
    const replaced = await eventually("replacement in a", async () => {
      const now = usernameIn(a);
      return now && now !== userA ? now : undefined;
    }, 6_000);
    expect(Date.now()).toBeLessThan(leaseOf(userA).maxExpiresMs);
    expect(replaced).not.toBe(userB);
    await eventually("SIGHUP", async () => (hupsIn(a) >= 1 ? true : undefined));
    expect(hupsIn(a)).toBe(1);
    // Seen: `dso ls` per consumer (expiry, last renewal), `dso status` every lease.
    const ls = (await agent.cli(["ls", "--json"])) as { code: number; stdout: string };
    const rowOfA = (JSON.parse(ls.stdout) as { containers: Array<{ id: string; status: Array<{ name: string; state: string; lease?: { expiresAt: string; lastRenewalAt?: string } }> }> }).containers.find((c) => c.id === a.id)!.status[0]!;
    expect(rowOfA.state).toBe("leased");
    expect(Date.parse(rowOfA.lease!.expiresAt)).toBeGreaterThan(Date.now());
    const status = JSON.parse((await agent.cli(["status", "--json"])).stdout) as { leases: Array<{ secret: string; consumer: string; state: string }> };
    expect(status.leases.filter((l) => l.secret === "db" && l.consumer === a.id && l.state === "active")).toHaveLength(1);
    expect(Date.now() - issuedAt).toBeLessThan(8_000);
    // The replaced lease is revoked by the agent after the grace period, before Vault would expire it.
    await eventually("old lease revoked", async () => (leaseOf(userA).revokedMs !== undefined ? true : undefined), 2_000);
    expect(leaseOf(userA).revokedMs!).toBeLessThan(leaseOf(userA).maxExpiresMs);

    // Removal: b's lease is revoked after the 0.5 s grace, well before it would expire.
    const bLease = leaseOf((usernameIn(b) ?? userB)!);
    const removedAt = Date.now();
    await docker.getContainer(b.id).remove({ force: true });
    await eventually("b revoked", async () => (bLease.revokedMs !== undefined ? true : undefined), 3_000);
    expect(bLease.revokedMs! - removedAt).toBeGreaterThanOrEqual(400);
    expect(bLease.revokedMs!).toBeLessThan(bLease.expiresMs);

    // A Vault outage longer than the lease: the alarm (its error line) comes at the
    // renewal point of a's new lease, before it expires.
    const current = leaseOf(replaced);
    vault.state.unavailable = true;
    try {
      await agent.waitForLog(/a dynamic credential is at risk/, 6_000);
      expect(Date.now()).toBeLessThan(current.expiresMs);
    } finally {
      vault.state.unavailable = false;
    }
    expect(agent.logs()).not.toContain(passwordA!);
  }, 30_000);

  test("scope shared: a DSO volume mounted by two containers gives both the same credential, one lease, rendered through its templates", async () => {
    const t0 = performance.now();
    const issuedBefore = issued();
    const volume = `dsolease-shared-${process.pid}`;
    await docker.createVolume({ Name: volume, Driver: DRIVER, DriverOpts: { secrets: "dbshared", mode: "0444" } });
    volumes.push(volume);
    const one = await runContainer("lease-shared-1", { volume });
    const two = await runContainer("lease-shared-2", { volume });
    // Plugin mode: the files are there before the entrypoint. The secret has templates: only its outputs.
    const dsnOne = readInside(one.pid, "/run/secrets/dsn");
    expect(dsnOne).toMatch(/^postgres:\/\/v-token-shared-[^:]+:[^@]+@db\.internal\/app$/);
    expect(readInside(two.pid, "/run/secrets/dsn")).toBe(dsnOne!);
    expect(readInside(one.pid, "/run/secrets/username")).toBeUndefined();
    expect(issued() - issuedBefore).toBe(1);
    const shared = vault.state.dynamic.activeLeases().filter((l) => l.path === "database/creds/shared");
    expect(shared).toHaveLength(1);
    expect(shared[0]!.tokenId).toBe(agentToken);
    // The credential Vault issued is the one rendered: the DSN's user and the env file's.
    expect(dsnOne).toStartWith(`postgres://${shared[0]!.identity}:`);
    const env = readInside(two.pid, "/run/secrets/db.env")!;
    expect(env).toContain(`username=${shared[0]!.identity}\n`);
    const password = /^password=(.*)$/m.exec(env)![1]!;
    expect(dsnOne).toContain(`:${encodeURIComponent(password)}@`);
    console.log(`shared scope through a DSO volume: ${Math.round(performance.now() - t0)} ms`);
  }, 20_000);

  test("PKI: a labelled container receives a real X.509 certificate with its matching key, CN as configured", async () => {
    const t0 = performance.now();
    const c = await runContainer("lease-pki", { secrets: "tls" });
    const pem = await eventually("certificate in the container", async () => readInside(c.pid, "/run/secrets/certificate"));
    const key = readInside(c.pid, "/run/secrets/private_key")!;
    const ca = readInside(c.pid, "/run/secrets/issuing_ca")!;
    const cert = new X509Certificate(pem);
    expect(cert.subject).toContain(`CN=${CERT_CN}`);
    expect(cert.subjectAltName).toContain(`DNS:a.${CERT_CN}`);
    expect(cert.checkPrivateKey(createPrivateKey(key))).toBe(true);
    expect(cert.verify(new X509Certificate(ca).publicKey)).toBe(true);
    const serial = readInside(c.pid, "/run/secrets/serial_number")!;
    expect(vault.state.dynamic.certificates.get(serial)).toMatchObject({ commonName: CERT_CN, tokenId: agentToken });
    expect(vault.state.dynamic.calls.issue).toBe(1);
    expect(agent.logs()).not.toContain(key.split("\n")[1]!);
    console.log(`pki through the agent: ${Math.round(performance.now() - t0)} ms`);
  }, 20_000);

  test("a dockerd restart (live-restore) issues nothing for a running container", async () => {
    const t0 = performance.now();
    const reconnects = () => agent.logs().split("\n").filter((line) => /docker event stream reconnected/.test(line)).length;
    // The first restart switches live-restore on (it stops this file's earlier containers; they keep their leases).
    setDaemonConfig({ "live-restore": true });
    try {
      await restartDocker();
      await eventually("event stream back", async () => (reconnects() >= 1 ? true : undefined));
      const c = await runContainer("lease-live", { secrets: "tls" });
      const serial = await eventually("certificate in the container", async () => readInside(c.pid, "/run/secrets/serial_number"));
      const issuedBefore = { pki: vault.state.dynamic.calls.issue ?? 0 };
      const startedAt = (await docker.getContainer(c.id).inspect()).State.StartedAt;
      const seen = reconnects();

      await restartDocker();
      await eventually("event stream back after the second restart", async () => (reconnects() > seen ? true : undefined));
      // The reconnect starts a reconcile pass over every labelled container; give it time to act.
      await Bun.sleep(1_500);
      const after = (await docker.getContainer(c.id).inspect()).State;
      expect(after.Running).toBe(true);
      expect(after.StartedAt).toBe(startedAt);
      expect(vault.state.dynamic.calls.issue ?? 0).toBe(issuedBefore.pki);
      expect(readInside(c.pid, "/run/secrets/serial_number")).toBe(serial);
    } finally {
      // Back to the suite's plain daemon for the files that follow: restart once more without it.
      setDaemonConfig({});
      await restartDocker();
    }
    console.log(`dockerd restart (live-restore), three restarts: ${Math.round(performance.now() - t0)} ms`);
  }, 60_000);
});
