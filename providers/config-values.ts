/**
 * Building blocks for the valibot schemas of a provider's `config` and `auth.params` (in its
 * descriptor). Values arrive as strings (YAML scalars and `${VAR}` expansions alike); each block
 * checks one and turns it into what the provider uses. Messages never echo the value: it may have
 * come from the environment and be a credential.
 */
import * as v from "valibot";

export type ValueResult<T> = { value: T } | { problem: string };

/** A string value checked and converted by `parse`. */
export function configValue<T>(parse: (raw: string) => ValueResult<T>) {
  return v.pipe(
    v.string(),
    v.rawTransform<string, T>(({ dataset, addIssue, NEVER }) => {
      const result = parse(dataset.value);
      if ("problem" in result) {
        addIssue({ message: result.problem });
        return NEVER;
      }
      return result.value;
    }),
  );
}

/** A URL whose parsed form `problem` accepts (returns undefined); `notUrl` when it does not parse. */
export function urlValue(notUrl: string, problem: (url: URL) => string | undefined) {
  return configValue<URL>((raw) => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return { problem: notUrl };
    }
    const wrong = problem(url);
    return wrong ? { problem: wrong } : { value: url };
  });
}

/** "true"/"false" (and, where `lenient`, any case, "1"/"0" and empty for false). */
export function booleanValue(lenient = false) {
  return configValue<boolean>((raw) => {
    const value = lenient ? raw.trim().toLowerCase() : raw;
    if (value === "true" || (lenient && value === "1")) return { value: true };
    if (value === "false" || (lenient && (value === "0" || value === ""))) return { value: false };
    return { problem: 'must be "true" or "false"' };
  });
}

/** A whole number from `min` to `max`. */
export function integerValue(min: number, max: number) {
  return configValue<number>((raw) => {
    const n = raw.trim() === "" ? Number.NaN : Number(raw);
    return Number.isInteger(n) && n >= min && n <= max ? { value: n } : { problem: `must be an integer from ${min} to ${max}` };
  });
}

/** One of a few spellings. */
export function oneOfValue<const T extends string>(choices: readonly T[]) {
  return configValue<T>((raw) =>
    (choices as readonly string[]).includes(raw) ? { value: raw as T } : { problem: `must be ${choices.map((c) => `"${c}"`).join(" or ")}` },
  );
}
