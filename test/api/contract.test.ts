import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROUTES } from "../../src/api/contract.ts";

describe("the control API contract", () => {
  test("the docs' route table lists every route of the contract, with its method", () => {
    const docs = readFileSync(join(import.meta.dir, "../../docs/architecture.md"), "utf8");
    for (const route of Object.values(ROUTES)) expect(docs).toContain(`| ${route.method} | \`${route.path}\` |`);
  });
});
