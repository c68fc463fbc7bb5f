#!/usr/bin/env bun
/**
 * Render cost per output, in process (no daemon): the outputs of docs/templates.md — a DSN, a
 * `.env` template, a JSON config reading two secrets, a PEM bundle — and the formats without a
 * template (env, json, yaml, properties) over a 20-key secret, each through `renderOutput` (the
 * one render step every delivery path uses), parsed from a dso.yaml as the agent parses it.
 * Prints µs per output (median of 5 rounds) and the bytes rendered. `bun bench/templates.ts [iterations]`.
 *
 * The wave cost (1,000 templated containers beside the same wave without templates) is
 * `bun bench/scale.ts N 5 --templates` (docs/performance.md).
 */
import { parseConfig } from "../src/config/index.ts";
import { renderOutput } from "../src/templates/outputs.ts";
import type { SecretMap } from "../src/templates/formats.ts";

const ITERATIONS = Number(process.argv[2] ?? 20_000);
const enc = new TextEncoder();
const map = (entries: Record<string, string>): SecretMap => new Map(Object.entries(entries).map(([k, v]) => [k, enc.encode(v)]));
const pem = (what: string) => `-----BEGIN ${what}-----\n${"A".repeat(64)}\n`.repeat(1) + `${"QUJD".repeat(16)}\n`.repeat(20) + `-----END ${what}-----\n`;

const yaml = `providers:
  local:
    type: file
secrets:
  - name: prod/postgres
    templates:
      - file: DATABASE_URL
        template: "postgresql://{{ .username }}:{{ .password | urlquery }}@{{ .host | default \\"db\\" }}:5432/app?sslmode=require"
      - file: app.env
        template: |
          DB_USER={{ .username }}
          DB_PASSWORD={{ .password | quote }}
          {{- with index . "smtp-password" }}
          SMTP_PASSWORD={{ . | quote }}
          {{- end }}
  - name: prod/stripe
  - name: prod/tls
    templates:
      - file: bundle.pem
        template: |
          {{ .certificate | trim }}
          {{ index . "ca-chain" | trim }}
          {{ .private_key | trim }}
  - name: prod/wide
    templates:
      - file: wide.env
        format: env
      - file: wide.json
        format: json
      - file: wide.yaml
        format: yaml
      - file: wide.properties
        format: properties
templates:
  - file: config.json
    secrets: [prod/postgres, prod/stripe]
    delimiters: ["[[", "]]"]
    template: |
      {
        "database": { "user": [[ .username | json ]], "password": [[ .password | json ]] },
        "stripe": { "key": [[ secret "prod/stripe" "api_key" | json ]] }
      }
`;

const { config } = parseConfig(yaml, "dso.yaml", {});
const values = new Map<string, SecretMap>([
  ["prod/postgres", map({ username: "app", password: "p@ss w/rd+€", host: "db.internal", "smtp-password": 'sm"tp' })],
  ["prod/stripe", map({ api_key: "sk_live_0123456789abcdefghijklmnop" })],
  ["prod/tls", map({ certificate: pem("CERTIFICATE"), "ca-chain": pem("CERTIFICATE"), private_key: pem("PRIVATE KEY") })],
  ["prod/wide", map(Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`key_${i}`, `value-${i}-${"x".repeat(24)}`])))],
]);

const outputs = [...config.secrets.flatMap((s) => s.outputs ?? [])];
const seen = new Set<string>();
console.log(`Render cost per output (renderOutput, ${ITERATIONS} renders per round, median of 5 rounds, Bun ${Bun.version}):\n`);
console.log("| output | kind | sources | bytes | µs per render |\n|---|---|---|---|---|");
for (const output of outputs) {
  const key = `${output.name}:${output.sources.join(",")}`;
  if (seen.has(key)) continue; // a top-level template is listed under each of its sources
  seen.add(key);
  const bytes = renderOutput(output, values).byteLength;
  const rounds: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    for (let i = 0; i < ITERATIONS; i++) renderOutput(output, values).fill(0);
    rounds.push(((performance.now() - t) * 1000) / ITERATIONS);
  }
  rounds.sort((a, b) => a - b);
  const kind = output.content.kind === "format" ? `format ${output.content.format}` : "template";
  console.log(`| ${output.name} | ${kind} | ${output.sources.join(", ")} | ${bytes} | ${rounds[2]!.toFixed(2)} |`);
}
