/** Which environment entries are literal Go DSO references (issue 22: a leftover reference is loud). */
import { expect, test } from "bun:test";
import { referencesInInspectBody } from "../../src/watcher/env-reference-scan.ts";
import { LeftoverReferenceWatch, literalReferences } from "../../src/watcher/leftover-references.ts";

test("only whole dso:// and dsofile:// values count; other variables are never reported", () => {
  expect(literalReferences(["A=dso://db", "B=dsofile://app/key#k", "C=postgres://u@h", "D=x dso://y", "PATH=/bin", "E="])).toEqual(["A=dso://db", "B=dsofile://app/key#k"]);
  expect(literalReferences(null)).toEqual([]);
});

test("each running compose container is inspected once; gone ones leave the count", async () => {
  let running = [{ Id: "a", Names: ["/app"] }, { Id: "b", Names: ["/clean"] }];
  const inspected: string[] = [];
  const asked: string[][] = [];
  const env: Record<string, string[]> = { a: ["DB=dso://db"], b: ["X=1"] };
  const found: string[] = [];
  const counts: number[] = [];
  const watch = new LeftoverReferenceWatch({
    docker: {
      listContainers: (async (opts: { filters: { label: string[] } }) => (asked.push(opts.filters.label), running)) as never,
      modem: {} as never,
    },
    references: async (id) => (inspected.push(id), literalReferences(env[id])),
    log: { debug() {}, info() {}, warn() {}, error() {} } as never,
    onFound: (f) => found.push(`${f.name}:${f.variables.join(",")}`),
    onCount: (n) => counts.push(n),
  });
  await watch.pass();
  await watch.pass();
  running = [{ Id: "b", Names: ["/clean"] }];
  await watch.pass();
  expect(inspected).toEqual(["a", "b"]);
  expect(found).toEqual(["app:DB=dso://db"]);
  expect(counts).toEqual([1, 1, 0]);
  // Only compose's containers: any other container's environment is none of the agent's business.
  expect(asked).toEqual([["com.docker.compose.project"], ["com.docker.compose.project"], ["com.docker.compose.project"]]);
});

test("an inspect body's Env is read as bytes: only reference entries are decoded", () => {
  const body = (env: unknown) =>
    new TextEncoder().encode(JSON.stringify({ Id: "x", Config: { Labels: { Env: "A=dso://label" }, Env: env, Cmd: ["sh", "-c", "B=dso://cmd"] } }));
  expect(referencesInInspectBody(body(["PATH=/bin", "DB=dso://db", "PW=s3cret", 'Q="]=dso://', "F=dsofile://app/k#key", "X=y dso://z"]))).toEqual(["DB=dso://db", "F=dsofile://app/k#key"]);
  expect(referencesInInspectBody(body(null))).toEqual([]);
  expect(referencesInInspectBody(body([]))).toEqual([]);
  expect(referencesInInspectBody(body(['ESC\\"=1', 'A"B=dso://n']))).toEqual(['A"B=dso://n']);
  expect(referencesInInspectBody(new TextEncoder().encode('{"Config":{"Env":["A=dso://trunc'))).toEqual([]);
});
