import { describe, expect, test } from "bun:test";
import { withProgress } from "../../src/cli/progress.ts";
import { formatTable, wrap } from "../../src/cli/table.ts";
import { colorEnabled, outputWidth, paint, tableWidth } from "../../src/cli/terminal.ts";

describe("formatTable", () => {
  test("a table that fits is aligned and left alone", () => {
    expect(formatTable(["A", "BB"], [["x", "y"], ["long", "z"]], { width: 80 })).toBe("A     BB\nx     y\nlong  z");
  });

  test("a wide table is fitted to the width: narrow columns cut with …, the last column wrapped", () => {
    const rows = [["a-very-long-container-name-indeed", "0123456789ab", "word ".repeat(30).trim()]];
    const out = formatTable(["CONTAINER", "ID", "ERROR"], rows, { width: 60 });
    const lines = out.split("\n");
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(60);
    expect(lines[1]).toContain("…");
    expect(lines.slice(1).join(" ").replace(/\s+/g, " ")).toContain("word ".repeat(30).trim());
    const indent = lines[0]!.indexOf("ERROR");
    expect(lines[2]!.slice(0, indent).trim()).toBe("");
  });

  test("the first column (the name) and short middle columns stay whole while a detail column can give way", () => {
    const plan = formatTable(
      ["CONTAINER", "ID", "FILES", "STRATEGY", "ACTION"],
      [["e2e-restart-11578", "17ba3b047e68", "/run/secrets (procfs)", "restart", "update files, then restart"]],
      { width: 80 },
    );
    expect(plan.split("\n")[1]).toMatch(/^e2e-restart-11578  17ba3b047e68  \/run\/sec…\s+restart\s+update files, then restart$/);
    const hooks = formatTable(["WEBHOOK", "STATUS", "ANSWER", "EVENTS"], [["#0 (127.0.0.1:35071)", "ok", "HTTP 204", "rotation_succeeded,rotation_failed,delivery_failed,provider_unavailable"]], { width: 80 });
    expect(hooks.split("\n")[1]).toStartWith("#0 (127.0.0.1:35071)  ok      HTTP 204  rotation_succeeded,rotation_failed,");
    for (const line of hooks.split("\n")) expect(line.length).toBeLessThanOrEqual(80);
  });

  test("wrap breaks words longer than the width", () => {
    expect(wrap("abcdefghij kl", 4)).toEqual(["abcd", "efgh", "ij", "kl"]);
    expect(wrap("a,bb,ccc dd", 5)).toEqual(["a,bb,", "ccc", "dd"]);
  });
});

describe("terminal", () => {
  test("colour only on a terminal, never with NO_COLOR or TERM=dumb", () => {
    expect(colorEnabled({ isTTY: true }, {})).toBe(true);
    expect(colorEnabled({ isTTY: false }, {})).toBe(false);
    expect(colorEnabled({ isTTY: true }, { NO_COLOR: "1" })).toBe(false);
    expect(colorEnabled({ isTTY: true }, { NO_COLOR: "" })).toBe(true);
    expect(colorEnabled({ isTTY: true }, { TERM: "dumb" })).toBe(false);
    expect(paint("x", "red", false)).toBe("x");
  });

  test("80 columns when piped, the terminal's width otherwise", () => {
    expect(outputWidth({ isTTY: false, columns: 200 })).toBe(80);
    expect(outputWidth({ isTTY: true, columns: 132 })).toBe(132);
  });

  test("tables: COLUMNS first, then the terminal; unlimited when piped", () => {
    expect(tableWidth({ isTTY: false, columns: 200 }, {})).toBe(Number.POSITIVE_INFINITY);
    expect(tableWidth({ isTTY: false }, { COLUMNS: "100" })).toBe(100);
    expect(tableWidth({ isTTY: true, columns: 132 }, { COLUMNS: "90" })).toBe(90);
    expect(tableWidth({ isTTY: true, columns: 132 }, { COLUMNS: "junk" })).toBe(132);
    expect(tableWidth({ isTTY: true }, {})).toBe(80);
  });
});

describe("progress", () => {
  const stream = (isTTY: boolean) => {
    const written: string[] = [];
    return { isTTY, written, write: (t: string) => written.push(t) };
  };

  test("draws on a terminal while the work runs and erases itself", async () => {
    const tty = stream(true);
    expect(await withProgress("rotating db", Bun.sleep(700).then(() => 42), tty)).toBe(42);
    expect(tty.written.some((t) => t.includes("rotating db"))).toBe(true);
    expect(tty.written.at(-1)).toBe("\r\x1b[K");
  });

  test("is silent when piped, and for quick work", async () => {
    const piped = stream(false);
    await withProgress("rotating db", Bun.sleep(500), piped);
    expect(piped.written).toEqual([]);
    const quick = stream(true);
    await withProgress("x", Bun.sleep(10), quick);
    expect(quick.written).toEqual([]);
  });

  test("passes a failure through", async () => {
    await expect(withProgress("x", Promise.reject(new Error("boom")), stream(true))).rejects.toThrow("boom");
  });
});
