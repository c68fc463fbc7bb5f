/**
 * `dso … --help` and `dso help [command]`. citty's renderer prints `USAGE config validate`
 * without the program name, pads every line to the longest description and colours
 * unconditionally; this one starts every usage line with `dso`, wraps at the output width and
 * colours only where terminal.ts allows.
 */
import type { ArgsDef, CommandDef } from "citty";
import { wrap } from "./table.ts";
import { paint } from "./terminal.ts";

/** Commands handled before citty sees the arguments: listed in the root help like the others. */
export const BUILTIN_COMMANDS: Record<string, string> = {
  help: "Show help for dso or for a command (dso help config validate)",
};

async function resolveValue<T>(value: T | Promise<T> | (() => T | Promise<T>)): Promise<T> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}

export interface UsageInput {
  path: string[];
  command: CommandDef<any>;
  width: number;
  color: boolean;
}

function positionalsOf(args: ArgsDef): string {
  return Object.entries(args)
    .filter(([, def]) => def.type === "positional")
    .map(([name, def]) => (def.required === false ? `[${name}]` : `<${name}>`))
    .join(" ");
}

function flagLabel(name: string, def: ArgsDef[string]): string {
  const aliases = "alias" in def && def.alias ? ([] as string[]).concat(def.alias) : [];
  const short = aliases.find((a) => a.length === 1);
  const value = def.type === "string" || def.type === "enum" ? ` <${("valueHint" in def && def.valueHint) || "value"}>` : "";
  return `${short ? `-${short}, ` : "    "}--${name}${value}`;
}

/** Two-column list: label, then description wrapped under itself. */
function twoColumns(items: [string, string][], width: number): string[] {
  const labelWidth = Math.min(Math.max(...items.map(([label]) => label.length)), 28);
  const descWidth = Math.max(20, width - 2 - labelWidth - 2);
  const lines: string[] = [];
  for (const [label, description] of items) {
    const wrapped = wrap(description, descWidth);
    if (label.length > labelWidth) {
      lines.push(`  ${label}`);
      for (const line of wrapped) lines.push(`  ${" ".repeat(labelWidth)}  ${line}`);
      continue;
    }
    lines.push(`  ${label.padEnd(labelWidth)}  ${wrapped[0]}`.trimEnd());
    for (const line of wrapped.slice(1)) lines.push(`  ${" ".repeat(labelWidth)}  ${line}`);
  }
  return lines;
}

export async function renderHelp(input: UsageInput): Promise<string> {
  const { command, path, width, color } = input;
  const meta = (await resolveValue(command.meta)) ?? {};
  const args: ArgsDef = (await resolveValue(command.args)) ?? {};
  const subCommands = (await resolveValue(command.subCommands)) ?? {};
  const isRoot = path.length === 0;
  const name = ["dso", ...path].join(" ");
  const heading = (text: string) => paint(text, "bold", color);
  const out: string[] = [];

  const subNames = Object.keys(subCommands);
  const positionals = positionalsOf(args);
  const usage = subNames.length > 0 ? `${name} <command> [options]` : `${name}${positionals ? ` ${positionals}` : ""} [options]`;
  out.push(`${heading("Usage:")} ${usage}`);
  if (isRoot) out.push(`       dso --version`);
  out.push("");
  if (meta.description) out.push(...wrap(meta.description, width), "");

  if (subNames.length > 0 || isRoot) {
    const items: [string, string][] = [];
    for (const [sub, def] of Object.entries(subCommands)) {
      const resolved = await resolveValue(def as CommandDef<any>);
      items.push([sub, (await resolveValue(resolved.meta))?.description ?? ""]);
    }
    if (isRoot) for (const [sub, description] of Object.entries(BUILTIN_COMMANDS)) items.push([sub, description]);
    out.push(heading("Commands:"), ...twoColumns(items, width), "");
  }

  const positionalItems = Object.entries(args)
    .filter(([, def]) => def.type === "positional")
    .map(([argName, def]) => [argName, def.description ?? ""] as [string, string]);
  if (positionalItems.length > 0) out.push(heading("Arguments:"), ...twoColumns(positionalItems, width), "");

  const flagItems = Object.entries(args)
    .filter(([, def]) => def.type !== "positional")
    .map(([flag, def]) => [flagLabel(flag, def), def.description ?? ""] as [string, string]);
  flagItems.push(["-h, --help", "Show this help"]);
  if (isRoot) flagItems.push(["-v, --version", "Print the version (same as dso version)"]);
  out.push(heading("Options:"), ...twoColumns(flagItems, width), "");

  out.push(subNames.length > 0 ? `Run '${name === "dso" ? "dso help <command>" : `dso help ${path.join(" ")} <command>`}' for more about a command.` : `Run 'dso help' for every command.`);
  return out.join("\n");
}
