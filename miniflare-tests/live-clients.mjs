/**
 * Minimal live-read clients for the tests and benchmarks: an SSE reader and a
 * long-poll reader that resume from the last offset. `onText(text)` is called
 * as each batch arrives. Like any resuming client, they treat a connection
 * reset (a request written to a keep-alive connection the server was closing,
 * or a response cut) as a reason to reconnect from the last offset; a GET is
 * safe to repeat.
 */

/** fetch, repeated up to 5 times on a network error (never when aborted). */
async function fetchResuming(url, signal) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fetch(url, { signal })
    } catch (e) {
      if (signal?.aborted || attempt >= 4) throw e
      await new Promise((r) => setTimeout(r, 20 * 2 ** attempt))
    }
  }
}

/**
 * Splits a buffer of SSE text into complete events; returns them and the unparsed rest.
 * @param {string} buffer
 * @returns {{ events: Array<{ type: string, data: string }>, rest: string }}
 */
export function parseEvents(buffer) {
  const events = []
  const blocks = buffer.split("\n\n")
  const rest = blocks.pop() ?? ""
  for (const block of blocks) {
    let type = ""
    const data = []
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) type = line.slice(6).trim()
      else if (line.startsWith("data:")) data.push(line.slice(5))
    }
    if (type) events.push({ type, data: data.join("\n") })
  }
  return { events, rest }
}

/**
 * Reads a text stream over SSE from `offset` until `expectedLength` characters
 * arrived or the stream closed, reconnecting from the last control offset
 * whenever the server ends a connection.
 */
export async function sseReader(url, expectedLength, signal, offset = "-1", onText = () => {}) {
  let text = ""
  let connections = 0
  let closed = false
  while (!closed && text.length < expectedLength) {
    connections++
    const r = await fetchResuming(`${url}?offset=${encodeURIComponent(offset)}&live=sse`, signal)
    if (r.status !== 200 || !r.body) throw new Error(`sse: ${r.status}`)
    const reader = r.body.getReader()
    const decoder = new TextDecoder()
    let buffer = ""
    let pending = ""
    for (;;) {
      // A cut connection ends like a closed one: reconnect from the offset.
      const { done, value } = await reader.read().catch((e) => {
        if (signal?.aborted) throw e
        return { done: true, value: undefined }
      })
      if (done) break
      buffer += decoder.decode(value, { stream: true })
      const parsed = parseEvents(buffer)
      buffer = parsed.rest
      for (const e of parsed.events) {
        if (e.type === "data") pending = e.data
        else if (e.type === "control") {
          const c = JSON.parse(e.data)
          if (pending) onText(pending)
          text += pending
          pending = ""
          offset = c.streamNextOffset
          if (c.streamClosed) closed = true
        }
      }
      if (closed || text.length >= expectedLength) {
        await reader.cancel()
        break
      }
    }
  }
  return { text, connections }
}

/** Reads a text stream by long-polling from `offset` until `expectedLength` characters arrived. */
export async function longPollReader(url, expectedLength, signal, offset = "now", onText = () => {}) {
  let text = ""
  let connections = 0
  let cursor = ""
  while (text.length < expectedLength) {
    connections++
    const q = `offset=${encodeURIComponent(offset)}&live=long-poll${cursor ? `&cursor=${cursor}` : ""}`
    const r = await fetchResuming(`${url}?${q}`, signal)
    if (r.status === 200) {
      let t
      try {
        t = await r.text()
      } catch (e) {
        if (signal?.aborted) throw e
        continue // cut mid-answer: ask again from the same offset
      }
      if (t) onText(t)
      text += t
    }
    else if (r.status !== 204) throw new Error(`long-poll: ${r.status}`)
    else await r.arrayBuffer()
    offset = r.headers.get("stream-next-offset")
    cursor = r.headers.get("stream-cursor") ?? cursor
    if (r.headers.get("stream-closed") === "true") break
  }
  return { text, connections }
}
