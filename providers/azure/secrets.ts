/**
 * Key Vault names and values. Names: Key Vault allows 1-127 alphanumerics and dashes, so `_` is
 * replaced by `-` exactly as the Go DSO does. Values: a JSON object gives its keys, anything else
 * is the single key `value`.
 */
import type { SecretValue } from "../../src/rpc/protocol.ts";
import { jsonObjectKeys } from "../json-keys.ts";

const KEY_VAULT_NAME = /^[0-9A-Za-z-]{1,127}$/;
/** Version ids are 32 hex characters; accept any alphanumeric id so the service decides. */
const KEY_VAULT_VERSION = /^[0-9A-Za-z]{1,64}$/;
/** Content type Key Vault uses for a certificate's secret: the value is base64 of the PFX. */
const PKCS12_CONTENT_TYPE = "application/x-pkcs12";

/** The Key Vault name for a DSO secret name, or undefined when it cannot be one. */
export function keyVaultName(name: string): string | undefined {
  const mapped = name.replaceAll("_", "-");
  return KEY_VAULT_NAME.test(mapped) ? mapped : undefined;
}

export function isValidVersion(version: string): boolean {
  return KEY_VAULT_VERSION.test(version);
}

function isBase64(text: string): boolean {
  return text.length > 0 && text.length % 4 === 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(text);
}

/**
 * Key Vault stores only strings. The one documented binary convention is a certificate's secret
 * (content type application/x-pkcs12, base64 of the PFX): it is delivered as binary. Any other
 * content type, including application/octet-stream, has no documented encoding and stays text.
 */
export function secretValue(text: string, contentType: string | undefined): SecretValue {
  if (contentType?.toLowerCase() === PKCS12_CONTENT_TYPE && isBase64(text)) {
    return { data: { value: text }, encoding: "base64" };
  }
  return { data: jsonObjectKeys(text) ?? { value: text }, encoding: "utf8" };
}
