/**
 * Template errors name where (file:line of the template text) and what (a key, a function), never a
 * value: a template's text is config, a secret's bytes are not, and neither reaches an error
 * through this type except the former.
 */
import { DsoError } from "../errors.ts";

/** Where a template's text comes from: dso.yaml at a line, or a template file (line 1). */
export interface TemplateOrigin {
  file: string;
  /** The line of the file where the template's line 1 is. */
  line: number;
  /** The output's name, for messages. */
  output: string;
}

export class TemplateError extends DsoError {
  /** The line in `origin.file`. */
  readonly line: number;
  constructor(
    readonly origin: TemplateOrigin,
    templateLine: number,
    /** The problem without its place, for config issues that add their own. */
    readonly problem: string,
  ) {
    const line = origin.line + templateLine - 1;
    super("DELIVERY_FAILED", `${origin.file}:${line}: output "${origin.output}": ${problem}`);
    this.line = line;
    this.name = "TemplateError";
  }
}
