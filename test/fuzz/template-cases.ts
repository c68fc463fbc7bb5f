/**
 * Fuzz target for the template parser and renderer (issue 20): random templates built from the
 * grammar's own tokens and random text, rendered over a secret with planted values. A case passes
 * when it renders to bytes or fails with a TemplateError whose message holds no planted value;
 * any other exception is a crash. The renderer's step bound keeps every case finite.
 */
import fc from "fast-check";
import { TemplateError } from "../../src/templates/errors.ts";
import { parseTemplate } from "../../src/templates/parse.ts";
import { renderTemplate } from "../../src/templates/render.ts";
import { crash, OK, runFuzz, violation, type FuzzFigures, type Verdict } from "../support/fuzz.ts";

const PLANTED = ["PLANTED-user-7f3a", "PLANTED-pass-91c2"];
const enc = new TextEncoder();
const SECRET = new Map([
  ["user", enc.encode(PLANTED[0]!)],
  ["password", enc.encode(PLANTED[1]!)],
  ["b64", enc.encode(Buffer.from(PLANTED[1]!).toString("base64"))],
]);

const TOKENS = [
  "{{", "}}", "{{- ", " -}}", "{{/*", "*/}}", " ", ".", ".user", ".password", ".nope", ".b64", "$", "$x", "$k, $v", ":=", "|", "(", ")", ",",
  "if", "else", "else if", "end", "with", "range", "index", "secret", '"db"', '"user"', '"key-with-dash"', "default", "not", "eq", "ne",
  "b64enc", "b64dec", "urlquery", "json", "quote", "trim", "indent", "2", "-1", "999999", "toJson", "toYaml", "toEnv", "toProperties",
  '"', "`", "\\", "\n", "true", "nil", "define", "template",
];

export { PLANTED };

export const templateArbitrary = fc.array(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...TOKENS) }, { weight: 1, arbitrary: fc.string({ maxLength: 8 }) }), { maxLength: 40 }).map((parts) => parts.join(" "));

export function checkTemplate(text: string): Verdict {
  try {
    const parsed = parseTemplate(text, { file: "dso.yaml", line: 1, output: "fuzz" });
    renderTemplate(parsed, { root: { name: "db", map: SECRET }, secrets: new Map([["db", SECRET]]) });
    return OK;
  } catch (error) {
    return judgeError(text, error);
  }
}

/** An error is fine when it is a TemplateError holding no planted value the text does not hold. */
export function judgeError(text: string, error: unknown): Verdict {
  {
    if (!(error instanceof TemplateError)) return crash(error);
    // A planted value may be in the template text itself; only values that the text does not hold must stay out.
    const leaked = PLANTED.filter((p) => !text.includes(p) && error.message.includes(p));
    return leaked.length ? violation(`error message holds a value: ${error.message.slice(0, 200)}`) : OK;
  }
}

export function fuzzTemplates(runs: number): Promise<FuzzFigures> {
  return runFuzz({ target: "templates", arbitrary: templateArbitrary, check: async (text) => checkTemplate(text), runs, caseTimeoutMs: 2_000 });
}
