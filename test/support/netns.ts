/**
 * Two network namespaces joined by a veth pair: two "hosts" on one machine, for a multi-node
 * Swarm. Addresses are a /30 in 10.231.0.0/16, assigned only inside the two namespaces; the
 * host's interfaces, routes and firewall are never touched. Names carry the test process's pid,
 * so a run killed hard leaves namespaces that the next run removes.
 */
export interface NetnsHost {
  /** `ip netns` name, e.g. dso-1234-a */
  netns: string;
  /** The host's address on the veth link, e.g. 10.231.0.1 */
  address: string;
}

export interface NetnsPair {
  a: NetnsHost;
  b: NetnsHost;
  /** Deletes both namespaces (and so the veth pair); safe to call twice. */
  remove(): void;
}

const NAME_PREFIX = "dso-";
const NAME_PATTERN = /^dso-(\d+)-[ab]$/;
const ADDRESS_A = "10.231.0.1";
const ADDRESS_B = "10.231.0.2";
const PREFIX_LENGTH = 30;

function ip(args: string[]): void {
  const run = Bun.spawnSync(["ip", ...args], { stdout: "ignore", stderr: "pipe" });
  if (!run.success) throw new Error(`ip ${args.join(" ")} failed: ${run.stderr.toString().trim()}`);
}

function netnsNames(): string[] {
  const run = Bun.spawnSync(["ip", "netns", "list"], { stdout: "pipe", stderr: "ignore" });
  return run.stdout
    .toString()
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter(Boolean);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Namespaces of test processes that are gone (their daemons died with them or were SIGTERMed). */
function removeStale(): void {
  for (const name of netnsNames()) {
    const pid = Number(NAME_PATTERN.exec(name)?.[1] ?? 0);
    if (pid > 0 && pid !== process.pid && !alive(pid)) Bun.spawnSync(["ip", "netns", "del", name], { stdout: "ignore", stderr: "ignore" });
  }
}

export function createNetnsPair(): NetnsPair {
  removeStale();
  const a = `${NAME_PREFIX}${process.pid}-a`;
  const b = `${NAME_PREFIX}${process.pid}-b`;
  // Interface names are at most 15 bytes; they live only inside the namespaces once moved.
  const vethA = `dso${process.pid}a`.slice(-15);
  const vethB = `dso${process.pid}b`.slice(-15);
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    process.removeListener("exit", remove);
    for (const name of [a, b]) Bun.spawnSync(["ip", "netns", "del", name], { stdout: "ignore", stderr: "ignore" });
  };
  process.once("exit", remove);
  try {
    ip(["netns", "add", a]);
    ip(["netns", "add", b]);
    // Created in the host namespace and moved out at once: it never gets an address there.
    ip(["link", "add", vethA, "type", "veth", "peer", "name", vethB]);
    ip(["link", "set", vethA, "netns", a]);
    ip(["link", "set", vethB, "netns", b]);
    for (const [ns, dev, address] of [
      [a, vethA, ADDRESS_A],
      [b, vethB, ADDRESS_B],
    ] as const) {
      ip(["-n", ns, "addr", "add", `${address}/${PREFIX_LENGTH}`, "dev", dev]);
      ip(["-n", ns, "link", "set", "lo", "up"]);
      ip(["-n", ns, "link", "set", dev, "up"]);
    }
  } catch (error) {
    Bun.spawnSync(["ip", "link", "del", vethA], { stdout: "ignore", stderr: "ignore" });
    remove();
    throw error;
  }
  return { a: { netns: a, address: ADDRESS_A }, b: { netns: b, address: ADDRESS_B }, remove };
}
