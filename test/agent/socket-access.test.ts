/** Who may call what on the agent's sockets: the decision table of socket-access.ts. */
import { describe, expect, test } from "bun:test";
import { ROUTES } from "../../src/api/contract.ts";
import { isPluginPath, mayCall, pluginCallSubject, refusalMessage } from "../../src/agent/socket-access.ts";

const AGENT = 1000;
const MEMBER = 4243;

describe("mayCall", () => {
  test("the plugin protocol and placing a value: root and the agent's own uid only (rootless dockerd); a member or an unknown uid never", () => {
    for (const access of ["dockerd", "place"] as const) {
      expect(mayCall(access, 0, AGENT)).toBe(true);
      expect(mayCall(access, AGENT, AGENT)).toBe(true);
      expect(mayCall(access, MEMBER, AGENT)).toBe(false);
      expect(mayCall(access, undefined, AGENT)).toBe(false);
    }
  });

  test("reads and triggers: every caller the socket's mode let in", () => {
    for (const access of ["read", "trigger"] as const) {
      for (const uid of [0, AGENT, MEMBER, undefined]) expect(mayCall(access, uid, AGENT)).toBe(true);
    }
  });

  test("the contract: status, ls, plan read; sync and rotate trigger; inject places a value", () => {
    expect(Object.fromEntries(Object.entries(ROUTES).map(([name, r]) => [name, r.access]))).toEqual({
      status: "read",
      containers: "read",
      plan: "read",
      sync: "trigger",
      rotate: "trigger",
      inject: "place",
    });
  });
});

describe("plugin calls", () => {
  test("/Plugin.* and /VolumeDriver.* are the plugin protocol; /v1 and /metrics are not", () => {
    expect(["/Plugin.Activate", "/VolumeDriver.Create", "/VolumeDriver.Mount"].every(isPluginPath)).toBe(true);
    expect(["/v1/status", "/metrics", "/", "/plugin.activate"].some(isPluginPath)).toBe(false);
  });

  test("the audit names the volume and its option names, never an option's value", () => {
    expect(pluginCallSubject('{"Name":"steal","Opts":{"secrets":"prod_db,payments_key","uid":"4243"}}')).toEqual({ volume: "steal", options: ["secrets", "uid"] });
    expect(pluginCallSubject('{"Name":"v","ID":"abc"}')).toEqual({ volume: "v" });
    for (const junk of ["", "nope", "null", "[1]", '{"Name":42,"Opts":"x"}']) expect(pluginCallSubject(junk)).toEqual({});
    const many = pluginCallSubject(JSON.stringify({ Name: "x".repeat(1000), Opts: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`o${i}`, "v"])) }));
    expect(many.volume).toHaveLength(128);
    expect(many.options).toHaveLength(32);
  });

  test("a refusal names the call and what it needs, in one line", () => {
    expect(refusalMessage("POST", "/VolumeDriver.Mount", "dockerd", MEMBER)).toBe(
      "POST /VolumeDriver.Mount is the Docker plugin protocol: only dockerd may call it (root or the agent's own uid; caller uid 4243)",
    );
    expect(refusalMessage("POST", "/v1/inject", "place", undefined)).toBe("POST /v1/inject places a value: it needs root or the agent's own uid (caller uid unknown)");
  });
});
