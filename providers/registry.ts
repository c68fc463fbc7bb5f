/**
 * The provider registry: one line per provider type. Factories load lazily so a provider process
 * only loads its own SDK. Registering a type twice is a programming error.
 */
import type { ProviderFactory } from "./types.ts";

type Loader = () => Promise<ProviderFactory>;

const loaders = new Map<string, Loader>();

export function registerProvider(type: string, loader: Loader): void {
  if (loaders.has(type)) throw new Error(`provider type "${type}" registered twice`);
  loaders.set(type, loader);
}

registerProvider("file", () => import("./file/index.ts").then((m) => m.fileProvider));
registerProvider("aws", () => import("./aws/index.ts").then((m) => m.awsProvider));
registerProvider("vault", () => import("./vault/index.ts").then((m) => m.vaultProvider));
registerProvider("azure", () => import("./azure/index.ts").then((m) => m.azureProvider));

export function providerTypes(): string[] {
  return [...loaders.keys()];
}

export async function loadProvider(type: string): Promise<ProviderFactory | undefined> {
  const loader = loaders.get(type);
  return loader ? loader() : undefined;
}
