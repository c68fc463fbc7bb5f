import * as v from "valibot";

/** Short, value-free description of a validation failure (never echo the input: it may hold a secret). */
export function describeIssues(issues: readonly v.BaseIssue<unknown>[]): string {
  return issues
    .slice(0, 3)
    .map((issue) => {
      const path = v.getDotPath(issue);
      return `${path ?? "frame"}: ${issue.expected ? `expected ${issue.expected}` : issue.message.split(":")[0]}`;
    })
    .join("; ");
}
