/**
 * Change events for the `gcp` provider: the notifications Secret Manager publishes to a Pub/Sub
 * topic, read from a pull subscription (`providers.<name>.events.subscription`,
 * projects/<p>/subscriptions/<s>) over the Pub/Sub REST API v1 with this provider's token (role:
 * roles/pubsub.subscriber). A message only names a secret (attributes `eventType`, `secretId`);
 * the agent checks its fingerprint. Unusable messages come back with a `problem` (the agent
 * acknowledges them, so they never block the subscription).
 *
 * Pub/Sub's pull has no wait parameter: the server holds the request until messages come or its
 * own deadline. A wait of N seconds is a pull abandoned after N seconds (an empty answer); a wait
 * of 0 asks `returnImmediately` and is abandoned after DRAIN_PULL_MS.
 */
import { MAX_EVENT_MESSAGES, type EventMessage } from "../../src/rpc/protocol.ts";
import { readBoundedText, ReplyTooLarge } from "../bounded-read.ts";
import { ProviderError } from "../errors.ts";
import type { EventQueue } from "../types.ts";
import type { TokenSource } from "./auth.ts";

/** Secret Manager's notification data is one Secret or SecretVersion resource, a few KiB: more is not parsed. */
export const MAX_EVENT_BYTES = 64 * 1024;
/** A non-waiting pull (a drain read, the doctor's peek) is given up after this long. */
export const DRAIN_PULL_MS = 2000;
/**
 * A pull reply is read up to this size. Pub/Sub allows 10 MB per message (13.4 MB in base64): a
 * reply over it is given up and the next pulls ask for one message at a time, so one oversized
 * message is read alone, found too large and acknowledged, with the provider's memory bounded.
 */
export const MAX_PULL_REPLY_BYTES = 16 * 1024 * 1024;
/** Pulls that ask for one message after a reply was over MAX_PULL_REPLY_BYTES. */
const ONE_AT_A_TIME_PULLS = 2 * MAX_EVENT_MESSAGES;
/** Acknowledge, modifyAckDeadline, get: one request may take this long. */
export const REQUEST_TIMEOUT_MS = 10_000;
/** Event types that can change the enabled version in use (or remove the secret). */
const CHANGES = new Set([
  "SECRET_VERSION_ADD",
  "SECRET_VERSION_ENABLE",
  "SECRET_VERSION_DISABLE",
  "SECRET_VERSION_DESTROY",
  "SECRET_VERSION_DESTROY_SCHEDULED",
  "SECRET_DELETE",
]);
const SECRET_ID = /^projects\/([^/]{1,100})\/secrets\/([A-Za-z0-9_-]{1,255})$/;
const REGIONAL_SECRET_ID = /^projects\/[^/]{1,100}\/locations\/[^/]{1,64}\/secrets\/[A-Za-z0-9_-]{1,255}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);
const text = (value: unknown): string | undefined => (typeof value === "string" && value.length > 0 && value.length <= 2048 ? value : undefined);

/**
 * The secret a Secret Manager notification (a PubsubMessage) names, in every form dso.yaml may
 * declare it: the full name as sent, the bare secret id, and the full name with the configured
 * project. A same-named secret of another project matching is one spare metadata check (the
 * fingerprint decides), never a wrong delivery.
 */
