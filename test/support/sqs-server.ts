// Local Amazon SQS speaking the AWS JSON 1.0 protocol (POST /, Content-Type
// application/x-amz-json-1.0, X-Amz-Target: AmazonSQS.<Operation>), for driving the real
// @aws-sdk/client-sqs. Written from the public API reference:
// - ReceiveMessage: MaxNumberOfMessages (1-10), WaitTimeSeconds (0-20, long polling: the call
//   returns as soon as a message is visible, or empty when the wait ends), VisibilityTimeout
//   (the received messages are hidden that long, then visible again), MessageSystemAttributeNames
//   / AttributeNames (SentTimestamp, ApproximateReceiveCount). Each receive gives a new receipt
//   handle; MD5OfBody is the hex MD5 of Body (the SDK checks it).
// - DeleteMessage: QueueUrl + ReceiptHandle. Only the latest receipt handle of a message deletes
//   it; an older one succeeds without deleting (as SQS documents); a handle that never existed is
//   ReceiptHandleIsInvalid.
// - GetQueueAttributes: ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible.
// Queue URLs are <url>/<account>/<name>; an unknown one is QueueDoesNotExist. Auth: SigV4 header
// with the expected key id, region and service `sqs` (the signature itself is not verified, as
// aws-server.ts). Errors: HTTP 400 (5xx when `unavailable`), {"__type": "com.amazonaws.sqs#Code",
// "message"} and x-amzn-query-error, as the SDK's JSON error parser expects.
import { createHash, randomUUID } from "node:crypto";
import { AWS_TEST_ACCESS_KEY_ID } from "./aws-server.ts";

export interface SqsMessage {
  id: string;
  body: string;
  sentAt: number;
  visibleAt: number;
  receiveCount: number;
  receipt?: string;
}

export interface SqsServer {
  url: string;
  /** The URL of queue `name` (created if new). */
  queueUrl(name: string): string;
  send(queue: string, body: string): string;
  /** Messages still in the queue (visible or not). */
  messages(queue: string): SqsMessage[];
  /** Requests per operation. */
  calls: Record<string, number>;
  /** Every request fails with 503 ServiceUnavailable while true. */
  unavailable: boolean;
  stop(): Promise<void>;
}

class SqsError extends Error {
  constructor(readonly code: string, message: string, readonly status = 400) {
    super(message);
  }
}

const DEFAULT_VISIBILITY_S = 30;
const MAX_WAIT_S = 20;

function errorResponse(err: SqsError): Response {
  return new Response(JSON.stringify({ __type: `com.amazonaws.sqs#${err.code}`, message: err.message }), {
    status: err.status,
    headers: { "content-type": "application/x-amz-json-1.0", "x-amzn-query-error": `AWS.SimpleQueueService.${err.code};Sender`, "x-amzn-requestid": randomUUID() },
  });
}

function checkSigV4(header: string | null, accessKeyId: string, region: string): void {
  const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=[^,]+, ?Signature=[0-9a-f]{64}$/.exec(header ?? "");
  if (!match) throw new SqsError("MissingAuthenticationToken", "Authorization header is not a valid SigV4 signature.");
  const [, keyId, , signedRegion, service] = match;
  if (keyId !== accessKeyId) throw new SqsError("InvalidClientTokenId", "The security token included in the request is invalid.", 403);
  if (signedRegion !== region || service !== "sqs") throw new SqsError("SignatureDoesNotMatch", `Credential should be scoped to ${region}/sqs.`, 403);
}

function intIn(value: unknown, min: number, max: number, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) throw new SqsError("InvalidParameterValue", `Value ${String(value)} for parameter ${field} is invalid.`);
  return value;
}

