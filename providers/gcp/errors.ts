/** The gcp provider's one error kind beyond ProviderError. */
import { ProviderError } from "../errors.ts";

/** A failure of the service, the token or the path to them (not of one secret): fails the whole call. */
export class CallLevelError extends ProviderError {}
