import { describe, expect, test } from "bun:test";
import { parseTemplate } from "../../src/templates/parse.ts";
import { renderTemplate } from "../../src/templates/render.ts";
import { TemplateError } from "../../src/templates/errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const origin = { file: "dso.yaml", line: 10, output: "out" };

function secret(entries: Record<string, string>): Map<string, Uint8Array> {
  return new Map(Object.entries(entries).map(([k, v]) => [k, enc.encode(v)]));
}

const db = secret({ user: "app", password: "p@ss w/rd", host: "db", "api-key": "k-1", empty: "" });
const api = secret({ token: " tok\n" });

function render(text: string, delims?: { left: string; right: string }): string {
  const t = parseTemplate(text, origin, delims);
  return dec.decode(renderTemplate(t, { root: { name: "db", map: db }, secrets: new Map([["db", db], ["api", api]]) }));
}

function failure(text: string): string {
  try {
    render(text);
  } catch (error) {
    expect(error).toBeInstanceOf(TemplateError);
    return (error as Error).message;
  }
  throw new Error("rendered without error");
}

describe("template rendering", () => {
  test("fields, index with dashes, secret, pipelines", () => {
    expect(render("postgres://{{ .user }}:{{ .password | urlquery }}@{{ .host }}/app")).toBe("postgres://app:p%40ss+w%2Frd@db/app");
    expect(render(`{{ index . "api-key" }}`)).toBe("k-1");
    expect(render(`{{ secret "api" "token" | trim }}`)).toBe("tok");
    expect(render(`{{ with secret "api" }}[{{ .token | trim }}]{{ end }}`)).toBe("[tok]");
  });

  test("if / else if / else, with / else, range / else, variables", () => {
    expect(render(`{{ if .empty }}a{{ else if .user }}b{{ else }}c{{ end }}`)).toBe("b");
    expect(render(`{{ with .nope }}x{{ else }}none{{ end }}`)).toBe("none");
    expect(render(`{{ range $k, $v := secret "api" }}{{ $k }}={{ $v | trim }};{{ end }}`)).toBe("token=tok;");
    expect(render(`{{ range . }}{{ . | b64enc }},{{ end }}`).split(",").length).toBe(6);
    expect(render(`{{ $u := .user }}{{ $u }}-{{ $.host }}`)).toBe("app-db");
    expect(render(`{{ if not .empty }}yes{{ end }}{{ if eq .user "app" }}!{{ end }}`)).toBe("yes!");
  });

  test("default covers a missing or empty key; a printed missing key is an error naming file:line and key", () => {
    expect(render(`{{ .nope | default "x" }}{{ default "y" .empty }}`)).toBe("xy");
    const message = failure("line1\nline2 {{ .port }}");
    expect(message).toContain("dso.yaml:11:");
    expect(message).toContain(`key "port" of secret "db" not found`);
  });

  test("byte functions", () => {
    expect(render(`{{ .password | b64enc }}`)).toBe(Buffer.from("p@ss w/rd").toString("base64"));
    expect(render(`{{ .password | b64enc | b64dec }}`)).toBe("p@ss w/rd");
    expect(render(`{{ "a\\"b\\n" | json }}`)).toBe(JSON.stringify('a"b\n'));
    expect(render(`{{ "a\\"b" | quote }}`)).toBe('"a\\"b"');
    expect(render(`{{ "x\\ny" | indent 2 }}`)).toBe("  x\n  y");
    expect(render(`{{ secret "api" | toJson }}`)).toBe('{"token":" tok\\n"}');
    expect(render(`{{ secret "api" | toYaml }}`)).toBe('token: " tok\\n"\n');
    expect(render(`{{ secret "api" | toEnv }}`)).toBe('token=" tok\\n"\n');
    expect(JSON.parse(render(`{{ toJson . }}`))).toEqual({ user: "app", password: "p@ss w/rd", host: "db", "api-key": "k-1", empty: "" });
  });

  test("trim markers, comments, raw strings and custom delimiters", () => {
    expect(render("a  {{- /* c */ -}}  b")).toBe("ab");
    expect(render("{{ `raw\\n` }}")).toBe("raw\\n");
    expect(render(`{"u": [[ .user | json ]], "t": "{{ not a template }}"}`, { left: "[[", right: "]]" })).toBe(`{"u": "app", "t": "{{ not a template }}"}`);
  });

  test("parse errors name the line and the problem", () => {
    expect(() => parseTemplate("a\n{{ if .x }}", origin)).toThrow("dso.yaml:11: output \"out\": missing {{end}}");
    expect(() => parseTemplate("{{ env \"HOME\" }}", origin)).toThrow('unknown function "env"');
    expect(() => parseTemplate("{{ $x }}", origin)).toThrow("undefined variable $x");
    expect(() => parseTemplate("{{ .a ", origin)).toThrow("unclosed action");
    expect(() => parseTemplate("{{ template \"x\" }}", origin)).toThrow("not supported");
  });

  test("no value reaches an error message", () => {
    for (const text of [`{{ .password | b64dec }}`, `{{ . }}`, `{{ .password .user }}`, `{{ index .password "x" }}`, `{{ .password | indent 999 }}`]) {
      const message = failure(text);
      expect(message).not.toContain("p@ss");
      expect(message).not.toContain("app");
    }
  });

  test("a template whose nested ranges explode is refused, not run", () => {
    const big = new Map(Array.from({ length: 200 }, (_, i) => [`k${i}`, enc.encode("v")]));
    const t = parseTemplate("{{ range $.x }}{{ end }}{{ range $a := . }}{{ range $b := $ }}{{ range $c := $ }}x{{ end }}{{ end }}{{ end }}".replace("{{ range $.x }}{{ end }}", ""), origin);
    expect(() => renderTemplate(t, { root: { name: "s", map: big }, secrets: new Map() })).toThrow("steps");
  });

  test("the result is one buffer of exactly its size", () => {
    const t = parseTemplate("{{ .user }}:{{ .password | urlquery }}", origin);
    const out = renderTemplate(t, { root: { name: "db", map: db }, secrets: new Map() });
    expect(out.buffer.byteLength).toBe(out.length);
  });
});
