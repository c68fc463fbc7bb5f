/**
 * Aligned text tables that fit a width (80 columns unless a wider terminal says otherwise).
 * Middle columns are cut with "…", rightmost first; the last column, which holds free text
 * (errors, details, actions), wraps onto indented continuation lines instead, so nothing a
 * person needs to act on is cut; the first column (the name) is cut only as a last resort.
 * `--json` always carries every field whole.
 */
import { DEFAULT_WIDTH } from "./terminal.ts";

const GAP = 2;
const MIN_CUT_WIDTH = 6;
const MIN_LAST_WIDTH = 20;
/** The last column wraps down to this before any other column is cut. */
const COMFORTABLE_LAST_WIDTH = 30;
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

/**
 * Natural column widths, then shrunk until the row fits: the last column wraps down to a
 * comfortable width; then the middle columns are cut from the right (detail columns sit right
 * of the identifying ones); then the last column wraps further; the first column (usually the
 * name a person looks for) is cut only when nothing else is left.
 */
function fitWidths(cells: string[][], header: string[], width: number): number[] {
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  const last = widths.length - 1;
  const floor = (i: number) => Math.min(widths[i]!, i === last ? MIN_LAST_WIDTH : Math.max(header[i]!.length, MIN_CUT_WIDTH));
  const minimum = widths.map((_, i) => floor(i));
  let excess = widths.reduce((a, b) => a + b, 0) + GAP * last - width;
  const shrink = (i: number, to: number) => {
    const take = Math.max(0, Math.min(excess, widths[i]! - Math.max(to, minimum[i]!)));
    widths[i]! -= take;
    excess -= take;
  };
  shrink(last, COMFORTABLE_LAST_WIDTH);
  for (let i = last - 1; i >= 1 && excess > 0; i--) shrink(i, minimum[i]!);
  shrink(last, MIN_LAST_WIDTH);
  if (last > 0) shrink(0, minimum[0]!);
  return widths;
}

function cut(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}${ELLIPSIS}`;
}

/** Word-wraps to `width`, breaking after commas in long lists too; a longer word is broken. */
export function wrap(text: string, width: number): string[] {
  if (text.length <= width) return [text];
  const out: string[] = [];
  let line = "";
  const place = (piece: string, separator: string) => {
    if (!line) line = piece;
    else if (line.length + separator.length + piece.length <= width) line += `${separator}${piece}`;
    else {
      out.push(line);
      line = piece;
    }
  };
  for (const word of text.split(" ")) {
    // "a,b,c" breaks after its commas when it does not fit.
    const pieces = word.length > width ? word.split(/(?<=,)/) : [word];
    pieces.forEach((piece, k) => {
      let rest = piece;
      while (rest.length > width) {
        if (line) out.push(line);
        line = "";
        out.push(rest.slice(0, width));
        rest = rest.slice(width);
      }
      place(rest, k === 0 ? " " : "");
    });
  }
  if (line || out.length === 0) out.push(line);
  return out;
}
