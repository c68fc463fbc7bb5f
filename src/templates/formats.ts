/**
 * Whole-secret serialisations: the `toJson`, `toYaml`, `toEnv` and `toProperties` template
 * functions and the template-free `format:` outputs. Keys (names, not values) are sorted and may
 * appear in errors; values go through the byte encoders only.
 */
import { envBare, envQuoted, jsonString, propertiesEscaper } from "./bytes.ts";
import type { Segment } from "./segments.ts";

export const FORMATS = ["env", "json", "yaml", "properties"] as const;
export type FormatName = (typeof FORMATS)[number];

export type SecretMap = ReadonlyMap<string, Uint8Array>;

const encoder = new TextEncoder();
const text = (s: string) => encoder.encode(s);
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const YAML_PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** The segments of a secret in `format`, or a problem naming a key. `file` adds the trailing newline and JSON indentation of a file. */
export function formatSegments(format: FormatName, secret: SecretMap, file: boolean): Segment[] | string {
  const keys = [...secret.keys()].sort();
  const out: Segment[] = [];
  switch (format) {
    case "json": {
      out.push(text(file && keys.length ? "{\n" : "{"));
      keys.forEach((key, i) => {
        const sep = i === keys.length - 1 ? "" : ",";
        out.push(text(`${file ? "  " : ""}${JSON.stringify(key)}:${file ? " " : ""}`), { encoder: jsonString, input: secret.get(key)! }, text(file ? `${sep}\n` : sep));
      });
      out.push(text(file ? "}\n" : "}"));
      return out;
    }
    case "yaml":
      if (keys.length === 0) return [text("{}\n")];
      for (const key of keys) out.push(text(`${YAML_PLAIN_KEY.test(key) ? key : JSON.stringify(key)}: `), { encoder: jsonString, input: secret.get(key)! }, text("\n"));
      return out;
    case "env":
      for (const key of keys) {
        if (!ENV_NAME.test(key)) return `key "${key}" is not a valid variable name for env`;
        const value = secret.get(key)!;
        out.push(text(`${key}=`), envBare(value) ? value : { encoder: envQuoted, input: value }, text("\n"));
      }
      return out;
    case "properties":
      for (const key of keys) out.push({ encoder: propertiesEscaper(true), input: text(key) }, text("="), { encoder: propertiesEscaper(false), input: secret.get(key)! }, text("\n"));
      return out;
  }
}
