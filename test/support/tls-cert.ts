// A throwaway self-signed certificate for local HTTPS emulators (Azure Key Vault and its token
// endpoint must be HTTPS: the Key Vault challenge policy and MSAL both refuse plain http).
// Generated with the system openssl into a fresh temp dir; the key never leaves that dir.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCertificate {
  certPath: string;
  keyPath: string;
  certPem: string;
  keyPem: string;
  /** Removes the temp dir holding the key and certificate. */
  remove(): void;
}

const CERT_VALID_DAYS = "2";

export function createTestCertificate(): TestCertificate {
  const dir = mkdtempSync(join(tmpdir(), "dso-test-tls-"));
  const certPath = join(dir, "cert.pem");
  const keyPath = join(dir, "key.pem");
  const result = Bun.spawnSync(
    [
      "openssl", "req", "-x509", "-nodes",
      "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
      "-keyout", keyPath, "-out", certPath,
      "-days", CERT_VALID_DAYS,
      "-subj", "/CN=localhost",
      "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  if (result.exitCode !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`openssl could not create a test certificate: ${result.stderr.toString()}`);
  }
  return {
    certPath,
    keyPath,
    certPem: readFileSync(certPath, "utf8"),
    keyPem: readFileSync(keyPath, "utf8"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
