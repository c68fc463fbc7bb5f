// The gcp provider's token source: parallel calls share one token request, and one caller giving
// up (a change-event drain's 2 s pull, say) must not cancel it for the others.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { tokenSource } from "../../providers/gcp/auth.ts";
import type { ServiceAccountKey } from "../../providers/gcp/config.ts";

let server: ReturnType<typeof Bun.serve>;
let requests = 0;

beforeAll(() => {
  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch() {
      requests++;
      await Bun.sleep(300);
      return Response.json({ access_token: "shared-access-token", expires_in: 3600, token_type: "Bearer" });
    },
  });
});
afterAll(() => server.stop(true));

test("a caller that gives up does not cancel the shared token request for the others", async () => {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const key: ServiceAccountKey = {
    clientEmail: "dso@test.iam.gserviceaccount.com",
    privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    tokenUri: `http://127.0.0.1:${server.port}/token`,
  };
  const tokens = tokenSource({ method: "service_account_key", key, keyPath: "test" }, "provider gsm (gcp)");
  const impatient = tokens.token(AbortSignal.timeout(50));
  const patient = tokens.token(new AbortController().signal);
  await expect(impatient).rejects.toMatchObject({ rpcCode: "PROVIDER_TIMEOUT" });
  expect(await patient).toBe("shared-access-token");
  expect(requests).toBe(1);
  // Cached now: no second request.
  expect(await tokens.token(new AbortController().signal)).toBe("shared-access-token");
  expect(requests).toBe(1);
});
