/**
 * `dso secret set|get|list|rm`: the file provider's directory as a secret store (the Go DSO's
 * `docker dso secret set` workflow). A value is read from a prompt (no echo) or stdin, never from
 * the command line (shell history, `ps`); `get` masks unless `--reveal`. See secret-store.ts.
 */
import { defineCommand } from "citty";
import { findConfigPath, loadConfig, BUILTIN_FILE_PROVIDER_PATH } from "../../config/index.ts";
import { DsoError } from "../../errors.ts";
import { configArg, formatTable, globalArgs, jsonArg } from "../_shared.ts";
import { listSecrets, readSecret, removeSecret, writeSecret } from "../secret-store.ts";

const providerArg = {
  provider: { type: "string", description: "The file provider to use when dso.yaml has several", valueHint: "name" },
} as const;
const nameArg = { name: { type: "positional", required: true, description: "Secret name, e.g. db_password or app/db" } } as const;

/** The directory of the file provider the command works on. */
async function storeDir(args: { config?: string; provider?: string }): Promise<string> {
  const path = findConfigPath({ flag: args.config, env: process.env });
  const { config } = await loadConfig(path, process.env);
  const files = Object.values(config.providers).filter((p) => p.type === "file");
  const where = path ?? "the built-in configuration";
  const chosen = args.provider ? files.find((p) => p.name === args.provider) : files.length === 1 ? files[0] : undefined;
  if (!chosen) {
    if (args.provider) throw new DsoError("USAGE", `${where} has no file provider named "${args.provider}" (file providers: ${files.map((p) => p.name).join(", ") || "none"})`);
    if (files.length === 0) throw new DsoError("USAGE", `${where} has no file provider: dso secret manages the file provider's directory`);
    throw new DsoError("USAGE", `${where} has several file providers (${files.map((p) => p.name).join(", ")}): pick one with --provider`);
  }
  return chosen.config.path ?? BUILTIN_FILE_PROVIDER_PATH;
}

/** One line typed without echo. */
async function prompt(question: string): Promise<Uint8Array> {
  const stdin = process.stdin;
  // Echo goes off before the prompt shows: a value typed (or pasted) as soon as the prompt
  // appears was echoed when the prompt came first.
  stdin.setRawMode(true);
  process.stderr.write(question);
  const bytes: number[] = [];
  try {
    for await (const chunk of stdin as AsyncIterable<Buffer>) {
      for (const byte of chunk) {
        if (byte === 3) throw new DsoError("USAGE", "cancelled");
        if (byte === 13 || byte === 10) return new Uint8Array(bytes);
        if (byte === 127 || byte === 8) bytes.pop();
        else bytes.push(byte);
      }
    }
    return new Uint8Array(bytes);
  } finally {
    bytes.fill(0);
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write("\n");
  }
}

async function readValue(name: string, raw: boolean): Promise<Uint8Array> {
  if (process.stdin.isTTY) return prompt(`value for ${name} (not echoed): `);
  const all = new Uint8Array(await Bun.stdin.arrayBuffer());
  if (raw) return all;
  // `echo value | dso secret set x` adds one newline: drop exactly one (\n or \r\n).
  let end = all.length;
  if (all[end - 1] === 10) end--;
  if (all[end - 1] === 13 && end < all.length) end--;
  return all.subarray(0, end);
}

const set = defineCommand({
  meta: { name: "set", description: "Store a secret in the file provider's directory; the value comes from a prompt or stdin, never the command line" },
  args: {
    ...nameArg,
    value: { type: "positional", required: false, description: "Refused: a value on the command line ends up in shell history and ps" },
    raw: { type: "boolean", description: "Keep stdin byte for byte (by default one trailing newline is dropped)" },
    ...providerArg,
    ...configArg,
    ...globalArgs,
  },
  async run({ args }) {
    if (args.value !== undefined) {
      throw new DsoError("USAGE", "dso secret set takes no value on the command line (it would end up in shell history and ps)", {
        hint: `pipe it: printf '%s' "$VALUE" | dso secret set ${args.name}, or type it at the prompt`,
      });
    }
    const dir = await storeDir(args);
    const value = await readValue(args.name, args.raw === true);
    try {
      if (value.length === 0) throw new DsoError("USAGE", `empty value for ${args.name}: nothing written`);
      const path = writeSecret(dir, args.name, value);
      process.stdout.write(`${args.name}: ${value.length} bytes written to ${path} (0600)\n`);
    } finally {
      value.fill(0);
    }
  },
});

function masked(value: Uint8Array): string {
  try {
    const parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(value));
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) return `JSON with keys ${Object.keys(parsed).join(", ")} (values hidden; --reveal to print)`;
  } catch {
    // not JSON: one value
  }
  return `******** (${value.length} bytes; --reveal to print)`;
}

const get = defineCommand({
  meta: { name: "get", description: "Show a secret of the file provider's directory, masked unless --reveal" },
  args: { ...nameArg, reveal: { type: "boolean", description: "Print the value itself" }, ...providerArg, ...configArg, ...globalArgs },
  async run({ args }) {
    const value = readSecret(await storeDir(args), args.name);
    if (!value) throw new DsoError("SECRET_NOT_FOUND", `no secret ${args.name} in the file provider's directory`);
    try {
      if (args.reveal) process.stdout.write(value);
      else process.stdout.write(`${args.name}: ${masked(value)}\n`);
    } finally {
      value.fill(0);
    }
  },
});

const list = defineCommand({
  meta: { name: "list", description: "List the secrets of the file provider's directory (names and sizes, never values)" },
  args: { ...providerArg, ...configArg, ...jsonArg, ...globalArgs },
  async run({ args }) {
    const secrets = listSecrets(await storeDir(args));
    if (args.json) return void process.stdout.write(`${JSON.stringify({ secrets: secrets.map((s) => ({ ...s, modified: s.modified.toISOString() })) })}\n`);
    if (secrets.length === 0) return void process.stdout.write("no secrets\n");
    process.stdout.write(`${formatTable(["NAME", "BYTES", "MODIFIED"], secrets.map((s) => [s.name, String(s.bytes), s.modified.toISOString()]))}\n`);
  },
});

const rm = defineCommand({
  meta: { name: "rm", description: "Remove a secret from the file provider's directory" },
  args: { ...nameArg, ...providerArg, ...configArg, ...globalArgs },
  async run({ args }) {
    if (!removeSecret(await storeDir(args), args.name)) throw new DsoError("SECRET_NOT_FOUND", `no secret ${args.name} in the file provider's directory`);
    process.stdout.write(`${args.name}: removed\n`);
  },
});

export default defineCommand({
  meta: { name: "secret", description: "Manage the file provider's secrets: set (prompt or stdin), get (masked), list, rm" },
  args: { ...globalArgs },
  subCommands: { set, get, list, rm },
});
