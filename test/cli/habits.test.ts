import { describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { dsoBinary, runDso } from "../support/dso-binary.ts";

const COMMANDS = ["version", "config", "doctor", "status", "ls", "sync", "rotate", "plan", "inject", "agent", "notifications", "completion", "help"];

/** Runs dist/dso on a pseudo-terminal (script(1)), as a person at a terminal would. */
async function onTerminal(args: string, env: Record<string, string> = {}): Promise<string> {
  const binary = await dsoBinary();
  const run = Bun.spawnSync(["script", "-qec", `${binary} ${args}`, "/dev/null"], {
    stdin: "ignore",
    env: { PATH: process.env.PATH!, TERM: "xterm", ...env },
  });
  return run.stdout.toString();
}

describe("help and version, the way other CLIs do it", () => {
  test("dso help, dso --help and dso with no arguments print the same usage, exit 0", async () => {
    const help = await runDso(["help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toStartWith("Usage: dso <command> [options]");
    for (const name of COMMANDS) expect(help.stdout).toMatch(new RegExp(`^  ${name}\\s`, "m"));
    expect((await runDso(["--help"])).stdout).toBe(help.stdout);
    expect((await runDso([])).stdout).toBe(help.stdout);
  });

  test("dso help <command> is dso <command> --help, and usage lines start with dso", async () => {
    const viaHelp = await runDso(["help", "config", "validate"]);
    const viaFlag = await runDso(["config", "validate", "--help"]);
    expect(viaHelp.code).toBe(0);
    expect(viaHelp.stdout).toBe(viaFlag.stdout);
    expect(viaFlag.stdout).toStartWith("Usage: dso config validate [options]\n");
    expect((await runDso(["rotate", "--help"])).stdout).toStartWith("Usage: dso rotate <secret> [options]\n");
    expect((await runDso(["sync", "-h"])).stdout).toStartWith("Usage: dso sync [container] [options]\n");
    expect((await runDso(["help", "config"])).stdout).toStartWith("Usage: dso config <command> [options]\n");
  });

  test("dso help of an unknown command is a usage error", async () => {
    const run = await runDso(["help", "frobnicate"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown command "frobnicate"');
  });

  test("dso --version and dso -v print what dso version prints", async () => {
    const version = await runDso(["version"]);
    for (const flag of ["--version", "-v"]) {
      const run = await runDso([flag]);
      expect(run.code).toBe(0);
      expect(run.stdout).toBe(version.stdout);
      expect(run.stdout).toStartWith(`dso ${pkg.version} (commit `);
    }
  });

  test("every help text fits 80 columns when piped", async () => {
    for (const args of [["help"], ...COMMANDS.filter((c) => c !== "help").map((c) => [c, "--help"]), ["config", "validate", "--help"]]) {
      const run = await runDso(args);
      for (const line of run.stdout.split("\n")) expect(`${args.join(" ")}: ${line}`.length - args.join(" ").length - 2).toBeLessThanOrEqual(80);
    }
  });
});

describe("colour", () => {
  test("help and doctor are coloured on a terminal, and not at all with NO_COLOR or when piped", async () => {
    expect(await onTerminal("help")).toContain("\x1b[1mUsage:");
    const doctorTty = await onTerminal("doctor", { DOCKER_HOST: "unix:///nonexistent.sock" });
    expect(doctorTty).toContain("\x1b[31mFAIL");
    expect(await onTerminal("help", { NO_COLOR: "1" })).not.toContain("\x1b[");
    expect(await onTerminal("doctor", { NO_COLOR: "1", DOCKER_HOST: "unix:///nonexistent.sock" })).not.toContain("\x1b[");
    expect((await runDso(["help"])).stdout).not.toContain("\x1b[");
  });
});

describe("tables", () => {
  test("piped, dso doctor's table keeps every cell whole on one line; COLUMNS makes it fit; --json keeps them whole", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dso-table-"));
    try {
      const config = join(dir, "dso.yaml");
      // Ignored keys make a long warning detail in the config row.
      await writeFile(config, "mode: cloud\nlogging: { level: info }\nproxy: {}\nruntime: { mode: agent }\n");
      const env = { PATH: process.env.PATH, DOCKER_HOST: `unix://${join(dir, "no-docker.sock")}` };
      const args = ["doctor", "--config", config, "--socket", join(dir, "dso.sock")];
      const json = JSON.parse((await runDso([...args, "--json"], { env })).stdout);
      const detail = json.checks.find((c: { check: string }) => c.check === "config").detail as string;
      expect(detail.length).toBeGreaterThan(80);
      // Issue 22: `dso ls | grep -c current` printed 0 because piped cells were cut.
      const piped = (await runDso(args, { env })).stdout.trimEnd().split("\n");
      expect(piped[0]).toMatch(/^CHECK\s+STATUS\s+DETAIL$/);
      expect(piped.find((line) => line.startsWith("config"))).toEndWith(detail);
      const narrow = await runDso(args, { env: { ...env, COLUMNS: "80" } });
      const lines = narrow.stdout.trimEnd().split("\n");
      for (const line of lines) expect(line.length).toBeLessThanOrEqual(80);
      expect(lines.length).toBeGreaterThan(10);
      expect(narrow.stdout.replace(/\s+/g, " ")).toContain(detail.replace(/\s+/g, " "));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("shell completion", () => {
  test("the bash script completes commands, subcommands, flags and shells", async () => {
    const script = await runDso(["completion", "bash"]);
    expect(script.code).toBe(0);
    const dir = await mkdtemp(join(tmpdir(), "dso-completion-"));
    try {
      await writeFile(join(dir, "dso.bash"), script.stdout);
      const probe = `source ${join(dir, "dso.bash")}
c() { COMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _dso; echo "\${COMPREPLY[*]}"; }
c dso co
c dso config ""
c dso config validate --j
c dso rotate --config some.yaml --so
c dso completion ""
c dso help ro
c dso --config ""
complete -p dso`;
      const run = Bun.spawnSync(["bash", "-c", probe], { env: { PATH: process.env.PATH! } });
      expect(run.stderr.toString()).toBe("");
      expect(run.stdout.toString().split("\n")).toEqual([
        "config completion",
        "validate --log-level --log-format --help",
        "--json",
        "--socket",
        "bash zsh fish --log-level --log-format --help",
        "rotate",
        "",
        "complete -o default -F _dso dso",
        "",
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("zsh loads the same function through bashcompinit; fish gets complete lines for every command", async () => {
    const zsh = await runDso(["completion", "zsh"]);
    expect(zsh.stdout).toStartWith("#compdef dso\n");
    expect(zsh.stdout).toContain("bashcompinit");
    expect(zsh.stdout).toContain("complete -o default -F _dso dso");
    expect(Bun.spawnSync(["bash", "-n", "-c", zsh.stdout]).exitCode).toBe(0);
    const fish = await runDso(["completion", "fish"]);
    for (const name of COMMANDS) expect(fish.stdout).toContain(`-n '__fish_use_subcommand' -a ${name} `);
    expect(fish.stdout).toContain("complete -c dso -n '__fish_seen_subcommand_from validate; and __fish_seen_subcommand_from config' -l json");
  });

  test("an unknown shell is a usage error", async () => {
    const run = await runDso(["completion", "powershell"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('no completion for shell "powershell"');
  });
});

describe("DOCKER_HOST=tcp://", () => {
  test("prints no url.parse() deprecation warning (docker-modem's, not the user's)", async () => {
    const run = await runDso(["doctor", "--json", "--config", "/dev/null"], { env: { PATH: process.env.PATH, DOCKER_HOST: "tcp://127.0.0.1:1" } });
    expect(JSON.parse(run.stdout).checks.find((c: { check: string }) => c.check === "docker").status).toBe("fail");
    expect(run.stderr).not.toContain("DEP0169");
    expect(run.stderr).not.toContain("--trace-warnings");
  });
});
