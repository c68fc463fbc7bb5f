/**
 * Bun.YAML says only "Unexpected token" and gives no position when a file is not YAML. The `yaml`
 * package's parser reports the problem with its line and column, so a syntax error is parsed a
 * second time with it, on the error path only. An unclosed quote or bracket is noticed only where
 * the file ends; bisecting with Bun.YAML finds the line where the text stopped parsing (where it
 * was opened), so the earlier of the two lines is reported, with yaml's column when they agree.
 * When yaml accepts what Bun refused, the bisected line and Bun's message are used.
 */
import { parseDocument } from "yaml";
import { findSyntaxErrorLine } from "./yaml-lines.ts";

export interface YamlSyntaxProblem {
  line: number;
  column?: number;
  message: string;
}

/** `bunMessage` is Bun.YAML's own message, used when `yaml` finds nothing wrong. */
export function locateYamlSyntaxError(text: string, bunMessage: string): YamlSyntaxProblem {
  const bisected = findSyntaxErrorLine(text);
  const first = parseDocument(text, { prettyErrors: true, uniqueKeys: false }).errors[0];
  const position = first?.linePos?.[0];
  if (!first || !position) return { line: bisected ?? 1, message: bunMessage };
  // prettyErrors appends " at line L, column C:" and a code excerpt; keep the sentence.
  const message = first.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
  if (bisected !== undefined && bisected < position.line) return { line: bisected, message };
  return { line: position.line, column: position.col, message };
}
