/** Small helpers shared by the spec files. */
import { createHash } from "node:crypto"

export const uniq = (prefix: string) => `${prefix}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`

export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

/** Reads a stream from `offset` to the tail, following Stream-Next-Offset. */
export async function readAll(url: string, offset = "-1"): Promise<{ body: Uint8Array; pages: number; next: string }> {
  const parts: Array<Uint8Array> = []
  for (let pages = 1; pages < 10_000; pages++) {
    const r = await fetch(`${url}?offset=${encodeURIComponent(offset)}`)
    if (r.status !== 200) throw new Error(`read at ${offset}: ${r.status} ${await r.text()}`)
    parts.push(new Uint8Array(await r.arrayBuffer()))
    offset = r.headers.get("stream-next-offset")!
    if (r.headers.get("stream-up-to-date") === "true") {
      return { body: Buffer.concat(parts), pages, next: offset }
    }
  }
  throw new Error("never reached the tail")
}

/** Polls `check` every 50 ms until it returns true or `timeoutMs` passes. */
export async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`condition not met within ${timeoutMs} ms`)
}

/** The test-only stats route of a stream's object. */
export interface Stats {
  chunkRows: number
  alarm: number | null
  parked: number
  sseConnections: number
  refs: number
  outbox: number
  exists: boolean
  softDeleted: boolean
  wasmMemoryBytes: number
  requests: number
  producerRows: number
  readers: number
  appendBytesReserved: number
  sockets: number
  constructed: number
}

export async function stats(base: string, name: string): Promise<Stats> {
  const r = await fetch(`${base}/__test/stream/${name}`)
  if (r.status !== 200) throw new Error(`stats: ${r.status}`)
  return (await r.json()) as Stats
}
