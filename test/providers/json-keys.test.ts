// One rule for Key Vault and Secret Manager strings that hold a JSON object.
import { expect, test } from "bun:test";
import { jsonObjectKeys } from "../../providers/json-keys.ts";

test("a JSON object becomes one entry per member; non-strings keep their JSON text", () => {
  expect(jsonObjectKeys(' {"user":"app","port":5432,"tls":{"on":true}}')).toEqual({ user: "app", port: "5432", tls: '{"on":true}' });
});

test("anything else is not split: not JSON, not an object, an empty object", () => {
  for (const text of ["plain", "{not json", "[1,2]", "{}", '"{}"', ""]) expect(jsonObjectKeys(text)).toBeUndefined();
});
