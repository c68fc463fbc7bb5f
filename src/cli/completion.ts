/**
 * Shell completion scripts, generated from the same command tree that `dso help` prints, so a
 * new command or flag completes without anyone editing a script. bash and zsh share one
 * function (zsh loads it through bashcompinit); fish gets its own `complete` lines.
 */
import type { ArgsDef, CommandDef } from "citty";

export const SHELLS = ["bash", "zsh", "fish"] as const;
export type Shell = (typeof SHELLS)[number];

export interface CommandNode {
  /** "" for the root, else "config validate". */
  path: string;
  description: string;
  subcommands: string[];
  /** Flag names with their leading dashes, e.g. --json, -c. */
  flags: { long: string; short?: string; takesValue: boolean; description: string }[];
}

async function resolveValue<T>(value: T | Promise<T> | (() => T | Promise<T>)): Promise<T> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}

/** Every visible command, depth first, root first. `extra` adds commands handled outside citty (help). */
export async function collectCommands(root: CommandDef<any>, extra: Record<string, string> = {}): Promise<CommandNode[]> {
  const nodes: CommandNode[] = [];
  const visit = async (command: CommandDef<any>, path: string[]) => {
    const meta = (await resolveValue(command.meta)) ?? {};
    const args: ArgsDef = (await resolveValue(command.args)) ?? {};
    const subs = (await resolveValue(command.subCommands)) ?? {};
    const names = Object.keys(subs);
    if (path.length === 0) names.push(...Object.keys(extra));
    const flags = Object.entries(args)
      .filter(([, def]) => def.type !== "positional")
      .map(([name, def]) => {
        const aliases = "alias" in def && def.alias ? ([] as string[]).concat(def.alias) : [];
        const short = aliases.find((a) => a.length === 1);
        return { long: `--${name}`, ...(short ? { short: `-${short}` } : {}), takesValue: def.type === "string" || def.type === "enum", description: def.description ?? "" };
      });
    flags.push({ long: "--help", short: "-h", takesValue: false, description: "Show help" });
    nodes.push({ path: path.join(" "), description: meta.description ?? "", subcommands: names, flags });
    for (const [name, sub] of Object.entries(subs)) await visit(await resolveValue(sub as CommandDef<any>), [...path, name]);
  };
  await visit(root, []);
  for (const [name, description] of Object.entries(extra)) {
    nodes.push({ path: name, description, subcommands: [], flags: [{ long: "--help", short: "-h", takesValue: false, description: "Show help" }] });
  }
  return nodes;
}

/** Words after a command path that are not flags: `dso completion <shell>`, `dso help <command>`. */
function argumentWords(node: CommandNode, nodes: CommandNode[]): string[] {
  if (node.path === "completion") return [...SHELLS];
  if (node.path === "help") return nodes.find((n) => n.path === "")?.subcommands.filter((s) => s !== "help") ?? [];
  return [];
}

const shellWord = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;

export function bashScript(nodes: CommandNode[]): string {
  const valueFlags = [...new Set(nodes.flatMap((n) => n.flags.filter((f) => f.takesValue).flatMap((f) => [f.long, ...(f.short ? [f.short] : [])])))];
  const known = nodes.map((n) => n.path).filter(Boolean);
  const cases = nodes
    .map((n) => {
      const words = [...n.subcommands, ...argumentWords(n, nodes), ...n.flags.map((f) => f.long), ...(n.path === "" ? ["--version"] : [])];
      return `    ${shellWord(n.path)}) words=${shellWord(words.join(" "))} ;;`;
    })
    .join("\n");
  return `# bash completion for dso. Load it with:  source <(dso completion bash)
# or install it:  dso completion bash > /etc/bash_completion.d/dso
_dso() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  local path="" word i words=""
  case " ${valueFlags.join(" ")} " in
    *" $prev "*) COMPREPLY=(); return 0 ;;
  esac
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case "$word" in -*) continue ;; esac
    case "|${known.join("|")}|" in
      *"|\${path:+$path }$word|"*) path="\${path:+$path }$word" ;;
    esac
  done
  case "$path" in
${cases}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _dso dso
`;
}

export function zshScript(nodes: CommandNode[]): string {
  return `#compdef dso
# zsh completion for dso. Load it with:  source <(dso completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bashScript(nodes).split("\n").filter((line) => !line.startsWith("#")).join("\n")}`;
}

export function fishScript(nodes: CommandNode[]): string {
  const lines = ["# fish completion for dso. Install it:  dso completion fish > ~/.config/fish/completions/dso.fish", "complete -c dso -f"];
  for (const node of nodes) {
    const words = node.path === "" ? [] : node.path.split(" ");
    const condition =
      words.length === 0
        ? "__fish_use_subcommand"
        : `__fish_seen_subcommand_from ${words.at(-1)}${words.length > 1 ? `; and __fish_seen_subcommand_from ${words[0]}` : ""}`;
    const subDescription = (name: string) => nodes.find((n) => n.path === [...words, name].join(" "))?.description ?? "";
    for (const sub of node.subcommands) {
      const where = words.length === 0 ? condition : `${condition}; and not __fish_seen_subcommand_from ${node.subcommands.join(" ")}`;
      lines.push(`complete -c dso -n ${shellWord(where)} -a ${sub} -d ${shellWord(subDescription(sub))}`);
    }
    for (const word of argumentWords(node, nodes)) lines.push(`complete -c dso -n ${shellWord(condition)} -a ${word}`);
    for (const flag of node.flags) {
      const short = flag.short ? ` -s ${flag.short.slice(1)}` : "";
      lines.push(`complete -c dso -n ${shellWord(condition)} -l ${flag.long.slice(2)}${short}${flag.takesValue ? " -r -F" : ""} -d ${shellWord(flag.description)}`);
    }
  }
  lines.push(`complete -c dso -n '__fish_use_subcommand' -s v -l version -d 'Print the version'`);
  return `${lines.join("\n")}\n`;
}

export function completionScript(shell: Shell, nodes: CommandNode[]): string {
  if (shell === "bash") return bashScript(nodes);
  if (shell === "zsh") return zshScript(nodes);
  return fishScript(nodes);
}
