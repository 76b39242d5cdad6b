/**
 * Reliability under load: concurrent idempotent producers with duplicated and
 * reordered sends (PROTOCOL.md §5.2.1), expiry under load (§5.1), and memory
 * with large concurrent reads and writes. Every loop is bounded in count and time.
 */
import { describe, expect, inject, test } from "vitest"
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { start } from "./mf.mjs"
import { readAll, stats, uniq, until } from "./helpers"

const base = inject("baseUrl")
const MiB = 1024 * 1024

function shuffle<T>(xs: Array<T>): Array<T> {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[xs[i], xs[j]] = [xs[j]!, xs[i]!]
  }
  return xs
}

describe("reliability", () => {
  test("32 idempotent producers with duplicated and reordered sends: every message once, in order", { timeout: 120_000 }, async () => {
    const url = `${base}/v1/stream/${uniq("producers")}`
    await fetch(url, { method: "PUT", headers: { "content-type": "text/plain" } })
    const PRODUCERS = 32
    const MESSAGES = 12
    const send = (p: number, seq: number) =>
      fetch(url, {
        method: "POST",
        headers: { "content-type": "text/plain", "producer-id": `p${p}`, "producer-epoch": "0", "producer-seq": String(seq) },
        body: `p${p}:${seq};`,
      }).then((r) => r.status)
    const producer = async (p: number) => {
      let acked = 0 // seqs below this are acknowledged
      for (let round = 0; acked < MESSAGES && round < 400; round++) {
        // A window of the next seqs, some sent twice, all in random order, concurrently.
        const window = Array.from({ length: Math.min(4, MESSAGES - acked) }, (_, i) => acked + i)
        const sends = shuffle([...window, ...window.filter(() => Math.random() < 0.5), ...(acked > 0 ? [acked - 1] : [])])
        const statuses = await Promise.all(sends.map((seq) => send(p, seq).then((s) => [seq, s] as const)))
        for (const [seq, status] of statuses) {
          expect([200, 204, 409]).toContain(status)
          if ((status === 200 || status === 204) && seq === acked) acked++
        }
        // Later seqs of the window may have been accepted out of a gap only after
        // their predecessor; re-sending them is how a producer learns that.
      }
      expect(acked).toBe(MESSAGES)
    }
    await Promise.all(Array.from({ length: PRODUCERS }, (_, p) => producer(p)))
    const { body } = await readAll(url)
    const tokens = new TextDecoder().decode(body).split(";").filter(Boolean)
    expect(tokens.length).toBe(PRODUCERS * MESSAGES)
    const next = new Map<string, number>()
    for (const t of tokens) {
      const [p, seq] = t.split(":")
      expect(Number(seq)).toBe(next.get(p!) ?? 0)
      next.set(p!, Number(seq) + 1)
    }
  })

  test("streams with 1 s TTLs under a read loop: expired ones answer 404 and the alarm frees their rows", { timeout: 60_000 }, async () => {
    const names = Array.from({ length: 30 }, () => uniq("ttl-load"))
    for (const n of names) {
      const r = await fetch(`${base}/v1/stream/${n}`, { method: "PUT", headers: { "content-type": "text/plain", "stream-ttl": "1" }, body: "data" })
      expect(r.status).toBe(201)
    }
    const kept = names.slice(0, 10)
    const idle = names.slice(10)
    // Read the first ten in a loop for 2.5 s: reads renew their TTL.
    const until2500 = Date.now() + 2500
    while (Date.now() < until2500) {
      for (const n of kept) expect((await fetch(`${base}/v1/stream/${n}`)).status).toBe(200)
      await new Promise((r) => setTimeout(r, 100))
    }
    // The idle ones expired meanwhile, and their alarms freed their rows with no request.
    for (const n of idle) expect((await stats(base, n)).chunkRows).toBe(0)
    // Once the loop stops, the rest expire too.
    await until(async () => {
      for (const n of kept) if ((await stats(base, n)).chunkRows !== 0) return false
      return true
    }, 10_000)
    for (const n of names) expect((await fetch(`${base}/v1/stream/${n}`)).status).toBe(404)
  })

  test("4 readers of a 50 MB stream plus 16 writers stay well under the 128 MB isolate limit", { timeout: 180_000 }, async () => {
    const { mf, base: b } = await start({ vars: {} })
    try {
      const name = uniq("mem")
      const url = `${b}/v1/stream/${name}`
      await fetch(url, { method: "PUT", headers: { "content-type": "application/octet-stream" } })
      const block = new Uint8Array(MiB).map((_, i) => i & 0xff)
      for (let i = 0; i < 50; i++) {
        const r = await fetch(url, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: block })
        expect(r.status).toBe(204)
      }
      const before = await stats(b, name)
      let writing = true
      const writers = Array.from({ length: 16 }, async (_, w) => {
        let n = 0
        while (writing && n < 2000) {
          const r = await fetch(url, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: `w${w}-${n++};` })
          expect(r.status).toBe(204)
        }
        return n
      })
      const readers = Array.from({ length: 4 }, () => readAll(url))
      const read = await Promise.all(readers)
      writing = false
      const written = await Promise.all(writers)
      for (const r of read) expect(r.body.length).toBeGreaterThanOrEqual(50 * MiB)
      const after = await stats(b, name)
      const pid = execFileSync("ps", ["-eo", "pid=,ppid=,comm="], { encoding: "utf8" })
        .split("\n")
        .map((l) => l.trim().split(/\s+/))
        .find(([, ppid, comm]) => Number(ppid) === process.pid && comm === "workerd")?.[0]
      const hwm = pid ? Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024 : 0
      console.log(
        `memory: wasm heap ${(before.wasmMemoryBytes / MiB).toFixed(1)} -> ${(after.wasmMemoryBytes / MiB).toFixed(1)} MiB; ` +
          `workerd peak RSS ${(hwm / MiB).toFixed(0)} MiB; ${written.reduce((a, b) => a + b, 0)} concurrent appends`
      )
      expect(after.wasmMemoryBytes).toBeLessThan(64 * MiB)
    } finally {
      await mf.dispose()
    }
  })
})
