const src = await Bun.file("test/delivery/helpers.ts").text();
const m = /const READER_SCRIPT = `([\s\S]*?)`;/.exec(src)![1]!.replaceAll("\\$", "$");
const c = m.replace('end=$(( $(date +%s) + $2 ));', "left=$2;").replace('while [ "$(date +%s)" -lt "$end" ]; do', 'while [ "$left" -gt 0 ]; do\n  left=$((left - 1))');
console.log(c.split("\n").slice(0, 4).join("\n"));
