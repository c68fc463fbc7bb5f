import { describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { existsSync } from "node:fs";
import { connectDocker } from "../../src/docker/client.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages, NOTAR_IMAGE } from "../support/test-images.ts";

/** Marks this file's containers, so the leak check below ignores anyone else's on a shared daemon. */
const OWNER_LABEL = { "dso-test.owner": "test/docker/test-daemon" };

/** Runs `cmd` to completion in a fresh container with no network and returns its output and exit code. */
async function runOnce(docker: Dockerode, image: string, cmd: string[]): Promise<{ output: string; exitCode: number }> {
  const container = await docker.createContainer({
    Image: image,
    Cmd: cmd,
    Labels: OWNER_LABEL,
    Tty: true, // raw output, no stdout/stderr multiplexing
    HostConfig: { NetworkMode: "none" },
  });
  try {
    await container.start();
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    const logs = await container.logs({ stdout: true, stderr: true, follow: false });
    return { output: logs.toString().replaceAll("\r\n", "\n"), exitCode: StatusCode };
  } finally {
    await container.remove({ force: true });
  }
}

/** Starts a container from `image` (its default Cmd keeps it up), execs `cmd` in it, returns the exit code. */
async function execExitCode(docker: Dockerode, image: string, cmd: string[]): Promise<number | null> {
  const container = await docker.createContainer({ Image: image, Labels: OWNER_LABEL, HostConfig: { NetworkMode: "none" } });
  try {
    await container.start();
    const exec = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({});
    stream.resume();
    await new Promise((resolve) => stream.on("end", resolve));
    return (await exec.inspect()).ExitCode;
  } finally {
    await container.remove({ force: true });
  }
}

describe("test daemon and images", () => {
  test("ensureDocker returns the same daemon every time, with its data root on disk", async () => {
    const first = await ensureDocker();
    const second = await ensureDocker();
    expect(second).toBe(first);
    expect(first.host).toBe(`unix://${first.socketPath}`);
    expect(first.socketPath.length).toBeLessThan(100);
    expect(existsSync(first.dataRoot)).toBe(true);
  });

  test("a busybox container with no network runs a shell command and sees only a loopback interface", async () => {
    const { docker } = await ensureDocker();
    await ensureTestImages(docker);
    const result = await runOnce(docker, BUSYBOX_IMAGE, ["sh", "-c", "echo hello; ls /sys/class/net"]);
    expect(result.exitCode).toBe(0);
    expect(result.output).toBe("hello\nlo\n");
  });

  test("the notar image links only sh, cat, sleep and ls", async () => {
    const { docker } = await ensureDocker();
    await ensureTestImages(docker);
    const result = await runOnce(docker, NOTAR_IMAGE, ["ls", "-1", "/bin"]);
    expect(result.exitCode).toBe(0);
    expect(result.output.trim().split("\n")).toEqual(["cat", "ls", "sh", "sleep"]);
  });

  test("exec of tar works in the busybox image and is not found in the notar image", async () => {
    const { docker } = await ensureDocker();
    await ensureTestImages(docker);
    expect(await execExitCode(docker, BUSYBOX_IMAGE, ["tar", "--help"])).toBe(0);
    // 126/127: the runtime could not find the command on PATH.
    expect([126, 127] as Array<number | null>).toContain(await execExitCode(docker, NOTAR_IMAGE, ["tar", "--help"]));
  });

  test("the images default to a long sleep, and building them again is a no-op", async () => {
    const { docker, host } = await ensureDocker();
    await ensureTestImages(docker);
    const busybox = await docker.getImage(BUSYBOX_IMAGE).inspect();
    const notar = await docker.getImage(NOTAR_IMAGE).inspect();
    expect(busybox.Config.Cmd).toEqual(["sleep", "3600"]);
    expect(notar.Config.Cmd).toEqual(["sleep", "3600"]);
    // A fresh client is not in ensureTestImages' memo, so this goes through the "image exists" check.
    const { docker: fresh } = await connectDocker({ env: { DOCKER_HOST: host } });
    await ensureTestImages(fresh);
    expect((await docker.getImage(BUSYBOX_IMAGE).inspect()).Id).toBe(busybox.Id);
    expect((await docker.getImage(NOTAR_IMAGE).inspect()).Id).toBe(notar.Id);
  });

  test("the helpers above leave no containers behind", async () => {
    const { docker } = await ensureDocker();
    const label = Object.entries(OWNER_LABEL).map(([key, value]) => `${key}=${value}`);
    expect(await docker.listContainers({ all: true, filters: { label } })).toEqual([]);
  });
});
