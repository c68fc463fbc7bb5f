import type { ArgsDef, CommandDef } from "citty";
import { DsoError } from "../errors.ts";

export interface ResolvedCommand {
  /** Names from the root to the command that runs, e.g. ["config", "validate"]. */
  path: string[];
  command: CommandDef<any>;
  parent?: CommandDef<any>;
  /** The arguments after the command names. */
  args: string[];
  help: boolean;
}

async function resolveValue<T>(value: T | Promise<T> | (() => T | Promise<T>)): Promise<T> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}

/**
 * Walk the command tree by leading words. Unknown words where a subcommand is expected are usage
 * errors (citty alone would pass them on as positionals).
 */
export async function resolveCommand(
  root: CommandDef<any>,
  argv: string[],
  hidden: Record<string, () => Promise<CommandDef<any>>> = {},
): Promise<ResolvedCommand> {
  let command = root;
  let parent: CommandDef<any> | undefined;
  const path: string[] = [];
  let rest = [...argv];
  const help = argv.includes("--help") || argv.includes("-h");
  for (;;) {
    const subCommands = await resolveValue(command.subCommands);
    if (!subCommands || Object.keys(subCommands).length === 0) break;
    const word = rest.find((a) => !a.startsWith("-"));
    if (word === undefined) break;
    const next = subCommands[word] ?? (command === root ? hidden[word] : undefined);
    if (!next) {
      const where = path.length ? `dso ${path.join(" ")}` : "dso";
      throw new DsoError("USAGE", `unknown command "${word}" for ${where}`, {
        hint: `run '${where} --help' for usage`,
      });
    }
    // Flags before the command word belong to the parent: only global flags may stand there.
    const index = rest.indexOf(word);
    const before = rest.slice(0, index);
    rest = [...before, ...rest.slice(index + 1)];
    parent = command;
    command = await resolveValue(next);
    path.push(word);
  }
  return { path, command, parent, args: rest, help };
}

function flagNames(args: ArgsDef): Map<string, ArgsDef[string]> {
  const names = new Map<string, ArgsDef[string]>();
  for (const [name, def] of Object.entries(args)) {
    if (def.type === "positional") continue;
    names.set(name, def);
    const aliases = "alias" in def && def.alias ? ([] as string[]).concat(def.alias) : [];
    for (const alias of aliases) names.set(alias, def);
  }
  return names;
}

/** Reject flags the command does not define and positionals it does not take. */
export async function checkArguments(resolved: ResolvedCommand): Promise<void> {
  const args: ArgsDef = (await resolveValue(resolved.command.args)) ?? {};
  const known = flagNames(args);
  const positionals = Object.values(args).filter((d) => d.type === "positional").length;
  const where = `dso ${resolved.path.join(" ")}`.trim();
  let seenPositionals = 0;
  for (let i = 0; i < resolved.args.length; i++) {
    const token = resolved.args[i]!;
    if (token === "--") break;
    if (!token.startsWith("-") || token === "-") {
      seenPositionals++;
      if (seenPositionals > positionals) {
        throw new DsoError("USAGE", `unexpected argument "${token}" for ${where}`, {
          hint: `run '${where} --help' for usage`,
        });
      }
      continue;
    }
    const body = token.replace(/^--?/, "");
    const name = body.split("=")[0]!;
    const def = known.get(name) ?? (name.startsWith("no-") ? known.get(name.slice(3)) : undefined);
    if (!def || (name.startsWith("no-") && !known.has(name) && def.type !== "boolean")) {
      throw new DsoError("USAGE", `unknown flag "${token.split("=")[0]}" for ${where}`, {
        hint: `run '${where} --help' for usage`,
      });
    }
    const takesValue = def.type === "string" || def.type === "enum";
    if (takesValue && !body.includes("=")) {
      const value = resolved.args[i + 1];
      if (value === undefined || value.startsWith("--")) {
        throw new DsoError("USAGE", `flag "${token}" needs a value`, { hint: `run '${where} --help' for usage` });
      }
      i++;
    }
  }
}

