/**
 * Crash safety: 16 concurrent writers (half idempotent producers that retry
 * with the same tuple) while the whole runtime is SIGKILLed mid-load, five
 * times; after each restart on the same storage every acknowledged append is
 * present exactly once and in order, no chunk is torn, and producers resume
 * (the last acknowledged tuple → 204, the next seq → 200). PROTOCOL.md §4
 * durability, §5.2.1 atomicity. Bounded: 5 kills, each after < 1.5 s of load.
 */
import { afterAll, describe, expect, test } from "vitest"
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { ROOT } from "./mf.mjs"
import { readAll } from "./helpers"

const dir = mkdtempSync(path.join(tmpdir(), "ds-crash-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const STREAMS = 4
const WRITERS = 16
const KILLS = 5

function startServer(vars: Record<string, string> = {}): Promise<{ child: ChildProcess; base: string }> {
  const child = spawn(process.execPath, [path.join(ROOT, "miniflare-tests/crash-server.mjs"), dir, JSON.stringify(vars)], {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "inherit"],
  })
  return new Promise((resolve, reject) => {
    let out = ""
    const timer = setTimeout(() => reject(new Error("server did not start")), 30_000)
    child.stdout!.on("data", (d) => {
      out += d
      const line = out.split("\n")[0]
      if (out.includes("\n") && line) {
        clearTimeout(timer)
        resolve({ child, base: line.trim() })
      }
    })
    child.on("exit", (code) => reject(new Error(`server exited: ${code}`)))
  })
}

function kill(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.removeAllListeners("exit")
    child.on("exit", () => resolve())
    process.kill(-child.pid!, "SIGKILL") // node and its workerd, at once
  })
}

interface Writer {
  id: number
  stream: number
  producer: boolean
  next: number // next seq to send
  acked: Set<number>
  maybe: Set<number> // sent, outcome unknown (plain writers only)
  pending: number | null // producer: a tuple sent but not acknowledged
}

const body = (w: Writer, seq: number) => `w${w.id}:${seq};`

async function post(base: string, w: Writer, seq: number): Promise<number> {
  const headers: Record<string, string> = { "content-type": "text/plain" }
  if (w.producer) Object.assign(headers, { "producer-id": `w${w.id}`, "producer-epoch": "0", "producer-seq": String(seq) })
  const r = await fetch(`${base}/v1/stream/crash-${w.stream}`, { method: "POST", headers, body: body(w, seq) })
  await r.arrayBuffer()
  return r.status
}

/** Writes until `stop` says so; network errors end the run (the server died). */
async function run(base: string, w: Writer, stop: () => boolean) {
  while (!stop()) {
    const retry = w.pending !== null
    const seq = w.pending ?? w.next
    if (w.producer) w.pending = seq
    else w.maybe.add(seq)
    let status: number
    try {
      status = await post(base, w, seq)
    } catch {
      return
    }
    if (w.producer) {
      // A retry of a tuple whose answer was lost may be a duplicate; a new seq is accepted.
      if (retry) expect([200, 204], `w${w.id} retry of seq ${seq}`).toContain(status)
      else expect(status, `w${w.id} seq ${seq}`).toBe(200)
      w.pending = null
    } else {
      expect(status).toBe(204)
      w.maybe.delete(seq)
    }
    w.acked.add(seq)
    w.next = seq + 1
  }
}

async function verify(base: string, writers: Array<Writer>) {
  for (let s = 0; s < STREAMS; s++) {
    const { body: bytes } = await readAll(`${base}/v1/stream/crash-${s}`)
    const text = new TextDecoder().decode(bytes)
    expect(text === "" || text.endsWith(";"), "no torn chunk at the tail").toBe(true)
    const seen = new Map<number, Array<number>>()
    for (const token of text.split(";").filter(Boolean)) {
      const m = /^w(\d+):(\d+)$/.exec(token)
      expect(m, `a whole message, got ${JSON.stringify(token)}`).not.toBeNull()
      const list = seen.get(Number(m![1])) ?? []
      list.push(Number(m![2]))
      seen.set(Number(m![1]), list)
    }
    for (const w of writers.filter((w) => w.stream === s)) {
      const got = seen.get(w.id) ?? []
      for (let i = 1; i < got.length; i++) expect(got[i]!, `w${w.id} in order, once`).toBeGreaterThan(got[i - 1]!)
      for (const seq of w.acked) expect(got, `w${w.id} acknowledged ${seq}`).toContain(seq)
      for (const seq of got) expect(w.acked.has(seq) || w.maybe.has(seq) || w.pending === seq, `w${w.id} never sent ${seq}`).toBe(true)
      // What is stored is known from now on.
      for (const seq of got) {
        w.acked.add(seq)
        w.maybe.delete(seq)
      }
      w.maybe.clear()
      w.next = Math.max(w.next, ...got.map((x) => x + 1))
    }
  }
}

