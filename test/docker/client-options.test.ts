import { describe, expect, test } from "bun:test";
import Dockerode from "dockerode";
import { dockerOptionsFromEnv } from "../../src/docker/client.ts";
import { DsoError } from "../../src/errors.ts";

/** docker-modem fields its type declarations leave out. */
type ModemFields = { socketPath?: unknown; host?: unknown };

function usageError(run: () => unknown): DsoError {
  try {
    run();
  } catch (error) {
    if (error instanceof DsoError) return error;
    throw error;
  }
  throw new Error("expected a usage error");
}

describe("dockerOptionsFromEnv", () => {
  test("uses /var/run/docker.sock when DOCKER_HOST is unset", () => {
    const target = dockerOptionsFromEnv({});
    expect(target.host).toBe("unix:///var/run/docker.sock");
    expect(target.options.socketPath).toBe("/var/run/docker.sock");
  });

  test("takes a unix socket path from DOCKER_HOST", () => {
    const target = dockerOptionsFromEnv({ DOCKER_HOST: "unix:///tmp/x/docker.sock" });
    expect(target.host).toBe("unix:///tmp/x/docker.sock");
    expect(target.options.socketPath).toBe("/tmp/x/docker.sock");
    expect(target.options.host).toBeUndefined();
  });

  test("takes host and port from a tcp DOCKER_HOST, and no socket", () => {
    const target = dockerOptionsFromEnv({ DOCKER_HOST: "tcp://10.1.2.3:2375" });
    expect(target.host).toBe("tcp://10.1.2.3:2375");
    expect(target.options).toMatchObject({ host: "10.1.2.3", port: 2375, protocol: "http" });
    expect(target.options.socketPath).toBeUndefined();
  });

  test("defaults a tcp DOCKER_HOST without a port to 2375 and unbrackets IPv6", () => {
    expect(dockerOptionsFromEnv({ DOCKER_HOST: "tcp://[::1]" }).options).toMatchObject({ host: "::1", port: 2375 });
  });

  test("a client built from them ignores the process's own DOCKER_HOST when given another env", () => {
    const saved = process.env.DOCKER_HOST;
    // docker-modem reads process.env itself and would otherwise prefer this tcp host.
    process.env.DOCKER_HOST = "tcp://192.0.2.1:2375";
    try {
      const modem = new Dockerode(dockerOptionsFromEnv({ DOCKER_HOST: "unix:///tmp/y.sock" }).options).modem as unknown as ModemFields;
      expect(modem.socketPath).toBe("/tmp/y.sock");
      expect(modem.host).toBeUndefined();
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  });

  test("refuses an unsupported scheme with a usage error naming it", () => {
    const error = usageError(() => dockerOptionsFromEnv({ DOCKER_HOST: "ssh://me@host" }));
    expect(error.code).toBe("USAGE");
    expect(error.message).toContain('"ssh"');
    expect(error.hint).toContain("unix://");
  });

  test("refuses TLS rather than talking plain HTTP to a TLS daemon", () => {
    const error = usageError(() => dockerOptionsFromEnv({ DOCKER_HOST: "tcp://h:2376", DOCKER_TLS_VERIFY: "1" }));
    expect(error.code).toBe("USAGE");
    expect(error.message).toContain("TLS");
  });
});
