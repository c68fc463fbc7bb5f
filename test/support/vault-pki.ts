// A certificate authority for the Vault test server's PKI engine, made with the `openssl` CLI:
// real X.509 certificates (EC P-256) with the requested common name, DNS SANs and an exact
// notAfter (`openssl ca -enddate`, so a 6 s certificate is possible). Keys live in a temp dir.
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface IssuedCertificate {
  certificate: string;
  privateKey: string;
  issuingCa: string;
  /** Vault's form: lower-case hex pairs joined by ":". */
  serialNumber: string;
  /** notAfter, unix seconds. */
  expiration: number;
}

const CA_CONFIG = `[ ca ]
default_ca = dso
[ dso ]
dir = .
database = db/index.txt
new_certs_dir = db
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
rand_serial = yes
[ any ]
commonName = supplied
`;

async function openssl(args: string[], cwd: string): Promise<string> {
  const child = Bun.spawn(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (code !== 0) throw new Error(`openssl ${args[0]} failed: ${err.trim().split("\n").at(-1)}`);
  return out;
}

const stamp = (ms: number) => new Date(ms).toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z";

export class TestPki {
  private constructor(private readonly dir: string, readonly caPem: string) {}

  static async create(): Promise<TestPki> {
    const dir = mkdtempSync(join(tmpdir(), "dso-vault-pki-"));
    mkdirSync(join(dir, "db"));
    writeFileSync(join(dir, "db/index.txt"), "");
    writeFileSync(join(dir, "ca.cnf"), CA_CONFIG);
    await openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=DSO Test CA", "-days", "2"], dir);
    return new TestPki(dir, readFileSync(join(dir, "ca.pem"), "utf8"));
  }

  /** A certificate for `commonName` (+ DNS `altNames`) valid from a minute ago to `nowMs + ttlSeconds`. */
  async issue(commonName: string, altNames: string[], ttlSeconds: number, nowMs: number): Promise<IssuedCertificate> {
    const name = `leaf-${crypto.randomUUID()}`;
    const sans = [commonName, ...altNames].map((n) => `DNS:${n}`).join(",");
    await openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${commonName}`, "-addext", `subjectAltName=${sans}`], this.dir);
    const notAfterMs = Math.floor(nowMs / 1000 + ttlSeconds) * 1000;
    await openssl(["ca", "-batch", "-config", "ca.cnf", "-in", `${name}.csr`, "-out", `${name}.pem`, "-notext", "-startdate", stamp(nowMs - 60_000), "-enddate", stamp(notAfterMs)], this.dir);
    const serial = (await openssl(["x509", "-in", `${name}.pem`, "-noout", "-serial"], this.dir)).trim().replace(/^serial=/, "");
    const out: IssuedCertificate = {
      certificate: readFileSync(join(this.dir, `${name}.pem`), "utf8").trim(),
      privateKey: readFileSync(join(this.dir, `${name}.key`), "utf8").trim(),
      issuingCa: this.caPem.trim(),
      serialNumber: serial.toLowerCase().match(/../g)!.join(":"),
      expiration: notAfterMs / 1000,
    };
    for (const ext of ["key", "csr", "pem"]) rmSync(join(this.dir, `${name}.${ext}`), { force: true });
    return out;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
