import pkg from "../package.json" with { type: "json" };

// Replaced at build time by build.ts (`define`); in development they are undeclared.
declare const DSO_BUILD_VERSION: string | undefined;
declare const DSO_BUILD_COMMIT: string | undefined;
declare const DSO_BUILD_TARGET: string | undefined;

export interface VersionInfo {
  version: string;
  commit: string;
  target: string;
  bun: string;
  compiled: boolean;
}

export function versionInfo(): VersionInfo {
  const compiled = typeof DSO_BUILD_VERSION !== "undefined";
  return {
    version: compiled ? DSO_BUILD_VERSION! : `${pkg.version}-dev`,
    commit: typeof DSO_BUILD_COMMIT !== "undefined" ? DSO_BUILD_COMMIT! : "unknown",
    target: typeof DSO_BUILD_TARGET !== "undefined" ? DSO_BUILD_TARGET! : `${process.platform}-${process.arch}`,
    bun: Bun.version,
    compiled,
  };
}

/** The one-line form printed by `dso version` and `dso --version`. */
export function formatVersionLine(info: VersionInfo): string {
  return `dso ${info.version} (commit ${info.commit}, ${info.target}, bun ${info.bun})`;
}
