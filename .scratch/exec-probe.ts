import { deliverToContainer } from "../src/delivery/deliver.ts";
import { ensureDocker, stopDocker } from "../test/support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../test/support/test-images.ts";
const { docker } = await ensureDocker();
await ensureTestImages(docker);
const c = await docker.createContainer({ Image: BUSYBOX_IMAGE, HostConfig: { NetworkMode: "none", Tmpfs: { "/run/t": "size=16m" } } });
await c.start();
const files = (n: number, r: number) => Array.from({ length: n }, (_, i) => ({ name: `s_${i}`, content: new TextEncoder().encode(`${r}:${i}`.padEnd(1024, "x")), mode: 0o400, uid: 65534, gid: 65534 }));
const cache = new Map<string, boolean>();
try {
  for (const n of [1, 1, 1, 1, 100, 100, 100, 100]) {
    {
      const r = Math.random();
      const t = performance.now();
      const res = await deliverToContainer(docker, c.id, "/run/t", files(n, r), { tarProbeCache: cache });
      console.log(n, res.mode, (performance.now() - t).toFixed(0), "ms");
    }
  }
  // The script itself, timed inside: tar only vs whole
  const e = await docker.getContainer(c.id).exec({ Cmd: ["sh", "-c", "cd /run/t; time ls -A | wc -l; time cat s_* >/dev/null"], AttachStdout: true, AttachStderr: true });
  const s = await e.start({});
  s.on("data", (d: Buffer) => process.stdout.write(d.toString().replace(/[^\x20-\x7e\n]/g, "")));
  await new Promise((r) => s.on("end", r));
} finally {
  await c.remove({ force: true });
  await stopDocker();
}
