/**
 * What a re-created container gets of the old one's storage, and which storage forces rolling to
 * replace in place: pure functions over `docker inspect` shapes (the daemon's side is
 * test/e2e/rolling-safety.test.ts).
 */
import { describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { describeStartError } from "../../src/reloader/strategies/rollback.ts";
import { replacementSpec, whyNotSideBySide } from "../../src/reloader/strategies/rolling.ts";
import { hostConfigKeepingVolumes, writableSharedStorage } from "../../src/reloader/strategies/storage.ts";

const ANON = "3f2a9c0d1e4b5a697887766554433221ffeeddccbbaa99887766554433221100";

function inspect(over: { binds?: string[]; mounts?: unknown[]; hostMounts?: unknown[]; labels?: Record<string, string>; ports?: unknown }): Dockerode.ContainerInspectInfo {
  return {
    Id: "c0ffee",
    Name: "/db",
    Image: "sha256:abc",
    Config: { Hostname: "c0ffee", Env: [], Labels: over.labels ?? {}, Volumes: { "/data": {} } },
    HostConfig: { Binds: over.binds ?? null, Mounts: over.hostMounts, Tmpfs: { "/run/secrets": "" }, PortBindings: over.ports ?? {} },
    Mounts: over.mounts ?? [],
    NetworkSettings: { Networks: {} },
  } as unknown as Dockerode.ContainerInspectInfo;
}

const imageVolume = { Type: "volume", Name: ANON, Source: `/var/lib/docker/volumes/${ANON}/_data`, Destination: "/data", Driver: "local", RW: true };
const namedVolume = { Type: "volume", Name: "pgdata", Source: "/var/lib/docker/volumes/pgdata/_data", Destination: "/var/lib/pg", Driver: "local", RW: true };

describe("a re-created container keeps the old one's storage", () => {
  test("an anonymous volume (image VOLUME or -v /path) is carried over by name; named volumes and binds stay as they are", () => {
    const info = inspect({ binds: ["pgdata:/var/lib/pg", "/srv/conf:/conf:ro"], mounts: [imageVolume, namedVolume] });
    const host = hostConfigKeepingVolumes(info);
    expect(host.Binds).toEqual(["pgdata:/var/lib/pg", "/srv/conf:/conf:ro", `${ANON}:/data`]);
    expect(replacementSpec(info, "db-next", {}).HostConfig?.Binds).toEqual(host.Binds!);
  });

  test("a read-only anonymous volume stays read-only; --mount type=volume without a source gets its name", () => {
    const info = inspect({ mounts: [{ ...imageVolume, RW: false }] });
    expect(hostConfigKeepingVolumes(info).Binds).toEqual([`${ANON}:/data:ro`]);
    const mounted = inspect({ hostMounts: [{ Type: "volume", Target: "/data" }], mounts: [imageVolume] });
    const host = hostConfigKeepingVolumes(mounted) as { Binds?: string[]; Mounts?: Array<{ Source?: string }> };
    expect(host.Mounts?.[0]?.Source).toBe(ANON);
    expect(host.Binds).toEqual([]);
  });

  test("nothing anonymous: the HostConfig is the old one, unchanged", () => {
    const info = inspect({ binds: ["pgdata:/var/lib/pg"], mounts: [namedVolume] });
    expect(hostConfigKeepingVolumes(info)).toBe(info.HostConfig);
  });
});

describe("which containers rolling replaces in place", () => {
  test("writable volumes and binds are shared storage; read-only ones and DSO's own secret targets are not", () => {
    const bind = { Type: "bind", Source: "/srv/uploads", Destination: "/uploads", RW: true };
    const secrets = { Type: "volume", Name: "secrets-vol", Destination: "/run/secrets", RW: true };
    const ro = { Type: "bind", Source: "/srv/conf", Destination: "/conf", RW: false };
    const info = inspect({ binds: ["pgdata:/var/lib/pg", "/srv/uploads:/uploads", "/srv/conf:/conf:ro", "secrets-vol:/run/secrets"], mounts: [imageVolume, namedVolume, bind, secrets, ro] });
    expect(writableSharedStorage(info, ["/run/secrets"])).toEqual([
      { kind: "anonymous volume", source: ANON, destination: "/data" },
      { kind: "volume", source: "pgdata", destination: "/var/lib/pg" },
      { kind: "bind", source: "/srv/uploads", destination: "/uploads" },
    ]);
    const why = whyNotSideBySide(info, ["/run/secrets"], false);
    expect(why).toContain(`anonymous volume ${ANON.slice(0, 12)} at /data`);
    expect(why).toContain("volume pgdata at /var/lib/pg");
    expect(why).toContain("dso.update.shared-storage=true");
  });

  test("the owner's opt-in label runs both side by side; fixed host ports never do; no storage runs side by side", () => {
    expect(whyNotSideBySide(inspect({ mounts: [imageVolume] }), [], true)).toBeUndefined();
    expect(whyNotSideBySide(inspect({ mounts: [], ports: { "80/tcp": [{ HostPort: "8080" }] } }), [], true)).toContain("fixed host ports");
    expect(whyNotSideBySide(inspect({ mounts: [] }), [], false)).toBeUndefined();
  });

  test("a start that fails on a taken host port says so", () => {
    const error = new Error("(HTTP code 500) server error - driver failed programming external connectivity on endpoint web: Bind for 0.0.0.0:8080 failed: port is already allocated");
    expect(describeStartError(error)).toBe("could not start: host port taken (driver failed programming external connectivity on endpoint web: Bind for 0.0.0.0:8080 failed: port is already allocated)");
    expect(describeStartError(new Error("(HTTP code 404) no such container - x"))).toBe("could not start: x");
  });
});
