/** An output as dso.yaml declares it once resolved: one file (or variable) made from one or more secrets. */
import type { FormatName } from "./formats.ts";
import type { TemplateOrigin } from "./errors.ts";

export type OutputContent =
  | { kind: "template"; text: string; delimiters?: [string, string]; origin: Omit<TemplateOrigin, "output"> }
  | { kind: "format"; format: FormatName };

export interface OutputSpec {
  /** The file name (inject: file) or the variable name (inject: env). */
  name: string;
  content: OutputContent;
  /** The secrets it reads, its owner first (a top-level template's `secrets:`). */
  sources: string[];
  mode?: number;
  uid?: number;
  gid?: number;
}
