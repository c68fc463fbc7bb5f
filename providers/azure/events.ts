/**
 * Change events for the `azure` provider: Key Vault's `Microsoft.KeyVault.SecretNewVersionCreated`
 * events that an Event Grid subscription delivers to an Azure Storage queue
 * (`providers.<name>.events.queue`, https://<account>.queue.core.windows.net/<queue>), read with
 * this provider's credential (role: Storage Queue Data Message Processor). Event Grid writes each
 * event as base64 JSON (Event Grid schema or CloudEvents). A message only names a secret; the
 * agent checks its fingerprint. Storage queues have no long poll: a wait is a read every
 * RECEIVE_INTERVAL_MS until a message comes or the wait ends. That interval is the wait a change
 * adds (on average half of it), so it is short enough for the change → file goal (p95 < 500 ms,
 * issue 23): 4 reads a second, 14,400 an hour per provider while the queue is idle.
 */
import type { QueueClient } from "@azure/storage-queue";
import { MAX_EVENT_MESSAGES, type EventMessage } from "../../src/rpc/protocol.ts";
import { ProviderError } from "../errors.ts";
import type { EventQueue } from "../types.ts";

/** A Key Vault event is about 1 KiB (a Storage queue message may be 64 KiB): more is not parsed. */
export const MAX_EVENT_BYTES = 16 * 1024;
export const VISIBILITY_TIMEOUT_S = 60;
export const RECEIVE_INTERVAL_MS = 250;
const NEW_VERSION = "Microsoft.KeyVault.SecretNewVersionCreated";

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);
const text = (value: unknown): string | undefined => (typeof value === "string" && value.length > 0 && value.length <= 2048 ? value : undefined);

/** The secret a queued Event Grid event names (message text: base64 JSON, or plain JSON). */
export function secretsOfEventGrid(messageText: string): Pick<EventMessage, "secrets" | "problem"> {
  if (messageText.length > MAX_EVENT_BYTES * 2) return { secrets: [], problem: "too_large" };
  const trimmed = messageText.trim();
  const json = trimmed.startsWith("{") || trimmed.startsWith("[") ? trimmed : Buffer.from(trimmed, "base64").toString("utf8");
  if (Buffer.byteLength(json) > MAX_EVENT_BYTES) return { secrets: [], problem: "too_large" };
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return { secrets: [], problem: "malformed" };
  }
  const event = Array.isArray(parsed) && parsed.length === 1 ? parsed[0] : parsed;
  if (!isObject(event)) return { secrets: [], problem: "malformed" };
  // Event Grid schema: eventType; CloudEvents: type.
  const type = text(event.eventType) ?? text(event.type);
  if (!type) return { secrets: [], problem: "malformed" };
  if (type !== NEW_VERSION) return { secrets: [], problem: "not_a_secret_change" };
  const names = new Set<string>();
  const subject = text(event.subject);
  if (subject) names.add(subject);
  const objectName = isObject(event.data) ? text(event.data.ObjectName) : undefined;
  if (objectName) names.add(objectName);
  return names.size > 0 ? { secrets: [...names] } : { secrets: [], problem: "malformed" };
}

/** A wait between reads; its abort listener goes when it ends (a wait is up to 80 reads now). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Storage errors (auth, not found, unreachable) as value-free provider errors. */
function failed(error: unknown, provider: string): ProviderError {
  const status = (error as { statusCode?: number }).statusCode;
  const code = (error as { code?: string }).code ?? (error as { details?: { errorCode?: string } }).details?.errorCode ?? "error";
  const who = `provider ${provider} (azure) change-event queue`;
  if (status === 401 || status === 403) return new ProviderError("PROVIDER_AUTH", `${who}: access denied (${code}); the identity needs Storage Queue Data Message Processor`);
  if (status === 404) return new ProviderError("CONFIG_INVALID", `${who}: queue not found (${code})`);
  return new ProviderError("PROVIDER_UNAVAILABLE", `${who}: unreachable or failing (${code})`);
}

export function createStorageQueueEvents(queue: QueueClient, provider: string): EventQueue {
  const receiveOnce = async (signal: AbortSignal): Promise<EventMessage[]> => {
    const out = await queue.receiveMessages({ numberOfMessages: MAX_EVENT_MESSAGES, visibilityTimeout: VISIBILITY_TIMEOUT_S, abortSignal: signal }).catch((error) => {
      throw failed(error, provider);
    });
    return out.receivedMessageItems.map((m) => ({
      receipt: JSON.stringify([m.messageId, m.popReceipt]),
      ...secretsOfEventGrid(m.messageText),
      sentAt: m.insertedOn.getTime(),
    }));
  };
  return {
    async receive(waitSeconds, signal) {
      const until = Date.now() + waitSeconds * 1000;
      for (;;) {
        const messages = await receiveOnce(signal);
        if (messages.length > 0 || Date.now() + RECEIVE_INTERVAL_MS > until || signal.aborted) return messages;
        await sleep(RECEIVE_INTERVAL_MS, signal);
      }
    },
    async done(receipts, signal) {
      await Promise.all(
        receipts.map(async (receipt) => {
          const [id, pop] = JSON.parse(receipt) as [string, string];
          await queue.deleteMessage(id, pop, { abortSignal: signal }).catch((error) => {
            // Gone already (another reader, or its visibility ran out and it was read again): nothing to delete.
            if ((error as { statusCode?: number }).statusCode === 404) return;
            throw failed(error, provider);
          });
        }),
      );
    },
    async status(signal) {
      try {
        const properties = await queue.getProperties({ abortSignal: signal });
        const peeked = await queue.peekMessages({ numberOfMessages: 1, abortSignal: signal });
        const oldest = peeked.peekedMessageItems[0]?.insertedOn;
        return { waiting: properties.approximateMessagesCount ?? 0, ...(oldest ? { oldestAgeSeconds: Math.max(0, (Date.now() - oldest.getTime()) / 1000) } : {}) };
      } catch (error) {
        throw failed(error, provider);
      }
    },
  };
}
