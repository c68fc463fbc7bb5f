/**
 * The one reader of JSON request bodies (control socket, webhook): at most `maxBytes` are read
 * (a larger body is refused without being buffered), then JSON, then the route's valibot schema.
 * Errors name the field, never echo the body.
 */
import * as v from "valibot";
import { DsoError } from "../errors.ts";
import { describeIssues } from "./issues.ts";

export class BodyError extends DsoError {
  constructor(
    readonly status: 400 | 413,
    message: string,
  ) {
    super("BAD_REQUEST", message);
  }
}

/** The body as text, refused (413) past `maxBytes` without buffering the rest. */
export async function readCapped(req: Request, maxBytes: number): Promise<string> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > maxBytes) throw new BodyError(413, `request body larger than ${maxBytes} bytes`);
  if (!req.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of req.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new BodyError(413, `request body larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export async function readJsonBody<S extends v.GenericSchema>(req: Request, schema: S, maxBytes: number): Promise<v.InferOutput<S>> {
  const text = await readCapped(req, maxBytes);
  let raw: unknown = {};
  if (text.trim()) {
    try {
      raw = JSON.parse(text);
    } catch {
      throw new BodyError(400, "request body is not valid JSON");
    }
  }
  const parsed = v.safeParse(schema, raw);
  if (!parsed.success) throw new BodyError(400, describeIssues(parsed.issues));
  return parsed.output;
}
