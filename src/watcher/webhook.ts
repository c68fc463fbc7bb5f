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
import { BodyError, readCapped, readJsonBody } from "../util/json-body.ts";

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

/** Event Grid's subscription validation (Event Grid schema): echo the code, nothing else happens. */
const VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent";
const ValidationCode = v.pipe(v.string(), v.regex(/^[A-Za-z0-9-]{1,128}$/));
const EventGridEventsSchema = v.pipe(
  v.array(v.looseObject({ eventType: v.optional(v.string()), type: v.optional(v.string()), subject: v.optional(v.pipe(v.string(), v.maxLength(2048))), data: v.optional(v.unknown()) })),
  v.maxLength(100),
);

/**
 * Event Grid: the validation handshake (answered without the token: it only echoes the code and
 * triggers nothing) and Key Vault events (token required, like every notification): each event's
 * subject names a secret, which is polled as a webhook notification would be.
 */
async function eventGrid(req: Request, options: WebhookOptions): Promise<Response> {
  let events: v.InferOutput<typeof EventGridEventsSchema>;
  try {
    const body: unknown = JSON.parse(await readCapped(req, MAX_BODY_BYTES));
    events = v.parse(EventGridEventsSchema, Array.isArray(body) ? body : [body]);
  } catch (error) {
    const status = error instanceof BodyError ? error.status : 400;
    return reply(status, { error: { code: "BAD_REQUEST", message: "not an Event Grid event array" } });
  }
  const validation = events.find((e) => e.eventType === VALIDATION_EVENT);
  if (validation) {
    const code = (validation.data as { validationCode?: unknown } | undefined)?.validationCode;
    if (!v.is(ValidationCode, code)) return reply(400, { error: { code: "BAD_REQUEST", message: "data.validationCode: missing or not a validation code" } });
    return Response.json({ validationResponse: code });
  }
  if (!authorized(req.headers.get("authorization"), options.token)) return reply(401, { error: { code: "BAD_REQUEST", message: "missing or wrong bearer token" } });
  const names = [...new Set(events.map((e) => e.subject).filter((s): s is string => !!s))];
  const known = names.filter((name) => options.onNotify({ secret_name: name, event_type: "eventgrid" }));
  return known.length > 0 || names.length === 0 ? reply(202, { accepted: true }) : reply(404, { error: { code: "SECRET_NOT_FOUND", message: "the events name no secret the agent knows" } });
}

/** CloudEvents webhook abuse protection (OPTIONS + WebHook-Request-Origin), as Event Grid sends it. */
function cloudEventsHandshake(req: Request): Response {
  const origin = req.headers.get("webhook-request-origin");
  if (!origin || origin.length > 256 || !/^[A-Za-z0-9.*-]+$/.test(origin)) return reply(400, { error: { code: "BAD_REQUEST", message: "WebHook-Request-Origin: missing or not a host name" } });
  return new Response(null, { status: 200, headers: { "WebHook-Allowed-Origin": origin, Allow: "POST, OPTIONS" } });
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
      if (req.method === "OPTIONS") return cloudEventsHandshake(req);
      if (req.method !== "POST") return reply(405, { error: { code: "BAD_REQUEST", message: "use POST" } });
      if (req.headers.has("aeg-event-type") || (req.headers.get("content-type") ?? "").startsWith("application/cloudevents")) return eventGrid(req, options);
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
