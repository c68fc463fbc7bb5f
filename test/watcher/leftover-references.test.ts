/** Which environment entries are literal Go DSO references (issue 22: a leftover reference is loud). */
import { expect, test } from "bun:test";
import { LeftoverReferenceWatch, literalReferences } from "../../src/watcher/leftover-references.ts";

test("only whole dso:// and dsofile:// values count; other variables are never reported", () => {
  expect(literalReferences(["A=dso://db", "B=dsofile://app/key#k", "C=postgres://u@h", "D=x dso://y", "PATH=/bin", "E="])).toEqual(["A=dso://db", "B=dsofile://app/key#k"]);
  expect(literalReferences(null)).toEqual([]);
});

test("each running container is inspected once; gone ones leave the count", async () => {
  let running = [{ Id: "a", Names: ["/app"] }, { Id: "b", Names: ["/clean"] }];
  const inspected: string[] = [];
  const env: Record<string, string[]> = { a: ["DB=dso://db"], b: ["X=1"] };
  const found: string[] = [];
  const counts: number[] = [];
  const watch = new LeftoverReferenceWatch({
    docker: {
      listContainers: (async () => running) as never,
      getContainer: ((id: string) => ({ inspect: async () => (inspected.push(id), { Config: { Env: env[id] } }) })) as never,
    },
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
});
