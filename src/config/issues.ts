/**
 * Every problem found in dso.yaml, error or warning, is a ConfigIssue: where it is (file, line,
 * dotted path) and what is wrong. Printed as `dso.yaml:12: secrets.0.inject.mode: ...` (`dso.yaml:3:7: ...` when the column is known).
 */
import { DsoError } from "../errors.ts";

export interface ConfigIssue {
  file: string;
  line: number;
  /** 1-based column, when known (YAML syntax errors). */
  column?: number;
  /** Dotted path from the document root, list items by index: `secrets.1.inject.path`. Empty for the whole file. */
  path: string;
  message: string;
}

export function formatIssue(issue: ConfigIssue): string {
  const where = `${issue.file}:${issue.line}${issue.column === undefined ? "" : `:${issue.column}`}`;
  return issue.path === "" ? `${where}: ${issue.message}` : `${where}: ${issue.path}: ${issue.message}`;
}

export function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  return [...issues].sort((a, b) => a.line - b.line || a.path.localeCompare(b.path));
}

/** dso.yaml is invalid. `issues` holds every problem found, in file order; the message lists them all. */
export class ConfigError extends DsoError {
  readonly issues: ConfigIssue[];
  readonly warnings: ConfigIssue[];

  constructor(issues: ConfigIssue[], warnings: ConfigIssue[] = []) {
    super("CONFIG_INVALID", sortIssues(issues).map(formatIssue).join("\n"));
    this.name = "ConfigError";
    this.issues = sortIssues(issues);
    this.warnings = sortIssues(warnings);
  }
}
