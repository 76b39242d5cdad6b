// The physical limit under the same runtime: a Worker that forwards to a
// SQLite-backed Durable Object which does nothing (/echo/...) or writes one
// row (/insert/...) and answers 204. Same routing shape as ours.
//
// The runtime's floor for an idle live reader: a GET of /hold-*/NAME is an
// SSE response that writes nothing but a keep-alive comment every 15 s, and a
// POST of the same path sends `data: wake` to every reader of NAME.
//   /hold-worker/  the Worker holds the request (a request cannot write to
//                  another request's response, so each reader looks at an
//                  isolate-wide wake counter once a second, from its own timer)
//   /hold-object/  the Worker forwards; the Durable Object holds the request
//   /hold-bridge/  the Worker holds the request and a WebSocket to the object,
//                  which accepts it with the hibernation API (our bridge's shape)
//
// The same /hold-bridge/ is the floor for SSE fan-out: PUT answers 201, and a
// POST's body (or "wake") goes to every socket, which the Worker writes as
// one SSE data event and one control event, the shape of ours. Under
// /hold-bridge/sql/ a POST first inserts its body as one SQLite row: the
// floor of a durable server of that shape.
//
// The runtime's floor for long-poll fan-out: /poll-object/NAME is the least a
// long-poll server in a Durable Object can do. PUT answers with
// `Stream-Next-Offset: 0`; POST appends its body to a list in memory, answers
// every waiting reader and then the writer (204); GET ?offset=N answers at
// once with the entries from N on (and `Stream-Next-Offset`), or waits for
// the next POST (204 after LONG_POLL_MS). Under /poll-object/sql/ a POST
// also inserts its body as one SQLite row before it answers anyone.
const enc = new TextEncoder()
const KEEP_ALIVE_MS = 15_000
const WAKE = enc.encode("data: wake\n\n")
const LONG_POLL_MS = 20_000

/** An SSE response held open; `writers`, if given, holds its writer until the client leaves. */
function held(writers = new Set()) {
  const { readable, writable } = new TransformStream()
  const writer = writable.getWriter()
  const leave = () => {
    clearInterval(timer)
    writers.delete(writer)
  }
  const timer = setInterval(() => writer.write(enc.encode(": keep-alive\n\n")).catch(leave), KEEP_ALIVE_MS)
  writers.add(writer)
  writer.write(enc.encode(": open\n\n")).catch(leave)
  return { response: new Response(readable, { headers: { "content-type": "text/event-stream" } }), writer, leave }
}

function wakeAll(writers) {
  for (const w of writers) w.write(WAKE).catch(() => writers.delete(w))
  return new Response(null, { status: 204 })
}

export class Baseline {
  constructor(state) {
    this.state = state
    this.writers = new Set()
    /** /poll-object/: the entries appended, and the readers waiting for the next. */
    this.log = []
    this.waiting = new Set()
    this.sql = state.storage.sql
    this.sql.exec("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, data BLOB)")
  }
  async fetch(request) {
    const path = new URL(request.url).pathname
    if (path.startsWith("/hold-object/")) {
      return request.method === "POST" ? wakeAll(this.writers) : held(this.writers).response
    }
    if (path.startsWith("/poll-object/")) return this.poll(request)
    if (path.startsWith("/hold-bridge/")) {
      if (request.method === "PUT") return new Response(null, { status: 201 })
      if (request.method === "POST") {
        const message = (await request.text()) || "wake"
        if (path.startsWith("/hold-bridge/sql/")) this.sql.exec("INSERT INTO rows (data) VALUES (?)", message)
        for (const ws of this.state.getWebSockets()) ws.send(message)
        return new Response(null, { status: 204 })
      }
      const [client, server] = Object.values(new WebSocketPair())
      this.state.acceptWebSocket(server)
      return new Response(null, { status: 101, webSocket: client })
    }
    const body = await request.arrayBuffer()
    if (path.startsWith("/insert/")) {
      this.sql.exec("INSERT INTO rows (data) VALUES (?)", body)
    }
    return new Response(null, { status: 204 })
  }
  async poll(request) {
    const next = () => ({ "stream-next-offset": String(this.log.length) })
    if (request.method === "PUT") return new Response(null, { status: 201, headers: next() })
    if (request.method === "POST") {
      const entry = await request.text()
      if (new URL(request.url).pathname.startsWith("/poll-object/sql/")) this.sql.exec("INSERT INTO rows (data) VALUES (?)", entry)
      this.log.push(entry)
      for (const wake of this.waiting) wake()
      this.waiting.clear()
      return new Response(null, { status: 204, headers: next() })
    }
    const at = Number(new URL(request.url).searchParams.get("offset")) || 0
    if (at >= this.log.length) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, LONG_POLL_MS)
        this.waiting.add(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
    if (at >= this.log.length) return new Response(null, { status: 204, headers: { "stream-next-offset": String(at) } })
    return new Response(this.log.slice(at).join(""), { headers: next() })
  }
  webSocketMessage() {}
  webSocketClose(ws, code) {
    ws.close(code === 1005 ? 1000 : code)
  }
  webSocketError() {}
}

/** Wakes sent to readers held by the Worker itself (/hold-worker/), per isolate. */
let workerWakes = 0

function heldByWorker() {
  const { response, writer, leave } = held()
  const seen = workerWakes
  const check = setInterval(() => {
    if (workerWakes === seen) return
    clearInterval(check)
    writer.write(WAKE).catch(leave)
  }, 1000)
  writer.closed.catch(() => clearInterval(check))
  return response
}

async function bridge(request, stub) {
  const r = await stub.fetch(request.url, { headers: { upgrade: "websocket" } })
  const ws = r.webSocket
  if (!ws) return new Response("no socket", { status: 502 })
  ws.accept()
  const { response, writer, leave } = held()
  ws.addEventListener("message", (m) => {
    const event = `event: data\ndata: ${m.data}\n\nevent: control\ndata: {"streamNextOffset":"0"}\n\n`
    writer.write(enc.encode(event)).catch(() => ws.close(1000))
  })
  ws.addEventListener("close", () => {
    leave()
    writer.close().catch(() => {})
  })
  return response
}

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname
    if (path.startsWith("/hold-worker/")) {
      if (request.method !== "POST") return heldByWorker()
      workerWakes++
      return new Response(null, { status: 204 })
    }
    const stub = env.BASELINE.get(env.BASELINE.idFromName(path.split("/").slice(2).join("/")))
    if (path.startsWith("/hold-bridge/") && request.method === "GET") return bridge(request, stub)
    return stub.fetch(request)
  },
}
