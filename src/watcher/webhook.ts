/**
 * The inbound webhook: a cloud event (EventBridge, Event Grid, a Vault audit hook, a CI job)
 * tells the agent that something changed, and the agent polls fingerprints at once instead of
 * waiting for the next interval. The request is only a hint: nothing in it is trusted beyond
 * naming which provider or secret to poll, and values always come from the provider.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Server } from "bun";
import * as v from "valibot";
import { DsoError } from "../errors.ts";
import { BodyError, readJsonBody } from "../util/json-body.ts";

export const WEBHOOK_PATHS = ["/api/events/secret-update", "/v1/webhook"];
const MAX_BODY_BYTES = 16 * 1024;

const NotificationSchema = v.strictObject({
  provider: v.optional(v.pipe(v.string(), v.maxLength(256))),
  secret_name: v.optional(v.pipe(v.string(), v.maxLength(2048))),
  event_type: v.optional(v.pipe(v.string(), v.maxLength(256))),
  timestamp: v.optional(v.union([v.string(), v.number()])),
});
export type Notification = v.InferOutput<typeof NotificationSchema>;

export interface WebhookOptions {
  listen: string;
  token: string;
  /** Returns false when the notification names nothing the agent knows. */
  onNotify(notification: Notification): boolean;
}

function reply(status: number, body: object): Response {
  return Response.json(body, { status });
}

/** Compares digests, so neither the token's bytes nor its length leak through timing. */
function authorized(header: string | null, token: string): boolean {
  const digest = (text: string) => createHash("sha256").update(text).digest();
  return timingSafeEqual(digest(header?.startsWith("Bearer ") ? header.slice(7) : ""), digest(token));
}

export function parseListen(listen: string): { hostname: string; port: number } {
  const at = listen.lastIndexOf(":");
  return { hostname: listen.slice(0, at).replace(/^\[|\]$/g, ""), port: Number(listen.slice(at + 1)) };
}

export function startWebhook(options: WebhookOptions): Server<undefined> {
  return Bun.serve({
    ...parseListen(options.listen),
    development: false,
    async fetch(req) {
      const url = new URL(req.url);
      if (!WEBHOOK_PATHS.includes(url.pathname)) return reply(404, { error: { code: "BAD_REQUEST", message: "no such endpoint" } });
      if (req.method !== "POST") return reply(405, { error: { code: "BAD_REQUEST", message: "use POST" } });
      if (!authorized(req.headers.get("authorization"), options.token)) {
        return reply(401, { error: { code: "BAD_REQUEST", message: "missing or wrong bearer token" } });
      }
      let notification: Notification;
      try {
        notification = await readJsonBody(req, NotificationSchema, MAX_BODY_BYTES);
      } catch (error) {
        const status = error instanceof BodyError ? error.status : 400;
        return reply(status, { error: { code: "BAD_REQUEST", message: error instanceof DsoError ? error.message : "bad request" } });
      }
      if (!options.onNotify(notification)) {
        return reply(404, { error: { code: "SECRET_NOT_FOUND", message: "the notification names no provider or secret the agent knows" } });
      }
      return reply(202, { accepted: true });
    },
  });
}
