// Loaded before every test file (bunfig.toml [test].preload). Keep it cheap: it starts nothing;
// tests start the Docker daemon lazily with ensureDocker().
import { afterAll } from "bun:test";
import { privateDaemonStarted, stopDocker } from "./docker-daemon.ts";

// A global afterAll (registered in the preload) runs once, after the last test file.
afterAll(async () => {
  if (privateDaemonStarted()) await stopDocker();
});
