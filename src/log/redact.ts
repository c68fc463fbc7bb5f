/**
 * Last line of defence: every value DSO has fetched is registered here while it is in memory,
 * and every log line is scrubbed of registered values before it is written. Code must still
 * never log a value; this catches the mistake that slips through (an SDK error echoing a body).
 */
const MIN_REDACTABLE_LENGTH = 4;
const REDACTED = "[REDACTED]";

const known = new Set<string>();

export function registerSecretValue(value: string): void {
  if (value.length < MIN_REDACTABLE_LENGTH) return;
  known.add(value);
  // JSON log lines carry the value escaped (newlines, quotes, backslashes): catch that form too.
  const escaped = JSON.stringify(value).slice(1, -1);
  if (escaped !== value) known.add(escaped);
}

export function forgetSecretValue(value: string): void {
  known.delete(value);
  known.delete(JSON.stringify(value).slice(1, -1));
}

export function redact(text: string): string {
  if (known.size === 0) return text;
  let out = text;
  for (const value of known) {
    if (out.includes(value)) out = out.split(value).join(REDACTED);
  }
  return out;
}