export function secretsOfNotification(message: unknown, project: string): Pick<EventMessage, "secrets" | "problem"> {
  if (!isObject(message)) return { secrets: [], problem: "malformed" };
  const data = message.data ?? "";
  if (typeof data !== "string") return { secrets: [], problem: "malformed" };
  if (data.length > Math.ceil(MAX_EVENT_BYTES / 3) * 4) return { secrets: [], problem: "too_large" };
  const attributes = message.attributes;
  if (!isObject(attributes)) return { secrets: [], problem: "malformed" };
  const type = text(attributes.eventType);
  if (!type) return { secrets: [], problem: "malformed" };
  if (!CHANGES.has(type)) return { secrets: [], problem: "not_a_secret_change" };
  const secretId = text(attributes.secretId) ?? "";
  // A regional secret (not supported by this provider): never declared, so counted as undeclared.
  if (REGIONAL_SECRET_ID.test(secretId)) return { secrets: [secretId] };
  const full = SECRET_ID.exec(secretId);
  if (!full) return { secrets: [], problem: "malformed" };
  if (data !== "") {
    // dataFormat JSON_API_V1: the Secret or SecretVersion resource as JSON.
    if (!BASE64.test(data)) return { secrets: [], problem: "malformed" };
    try {
      if (!isObject(JSON.parse(Buffer.from(data, "base64").toString("utf8")))) return { secrets: [], problem: "malformed" };
    } catch {
      return { secrets: [], problem: "malformed" };
    }
  }
  const [name, , id] = full as unknown as [string, string, string];
  // Notifications may name the project by number where dso.yaml wrote its id: offered both ways.
  return { secrets: [...new Set([name, id, `projects/${project}/secrets/${id}`])] };
}

export interface PubSubOptions {
  /** The Pub/Sub REST API origin (config `pubsub_endpoint`). */
  endpoint: string;
  subscription: string;
  project: string;
  tokens: TokenSource;
  /** `provider <name> (gcp)`, for messages. */
  who: string;
  /** Default MAX_PULL_REPLY_BYTES (a test makes it small). */
  maxPullReplyBytes?: number;
}

/** A wait of ours ran out (not the caller's signal): an empty pull, not an error. */
class WaitOver extends Error {}

