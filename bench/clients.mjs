// `make bench`, client part: the idempotent producers of the Rust client
// (`ds append URL -`, which batches through IdempotentProducer) and of the
// official TypeScript client, appending the same lines to this worker under
// bare workerd, in the same run. Prints a table and writes
// .test-results/bench-clients.json. `--smoke`: a few hundred lines.
import { spawn, execFileSync } from "node:child_process"
import { writeFileSync, mkdirSync } from "node:fs"
import path from "node:path"
import { DurableStream, IdempotentProducer } from "@durable-streams/client"
import { ROOT } from "../miniflare-tests/mf.mjs"
import { ours } from "./servers.mjs"

const smoke = process.argv.includes("--smoke")
const LINES = smoke ? 500 : 50_000
const line = (i) => `${String(i).padStart(8, "0")} ${"x".repeat(90)}\n`
const input = Array.from({ length: LINES }, (_, i) => line(i)).join("")

execFileSync("cargo", ["build", "--locked", "-q", "-p", "durable-streams-client", "--bin", "ds"], { cwd: ROOT, stdio: "inherit" })
const ds = path.join(ROOT, "target/debug/ds")

async function create(base, name) {
  const url = `${base}/v1/stream/${name}`
  const r = await fetch(url, { method: "PUT", headers: { "content-type": "text/plain" } })
  if (r.status !== 201) throw new Error(`create: ${r.status}`)
  return url
}

async function check(url) {
  const r = await fetch(`${url}?offset=-1`)
  let text = await r.text()
  let next = r.headers.get("stream-next-offset")
  let upToDate = r.headers.get("stream-up-to-date") === "true"
  while (!upToDate) {
    const more = await fetch(`${url}?offset=${next}`)
    text += await more.text()
    next = more.headers.get("stream-next-offset")
    upToDate = more.headers.get("stream-up-to-date") === "true"
  }
  if (text !== input) throw new Error(`${url}: the stream does not hold exactly the input`)
}

async function rust(base) {
  const url = await create(base, `bench-rust-${Date.now()}`)
  const t0 = performance.now()
  await new Promise((resolve, reject) => {
    const child = spawn(ds, ["append", url, "-"], { stdio: ["pipe", "ignore", "inherit"] })
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`ds exited ${code}`))))
    child.stdin.end(input)
  })
  const s = (performance.now() - t0) / 1000
  await check(url)
  return { lines_per_s: LINES / s, seconds: s }
}

async function typescript(base) {
  const url = await create(base, `bench-ts-${Date.now()}`)
  const stream = new DurableStream({ url, contentType: "text/plain" })
  const producer = new IdempotentProducer(stream, `bench-${Date.now()}`, { lingerMs: 5, maxInFlight: 4 })
  const t0 = performance.now()
  for (let i = 0; i < LINES; i++) producer.append(line(i))
  await producer.flush()
  const s = (performance.now() - t0) / 1000
  await producer.close?.()
  await check(url)
  return { lines_per_s: LINES / s, seconds: s }
}

const srv = await ours()
const results = { date: new Date().toISOString(), lines: LINES, line_bytes: line(0).length, smoke }
try {
  results.rust = await rust(srv.base)
  results.typescript = await typescript(srv.base)
} finally {
  await srv.stop()
}
const fmt = (n) => (n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(1))
console.log(`\nidempotent producers, ${LINES} lines of ${results.line_bytes} bytes into one text stream, this worker under workerd (${results.date}):`)
console.log(`| client | lines/s | seconds |`)
console.log(`| --- | --- | --- |`)
console.log(`| Rust (ds append, IdempotentProducer) | ${fmt(results.rust.lines_per_s)} | ${results.rust.seconds.toFixed(2)} |`)
console.log(`| TypeScript (@durable-streams/client IdempotentProducer) | ${fmt(results.typescript.lines_per_s)} | ${results.typescript.seconds.toFixed(2)} |`)
mkdirSync(path.join(ROOT, ".test-results"), { recursive: true })
writeFileSync(path.join(ROOT, ".test-results/bench-clients.json"), JSON.stringify(results, null, 2))
if (!(results.rust.lines_per_s > 0 && results.typescript.lines_per_s > 0)) process.exit(1)
