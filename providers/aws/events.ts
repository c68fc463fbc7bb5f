/**
 * Change events for the `aws` provider: Secrets Manager events that an EventBridge rule sends to
 * an SQS queue (`providers.<name>.events.queue`), read by long polling with this provider's
 * credentials. A message only names secrets; the agent checks their fingerprints. Unusable
 * messages come back with a `problem` (the agent deletes them, so they never block the queue).
 */
import { DeleteMessageCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { MAX_EVENT_MESSAGES, MAX_SECRETS_PER_EVENT, type EventMessage } from "../../src/rpc/protocol.ts";
import type { EventQueue } from "../types.ts";
import { CONNECT_TIMEOUT_MS } from "./client.ts";
import { toProviderError } from "./errors.ts";
import type { AwsSettings } from "./settings.ts";

/** A change event is a few KiB; a bigger body is not parsed (SQS itself allows 256 KiB). */
export const MAX_EVENT_BYTES = 64 * 1024;
/** How long a received message stays hidden from other readers while the agent handles it. */
export const VISIBILITY_TIMEOUT_S = 60;
/** CloudTrail event names that cannot change a value (reads): not a change. */
const READ_ONLY_CALL = /^(Get|Describe|List|BatchGet|Validate)/;
const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[^:]*:\d*:secret:(.+)$/;

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);
const text = (value: unknown): string | undefined => (typeof value === "string" && value.length > 0 && value.length <= 2048 ? value : undefined);

/** An ARN names the secret as `name-XXXXXX` (6 random characters): both the ARN and the name are offered. */
function namesOf(id: string): string[] {
  const arn = SECRET_ARN.exec(id);
  if (!arn) return [id];
  const withSuffix = arn[1]!;
  return [id, withSuffix.replace(/-[A-Za-z0-9]{6}$/, "")];
}

/**
 * The secrets an EventBridge event names: Secrets Manager's own events and CloudTrail API calls
 * (PutSecretValue, UpdateSecret, UpdateSecretVersionStage, RotationSucceeded, ...).
 */
export function secretsOfEventBridge(body: string): Pick<EventMessage, "secrets" | "problem"> {
  if (Buffer.byteLength(body) > MAX_EVENT_BYTES) return { secrets: [], problem: "too_large" };
  let event: unknown;
  try {
    event = JSON.parse(body);
  } catch {
    return { secrets: [], problem: "malformed" };
  }
  if (!isObject(event) || !isObject(event.detail)) return { secrets: [], problem: "malformed" };
  if (event.source !== "aws.secretsmanager") return { secrets: [], problem: "not_a_secret_change" };
  const detail = event.detail;
  const eventName = text(detail.eventName);
  if (eventName && READ_ONLY_CALL.test(eventName)) return { secrets: [], problem: "not_a_secret_change" };
  const ids = new Set<string>();
  const add = (value: unknown) => {
    const id = text(value);
    if (id) for (const name of namesOf(id)) ids.add(name);
  };
  if (Array.isArray(event.resources)) event.resources.forEach(add);
  for (const key of ["secretId", "secretArn", "secretName", "SecretId"]) add(detail[key]);
  for (const nested of [detail.requestParameters, detail.responseElements, detail.additionalEventData]) {
    if (!isObject(nested)) continue;
    for (const key of ["secretId", "SecretId", "arn", "name", "ARN"]) add(nested[key]);
  }
  if (ids.size === 0) return { secrets: [], problem: "not_a_secret_change" };
  if (ids.size > MAX_SECRETS_PER_EVENT) return { secrets: [], problem: "too_large" };
  return { secrets: [...ids] };
}

export function createSqsEventQueue(settings: AwsSettings, queueUrl: string, provider: string): EventQueue & { destroy(): void } {
  const sqs = new SQSClient({
    region: settings.region,
    // The queue URL names the endpoint (the SDK would warn on every call if it differed).
    endpoint: new URL(queueUrl).origin,
    ...(settings.credentials ? { credentials: settings.credentials } : {}),
    maxAttempts: settings.maxAttempts,
    // The long poll itself lasts up to 20 s: the request timeout must outlast it.
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: 25_000 },
  });
  const failed = (error: unknown) => toProviderError(error, provider);
  return {
    async receive(waitSeconds, signal) {
      const out = await sqs
        .send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: MAX_EVENT_MESSAGES,
            WaitTimeSeconds: waitSeconds,
            VisibilityTimeout: VISIBILITY_TIMEOUT_S,
            MessageSystemAttributeNames: ["SentTimestamp"],
          }),
          { abortSignal: signal },
        )
        .catch((error) => {
          throw failed(error);
        });
      return (out.Messages ?? []).flatMap((message) => {
        if (!message.ReceiptHandle || message.ReceiptHandle.length > 8192) return [];
        const sent = Number(message.Attributes?.SentTimestamp);
        return [{ receipt: message.ReceiptHandle, ...secretsOfEventBridge(message.Body ?? ""), ...(Number.isSafeInteger(sent) && sent >= 0 ? { sentAt: sent } : {}) }];
      });
    },
    async done(receipts, signal) {
      // At most MAX_EVENT_MESSAGES at a time (the protocol's cap), side by side.
      await Promise.all(
        receipts.map((receipt) =>
          sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: receipt }), { abortSignal: signal }).catch((error) => {
            throw failed(error);
          }),
        ),
      );
    },
    async status(signal) {
      const out = await sqs
        .send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"] }), { abortSignal: signal })
        .catch((error) => {
          throw failed(error);
        });
      return { waiting: Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) || 0 };
    },
    destroy: () => sqs.destroy(),
  };
}
