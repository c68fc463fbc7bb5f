/**
 * What the CLI may assume about where its output goes: colour only on a terminal and never when
 * NO_COLOR is set (no-color.org) or TERM=dumb; tables as wide as COLUMNS, else the terminal, and
 * never cut when piped (a script's `grep` must see whole cells). One place, so every command
 * behaves the same.
 */

export interface OutputStream {
  isTTY?: boolean;
  columns?: number;
}

export type Env = Record<string, string | undefined>;

/** Width of a table when output is not a terminal (or the terminal does not say). */
export const DEFAULT_WIDTH = 80;
const MIN_TERMINAL_WIDTH = 40;

export function colorEnabled(stream: OutputStream = process.stdout, env: Env = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (env.TERM === "dumb") return false;
  return stream.isTTY === true;
}

export function outputWidth(stream: OutputStream = process.stdout): number {
  if (stream.isTTY && stream.columns && stream.columns >= MIN_TERMINAL_WIDTH) return stream.columns;
  return DEFAULT_WIDTH;
}

/**
 * How wide a table may be: COLUMNS when set (as `ls` and `ps` read it, terminal or not), else
 * the terminal's width, else unlimited: output read by a program is never cut.
 */
export function tableWidth(stream: OutputStream = process.stdout, env: Env = process.env): number {
  const columns = Number(env.COLUMNS);
  if (env.COLUMNS && Number.isInteger(columns) && columns >= MIN_TERMINAL_WIDTH) return columns;
  if (stream.isTTY) return stream.columns && stream.columns >= MIN_TERMINAL_WIDTH ? stream.columns : DEFAULT_WIDTH;
  return Number.POSITIVE_INFINITY;
}

const CODES = { bold: [1, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], dim: [2, 22] } as const;
export type Style = keyof typeof CODES;

/** `text` in `style` when colour is on, else unchanged. */
export function paint(text: string, style: Style, on: boolean): string {
  if (!on) return text;
  const [open, close] = CODES[style];
  return `\x1b[${open}m${text}\x1b[${close}m`;
}

export function stripAnsi(text: string): string {
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}