export async function startSqsServer(opts: { accessKeyId?: string; region?: string; accountId?: string } = {}): Promise<SqsServer> {
  const accessKeyId = opts.accessKeyId ?? AWS_TEST_ACCESS_KEY_ID;
  const region = opts.region ?? "us-east-1";
  const accountId = opts.accountId ?? "123456789012";
  const queues = new Map<string, SqsMessage[]>();
  const waiters = new Set<() => void>();
  const calls: Record<string, number> = {};
  let base = "";

  const queueOf = (url: unknown): SqsMessage[] => {
    const name = typeof url === "string" ? new URL(url, base).pathname.split("/").pop() : undefined;
    const queue = name === undefined ? undefined : queues.get(name);
    if (!queue) throw new SqsError("QueueDoesNotExist", "The specified queue does not exist.");
    return queue;
  };

  function takeVisible(queue: SqsMessage[], max: number, visibilityS: number): SqsMessage[] {
    const now = Date.now();
    const out: SqsMessage[] = [];
    for (const m of queue) {
      if (out.length >= max) break;
      if (m.visibleAt > now) continue;
      m.visibleAt = now + visibilityS * 1000;
      m.receiveCount++;
      m.receipt = `${m.id}:${randomUUID()}`;
      out.push(m);
    }
    return out;
  }

  async function receive(input: Record<string, any>, signal: AbortSignal) {
    const queue = queueOf(input.QueueUrl);
    const max = intIn(input.MaxNumberOfMessages, 1, 10, 1, "MaxNumberOfMessages");
    const wait = intIn(input.WaitTimeSeconds, 0, MAX_WAIT_S, 0, "WaitTimeSeconds");
    const visibility = intIn(input.VisibilityTimeout, 0, 43_200, DEFAULT_VISIBILITY_S, "VisibilityTimeout");
    const attrs = new Set<string>([...(input.MessageSystemAttributeNames ?? []), ...(input.AttributeNames ?? [])]);
    const until = Date.now() + wait * 1000;
    let got = takeVisible(queue, max, visibility);
    while (got.length === 0 && Date.now() < until && !signal.aborted) {
      // Woken by a send, or at the next moment a hidden message becomes visible again.
      const nextVisible = Math.min(until, ...queue.map((m) => m.visibleAt).filter((t) => t > Date.now()));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.max(1, nextVisible - Date.now()));
        function done() {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
        signal.addEventListener("abort", done, { once: true });
      });
      got = takeVisible(queue, max, visibility);
    }
    const all = attrs.has("All");
    return {
      Messages: got.map((m) => ({
        MessageId: m.id,
        ReceiptHandle: m.receipt,
        MD5OfBody: createHash("md5").update(m.body).digest("hex"),
        Body: m.body,
        Attributes: {
          ...(all || attrs.has("SentTimestamp") ? { SentTimestamp: String(m.sentAt) } : {}),
          ...(all || attrs.has("ApproximateReceiveCount") ? { ApproximateReceiveCount: String(m.receiveCount) } : {}),
        },
      })),
    };
  }

  function remove(input: Record<string, any>) {
    const queue = queueOf(input.QueueUrl);
    const handle = input.ReceiptHandle;
    if (typeof handle !== "string" || !handle.includes(":")) throw new SqsError("ReceiptHandleIsInvalid", "The input receipt handle is invalid.");
    const index = queue.findIndex((m) => m.receipt === handle);
    if (index >= 0) queue.splice(index, 1);
    return {};
  }

  function attributes(input: Record<string, any>) {
    const queue = queueOf(input.QueueUrl);
    const now = Date.now();
    return {
      Attributes: {
        ApproximateNumberOfMessages: String(queue.filter((m) => m.visibleAt <= now).length),
        ApproximateNumberOfMessagesNotVisible: String(queue.filter((m) => m.visibleAt > now).length),
      },
    };
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    idleTimeout: 60,
    async fetch(req) {
      try {
        const target = req.headers.get("x-amz-target") ?? "";
        const operation = target.startsWith("AmazonSQS.") ? target.slice("AmazonSQS.".length) : "";
        calls[operation] = (calls[operation] ?? 0) + 1;
        if (api.unavailable) throw new SqsError("ServiceUnavailable", "Service is unavailable.", 503);
        if (req.method !== "POST") throw new SqsError("UnsupportedOperation", "Only POST is supported.");
        checkSigV4(req.headers.get("authorization"), accessKeyId, region);
        if (!(req.headers.get("content-type") ?? "").startsWith("application/x-amz-json-1.0")) throw new SqsError("InvalidParameterValue", "Content-Type must be application/x-amz-json-1.0.");
        const input = (await req.json().catch(() => ({}))) as Record<string, any>;
        const result =
          operation === "ReceiveMessage" ? await receive(input, req.signal)
          : operation === "DeleteMessage" ? remove(input)
          : operation === "GetQueueAttributes" ? attributes(input)
          : undefined;
        if (!result) throw new SqsError("UnsupportedOperation", `Unknown operation ${target}`);
        return Response.json(result, { headers: { "content-type": "application/x-amz-json-1.0", "x-amzn-requestid": randomUUID() } });
      } catch (e) {
        return errorResponse(e instanceof SqsError ? e : new SqsError("InternalError", String(e), 500));
      }
    },
  });
  base = `http://127.0.0.1:${server.port}`;

  const api: SqsServer = {
    url: base,
    calls,
    unavailable: false,
    queueUrl(name) {
      if (!queues.has(name)) queues.set(name, []);
      return `${base}/${accountId}/${name}`;
    },
    send(queue, body) {
      api.queueUrl(queue);
      const id = randomUUID();
      const now = Date.now();
      queues.get(queue)!.push({ id, body, sentAt: now, visibleAt: now, receiveCount: 0 });
      for (const wake of [...waiters]) wake();
      return id;
    },
    messages: (queue) => [...(queues.get(queue) ?? [])],
    stop: () => server.stop(true),
  };
  return api;
}
