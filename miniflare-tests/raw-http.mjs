/** A raw HTTP/1.1 exchange over a socket, for requests fetch() cannot send (bad bytes, truncated bodies). */
import net from "node:net"

/**
 * Sends `bytes` (after the request line and headers you give) and reads the response until the server closes.
 * @param {string} base  origin, e.g. http://127.0.0.1:1234
 * @param {Buffer} bytes the whole request as written on the wire
 * @param {{ halfClose?: boolean, timeoutMs?: number }} [opts]
 * @returns {Promise<{ status: number, head: string, body: string }>} status 0 when the server closed without answering
 */
export function rawExchange(base, bytes, opts = {}) {
  const url = new URL(base)
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(url.port), url.hostname)
    const chunks = []
    const timer = setTimeout(() => sock.destroy(new Error("raw exchange timed out")), opts.timeoutMs ?? 10_000)
    let done = false
    const finish = () => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      const text = Buffer.concat(chunks).toString("latin1")
      const [head, ...rest] = text.split("\r\n\r\n")
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head ?? "")
      resolve({ status: m ? Number(m[1]) : 0, head: head ?? "", body: rest.join("\r\n\r\n") })
    }
    /** Whether a whole response (head plus its Content-Length or chunked body) has arrived. */
    const complete = () => {
      const text = Buffer.concat(chunks).toString("latin1")
      const end = text.indexOf("\r\n\r\n")
      if (end < 0) return false
      const head = text.slice(0, end).toLowerCase()
      const body = text.slice(end + 4)
      const len = /\r\ncontent-length: *(\d+)/.exec(head)
      if (len) return body.length >= Number(len[1])
      if (/\r\ntransfer-encoding: *chunked/.test(head)) return body.endsWith("0\r\n\r\n")
      return /^http\/1\.[01] (1\d\d|204|304)/.test(head)
    }
    sock.on("data", (d) => {
      chunks.push(d)
      if (complete()) finish()
    })
    sock.on("error", (e) => {
      if (done) return
      clearTimeout(timer)
      reject(e)
    })
    sock.on("close", finish)
    sock.write(bytes, () => {
      if (opts.halfClose) sock.end()
    })
  })
}

/** A request with `Connection: close` and the given raw header lines. */
export function rawRequest(method, path, headerLines, body = Buffer.alloc(0)) {
  const head = [`${method} ${path} HTTP/1.1`, "Host: localhost", "Connection: close", ...headerLines].join("\r\n")
  return Buffer.concat([Buffer.from(head + "\r\n\r\n", "latin1"), body])
}
