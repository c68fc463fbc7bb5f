// The one change path (issue 20): every detector publishes a typed change with its real cause;
// every target kind subscribes; changes published before the Docker side exists are kept.
import { expect, test } from "bun:test";
import { ChangePath, type SecretChange } from "../../src/watcher/change-path.ts";

test("changes published before open() are kept per cause and handed to every subscriber when it opens", () => {
  const path = new ChangePath();
  path.publish({ names: ["db", "api"], cause: "poll" });
  path.publish({ names: ["db"], cause: "fetch" });
  path.publish({ names: ["api"], cause: "poll" });
  expect(path.buffered).toBe(2);
  const seen: SecretChange[] = [];
  const services: SecretChange[] = [];
  path.subscribe((c) => seen.push(c));
  path.subscribe((c) => services.push(c));
  expect(seen).toEqual([]);
  path.open();
  const both: SecretChange[] = [
    { names: ["db", "api"], cause: "poll" },
    { names: ["db"], cause: "fetch" },
  ];
  expect(seen).toEqual(both);
  expect(services).toEqual(both);
  expect(path.buffered).toBe(0);
  path.publish({ names: ["tls"], cause: "event" });
  expect(seen.at(-1)).toEqual({ names: ["tls"], cause: "event" });
});

test("every subscriber sees every change once, with its cause; unsubscribed ones see no more", () => {
  const path = new ChangePath();
  path.open();
  const waves: string[] = [];
  const services: string[] = [];
  const off = path.subscribe((c) => waves.push(`${c.cause}:${c.names.join(",")}`));
  path.subscribe((c) => services.push(`${c.cause}:${c.names.join(",")}`));
  path.publish({ names: ["db"], cause: "event" });
  path.publish({ names: ["tls"], cause: "lease" });
  off();
  path.publish({ names: ["db"], cause: "webhook" });
  expect(waves).toEqual(["event:db", "lease:tls"]);
  expect(services).toEqual(["event:db", "lease:tls", "webhook:db"]);
});

test("an empty change is dropped; a subscriber that throws does not stop the others", () => {
  const path = new ChangePath();
  path.open();
  const seen: string[] = [];
  path.subscribe(() => {
    throw new Error("boom");
  });
  path.subscribe((c) => seen.push(c.cause));
  path.publish({ names: [], cause: "poll" });
  path.publish({ names: ["db"], cause: "lease" });
  expect(seen).toEqual(["lease"]);
  expect(path.buffered).toBe(0);
});
