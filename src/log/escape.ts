/**
 * Text from outside the agent (a container's stderr, a provider child's log line, a name in a
 * label) is data: in a log line or an error message it must not move the cursor, colour or clear
 * a terminal, set its title, reorder text (bidi controls) or start a line of its own. Every such
 * character is written as a visible escape instead (`\n`, `\u001b`), as JSON would.
 */

/** C0 controls, DEL, C1 controls (U+009B is CSI on some terminals), line/paragraph separators, bidi controls. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const SHORT: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

const escapeOne = (c: string) => SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;

/** `text` with every control, separator and bidi character written as an escape. */
export function escapeControls(text: string): string {
  return text.replace(UNSAFE, escapeOne);
}

/**
 * A JSON text made safe for a terminal: JSON.stringify already escapes C0 controls, not DEL, C1,
 * U+2028/2029 or bidi controls; those become \u escapes too (still the same JSON value).
 */
export function escapeJsonLine(json: string): string {
  return json.replace(UNSAFE, escapeOne);
}
