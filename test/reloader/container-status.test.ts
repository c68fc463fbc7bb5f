/**
 * The `dso ls` book across a rolling replacement (issue 19): the replacement's view survives the
 * old container's destroy event and a wave listed before the replacement existed.
 */
import { describe, expect, test } from "bun:test";
import { ContainerStatusBook, REPLACED_KEPT_MS } from "../../src/reloader/container-status.ts";

describe("the container book across a rolling replacement", () => {
  test("the replacement keeps the view even when the old one was forgotten first (destroy event)", () => {
    const book = new ContainerStatusBook();
    const view = book.begin("old", "web", "rolling", ["token"]);
    book.forget("old");
    book.moved("old", "new", view);
    expect(book.list().map((v) => [v.id, v.name])).toEqual([["new", "web"]]);
    expect(book.replacement("old")).toBe("new");
  });

  test("a wave listed before the replacement keeps its view; a later pass without either drops it", () => {
    const book = new ContainerStatusBook();
    const view = book.begin("old", "web", "rolling", ["token"]);
    book.moved("old", "new", view);
    book.retain(new Set(["old"]));
    expect(book.get("new")).toBeDefined();
    book.retain(new Set(["other"]));
    expect(book.get("new")).toBeUndefined();
  });

  test("a replaced id is remembered for a while, then forgotten", () => {
    const book = new ContainerStatusBook();
    book.moved("a", "b", book.begin("a", "web", "rolling", []), 0);
    book.moved("c", "d", book.begin("c", "api", "rolling", []), REPLACED_KEPT_MS + 1);
    expect(book.replacement("a")).toBeUndefined();
    expect(book.replacement("c")).toBe("d");
  });
});