export function createPubSubEvents(options: PubSubOptions): EventQueue {
  const { endpoint, subscription, tokens, who } = options;
  const maxPullReply = options.maxPullReplyBytes ?? MAX_PULL_REPLY_BYTES;
  const where = `${who} change-event subscription ${subscription}`;
  let singlePulls = 0;

  function failed(status: number, body: unknown): ProviderError {
    const reason = isObject(body) && isObject(body.error) ? String(body.error.status ?? "").replace(/[^A-Z_]/g, "") : "";
    if (status === 401) return new ProviderError("PROVIDER_AUTH", `${where}: Pub/Sub refused the access token (HTTP 401)`);
    if (status === 403) return new ProviderError("PROVIDER_AUTH", `${where}: permission denied (grant roles/pubsub.subscriber on the subscription)`);
    if (status === 404) return new ProviderError("CONFIG_INVALID", `${where}: not found (events.subscription)`);
    if (status === 429) return new ProviderError("PROVIDER_THROTTLED", `${where}: Pub/Sub is throttling requests (429)`);
    return new ProviderError("PROVIDER_UNAVAILABLE", `${where}: Pub/Sub answered HTTP ${status}${reason ? ` ${reason}` : ""}`);
  }

  /** One REST call within `limitMs`: for a pull (`wait`) running out is WaitOver, else PROVIDER_TIMEOUT. */
  async function call(verb: "GET" | "POST", suffix: string, body: unknown, signal: AbortSignal, limitMs: number, wait: boolean): Promise<Json> {
    for (let refreshed = false; ; refreshed = true) {
      const timer = AbortSignal.timeout(limitMs);
      const timed = AbortSignal.any([signal, timer]);
      let response: Response;
      try {
        const token = await tokens.token(timed, refreshed);
        response = await fetch(`${endpoint}/v1/${subscription}${suffix}`, {
          method: verb,
          headers: { authorization: `Bearer ${token}`, accept: "application/json", ...(body === undefined ? {} : { "content-type": "application/json" }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: timed,
          redirect: "manual",
        });
        if (response.status === 401 && !refreshed) {
          await response.body?.cancel().catch(() => {});
          continue; // revoked or expired early: a new token, once
        }
        // An error's body only gives its status word: past 64 KiB it is not read.
        const reply = response.status === 200 ? await readBoundedText(response, maxPullReply) : await readBoundedText(response, MAX_EVENT_BYTES).catch(() => "");
        let parsed: unknown;
        try {
          parsed = reply ? JSON.parse(reply) : {};
        } catch {
          parsed = undefined;
        }
        if (response.status !== 200) throw failed(response.status, parsed);
        if (!isObject(parsed)) throw new ProviderError("PROVIDER_UNAVAILABLE", `${where}: Pub/Sub's reply is not a JSON object`);
        return parsed;
      } catch (error) {
        if (error instanceof ReplyTooLarge) throw error;
        if (error instanceof ProviderError && !(signal.aborted || timer.aborted)) throw error;
        if (signal.aborted) throw new ProviderError("PROVIDER_TIMEOUT", `${where}: call cancelled`);
        if (timer.aborted) {
          if (wait) throw new WaitOver();
          throw new ProviderError("PROVIDER_TIMEOUT", `${where}: no answer within ${limitMs} ms`);
        }
        const code = (error as { code?: string })?.code;
        throw new ProviderError("PROVIDER_UNAVAILABLE", `${where}: cannot reach ${endpoint}${code ? ` (${code})` : ""}`);
      }
    }
  }

  /** Pulls up to `max` messages, waiting `waitSeconds` at most (0: returnImmediately, DRAIN_PULL_MS). */
  async function pull(wanted: number, waitSeconds: number, signal: AbortSignal): Promise<Json[]> {
    const max = singlePulls > 0 ? 1 : wanted;
    if (singlePulls > 0) singlePulls--;
    const body = waitSeconds > 0 ? { maxMessages: max } : { maxMessages: max, returnImmediately: true };
    try {
      const reply = await call("POST", ":pull", body, signal, waitSeconds > 0 ? waitSeconds * 1000 : DRAIN_PULL_MS, true);
      const received = reply.receivedMessages ?? [];
      if (!Array.isArray(received)) throw new ProviderError("PROVIDER_UNAVAILABLE", `${where}: Pub/Sub's pull reply has no receivedMessages list`);
      return received.filter(isObject);
    } catch (error) {
      if (error instanceof WaitOver) return [];
      if (error instanceof ReplyTooLarge) {
        // Those messages come back after their ack deadline; then one at a time.
        singlePulls = ONE_AT_A_TIME_PULLS;
        throw new ProviderError("PROVIDER_UNAVAILABLE", `${where}: a pull reply was over ${maxPullReply} bytes (messages larger than Secret Manager sends); reading one message at a time`);
      }
      throw error;
    }
  }

  return {
    async receive(waitSeconds, signal) {
      const received = await pull(MAX_EVENT_MESSAGES, waitSeconds, signal);
      return received.flatMap((r) => {
        const ackId = typeof r.ackId === "string" && r.ackId.length > 0 && r.ackId.length <= 8192 ? r.ackId : undefined;
        if (!ackId) return [];
        const publishTime = isObject(r.message) ? Date.parse(String(r.message.publishTime ?? "")) : Number.NaN;
        return [{ receipt: ackId, ...secretsOfNotification(r.message, options.project), ...(Number.isFinite(publishTime) && publishTime >= 0 ? { sentAt: publishTime } : {}) }];
      });
    },
    async done(receipts, signal) {
      if (receipts.length === 0) return;
      // Acknowledging a message twice, or after its deadline, is not an error for Pub/Sub.
      await call("POST", ":acknowledge", { ackIds: receipts }, signal, REQUEST_TIMEOUT_MS, false);
    },
    async status(signal) {
      // A subscriber (roles/pubsub.subscriber) may pull but not read the subscription's metrics: a
      // one-message peek, handed straight back (ack deadline 0), shows access and an age.
      const [first] = await pull(1, 0, signal);
      if (!first) return {};
      const ackId = typeof first.ackId === "string" ? first.ackId : "";
      if (ackId) await call("POST", ":modifyAckDeadline", { ackIds: [ackId], ackDeadlineSeconds: 0 }, signal, REQUEST_TIMEOUT_MS, false);
      const published = isObject(first.message) ? Date.parse(String(first.message.publishTime ?? "")) : Number.NaN;
      return Number.isFinite(published) ? { oldestAgeSeconds: Math.max(0, (Date.now() - published) / 1000) } : {};
    },
  };
}
