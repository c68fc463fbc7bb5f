/**
 * Text from outside — file names, label values, volume option keys, dso.yaml keys — quoted into
 * a log line or an error message: JSON-escaped (control characters, quotes, lone surrogates),
 * also DEL, the C1 controls (0x9b starts a terminal escape sequence) and the Unicode line
 * separators, and cut short, so a hostile name can neither flood a line nor forge the next one.
 */
export const MAX_PRINTED_CHARS = 64;

export function printable(text: string, maxChars = MAX_PRINTED_CHARS): string {
  const shortened = text.length > maxChars ? `${text.slice(0, maxChars)}…` : text;
  return JSON.stringify(shortened).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
