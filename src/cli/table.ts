/**
 * Aligned text tables that fit a width (80 columns unless a wider terminal says otherwise).
 * Narrow columns (names, ids, states) are cut with "…"; the last column, which holds free text
 * (errors, details), wraps onto indented continuation lines instead, so nothing a person needs
 * to act on is cut. `--json` always carries every field whole.
 */
import { DEFAULT_WIDTH } from "./terminal.ts";

const GAP = 2;
const MIN_CUT_WIDTH = 6;
const MIN_LAST_WIDTH = 20;
const ELLIPSIS = "…";

export interface TableOptions {
  width?: number;
  /** Applied to each cell after layout (e.g. colour), given the column index and the laid-out text. */
  decorate?: (column: number, text: string) => string;
}

export function formatTable(header: string[], rows: string[][], options: TableOptions = {}): string {
  const width = options.width ?? DEFAULT_WIDTH;
  const cells = [header, ...rows].map((r) => header.map((_, i) => (r[i] ?? "").replace(/\s*\n\s*/g, " ")));
  const widths = fitWidths(cells, header, width);
  const decorate = options.decorate ?? ((_: number, text: string) => text);
  const lines: string[] = [];
  cells.forEach((row, r) => {
    const last = row.length - 1;
    const head = row.slice(0, last).map((c, i) => {
      const text = cut(c, widths[i]!);
      const shown = r === 0 ? text : decorate(i, text);
      return shown + " ".repeat(widths[i]! - text.length + GAP);
    });
    const indent = widths.slice(0, last).reduce((sum, w) => sum + w + GAP, 0);
    const wrapped = wrap(row[last] ?? "", widths[last]!);
    const first = r === 0 ? wrapped[0]! : decorate(last, wrapped[0]!);
    lines.push(`${head.join("")}${first}`.trimEnd());
    for (const more of wrapped.slice(1)) lines.push(`${" ".repeat(indent)}${more}`.trimEnd());
  });
  return lines.join("\n");
}

/** Natural column widths, then the widest column shrunk one step at a time until the row fits. */
function fitWidths(cells: string[][], header: string[], width: number): number[] {
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  const last = widths.length - 1;
  const minimum = widths.map((w, i) => Math.min(w, i === last ? MIN_LAST_WIDTH : Math.max(header[i]!.length, MIN_CUT_WIDTH)));
  const total = () => widths.reduce((a, b) => a + b, 0) + GAP * last;
  while (total() > width) {
    let widest = -1;
    for (let i = 0; i < widths.length; i++) {
      if (widths[i]! > minimum[i]! && (widest < 0 || widths[i]! > widths[widest]!)) widest = i;
    }
    if (widest < 0) break;
    widths[widest]!--;
  }
  return widths;
}

function cut(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}${ELLIPSIS}`;
}

/** Word-wraps to `width`; a word longer than the width is broken. Always at least one line. */
export function wrap(text: string, width: number): string[] {
  if (text.length <= width) return [text];
  const out: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    let rest = word;
    while (rest.length > width) {
      if (line) out.push(line);
      line = "";
      out.push(rest.slice(0, width));
      rest = rest.slice(width);
    }
    if (!line) line = rest;
    else if (line.length + 1 + rest.length <= width) line += ` ${rest}`;
    else {
      out.push(line);
      line = rest;
    }
  }
  if (line || out.length === 0) out.push(line);
  return out;
}
