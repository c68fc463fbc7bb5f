/**
 * The provider registry: one line per provider type (its descriptor). Descriptors load no SDK, so
 * the agent side (config checks, the child's environment) reads them freely; a provider process
 * loads only its own implementation. Registering a type twice is a programming error.
 */
import { awsDescriptor } from "./aws/descriptor.ts";
import { azureDescriptor } from "./azure/descriptor.ts";
import { fileDescriptor } from "./file/descriptor.ts";
import { gcpDescriptor } from "./gcp/descriptor.ts";
import type { ProviderDescriptor, ProviderFactory } from "./types.ts";
import { vaultDescriptor } from "./vault/descriptor.ts";

const descriptors = new Map<string, ProviderDescriptor>();

export function registerProvider(descriptor: ProviderDescriptor): void {
  if (descriptors.has(descriptor.type)) throw new Error(`provider type "${descriptor.type}" registered twice`);
  descriptors.set(descriptor.type, descriptor);
}

registerProvider(awsDescriptor);
registerProvider(azureDescriptor);
registerProvider(vaultDescriptor);
registerProvider(fileDescriptor);
registerProvider(gcpDescriptor);

export function providerTypes(): string[] {
  return [...descriptors.keys()];
}

export function descriptorOf(type: string): ProviderDescriptor | undefined {
  return descriptors.get(type);
}

export async function loadProvider(type: string): Promise<ProviderFactory | undefined> {
  return descriptors.get(type)?.load();
}