describe("crash", () => {
  test(`${KILLS} SIGKILLs mid-load lose and duplicate nothing acknowledged`, { timeout: 240_000 }, async () => {
    const writers: Array<Writer> = Array.from({ length: WRITERS }, (_, id) => ({
      id,
      stream: id % STREAMS,
      producer: id % 2 === 0,
      next: 0,
      acked: new Set(),
      maybe: new Set(),
      pending: null,
    }))
    let { child, base } = await startServer()
    for (let s = 0; s < STREAMS; s++) {
      const r = await fetch(`${base}/v1/stream/crash-${s}`, { method: "PUT", headers: { "content-type": "text/plain" } })
      expect(r.status).toBe(201)
    }
    let total = 0
    for (let round = 0; round < KILLS; round++) {
      let killed = false
      const runs = writers.map((w) => run(base, w, () => killed))
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 1200))
      killed = true
      await kill(child)
      await Promise.all(runs)
      ;({ child, base } = await startServer())
      await verify(base, writers)
      // Producers resume: the last acknowledged tuple is a duplicate, the next one is new.
      for (const w of writers.filter((w) => w.producer && w.acked.size > 0 && w.pending === null)) {
        const last = Math.max(...w.acked)
        expect(await post(base, w, last), `w${w.id} retry of ${last}`).toBe(204)
      }
      total = writers.reduce((n, w) => n + w.acked.size, 0)
    }
    await verify(base, writers)
    console.log(`crash: ${KILLS} kills, ${total} acknowledged appends verified`)
    expect(total).toBeGreaterThan(100)
    await kill(child)
  })
})

describe("a proxy job whose server is SIGKILLed mid-generation", () => {
  test("ends complete or with the interruption record, never truncated silently or duplicated", { timeout: 120_000 }, async () => {
    // The demo model at 100 ms a token: about 9 s for a whole answer.
    const vars = { PROXY_DEMO_TOKEN_MS: "100" }
    let { child, base } = await startServer(vars)
    const chat = JSON.stringify({ messages: [{ role: "user", content: "crash me" }] })
    const started = await fetch(`${base}/v1/proxy`, { method: "POST", headers: { "content-type": "application/json" }, body: chat })
    expect(started.status).toBe(201)
    const stream = new URL((await started.json()).stream).pathname
    // Kill once a few tokens are in.
    for (let i = 0; i < 400; i++) {
      const r = await fetch(`${base}${stream}?offset=-1`)
      if ((await r.json()).length >= 3) break
    }
    await kill(child)
    ;({ child, base } = await startServer(vars))
    try {
      type Msg = { type: string; text?: string; status?: string; output?: string; reason?: string }
      let messages: Msg[] = []
      const deadline = Date.now() + 60_000
      for (;;) {
        const r = await fetch(`${base}${stream}?offset=-1`)
        messages = (await r.json()) as Msg[]
        if (r.headers.get("stream-closed") === "true") break
        if (Date.now() > deadline) throw new Error("the job's stream was never closed")
        await new Promise((ok) => setTimeout(ok, 100))
      }
      const done = messages.filter((m) => m.type === "done")
      expect(done.length, "exactly one done message").toBe(1)
      expect(messages.at(-1)!.type).toBe("done")
      const text = messages.filter((m) => m.type === "delta").map((m) => m.text).join("")
      expect(done[0].output).toBe(text)
      expect(["complete", "interrupted"]).toContain(done[0].status)
      // The whole answer, from a job that runs to its end: what the crashed one kept is a prefix.
      const again = await fetch(`${base}/v1/proxy`, { method: "POST", headers: { "content-type": "application/json" }, body: chat })
      const full = new URL((await again.json()).stream).pathname
      let whole = ""
      for (let i = 0; i < 600 && !whole; i++) {
        const r = await fetch(`${base}${full}?offset=-1`)
        const m = (await r.json()) as Msg[]
        whole = m.find((x) => x.type === "done")?.output ?? ""
        if (!whole) await new Promise((ok) => setTimeout(ok, 100))
      }
      expect(whole.startsWith(text), "no token lost before the crash point, none repeated").toBe(true)
      if (done[0].status === "interrupted") expect(text.length).toBeLessThan(whole.length)
      console.log(`crash: proxy job killed after ${text.length} of ${whole.length} characters; closed as ${done[0].status}`)
    } finally {
      await kill(child)
    }
  })
})
