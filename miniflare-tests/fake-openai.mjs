/**
 * A local fake of an OpenAI-compatible chat-completions API for the proxy
 * tests: it streams `data:` chunks, checks the bearer key, and misbehaves on
 * request. The last user message picks the behaviour:
 *   "fail after N"  - N tokens, then the connection is destroyed mid-answer
 *   "error echo"    - a 400 whose error message repeats the key it was sent
 *   "slow"          - tokens every 200 ms (for cancel tests)
 *   anything else   - TOKENS, then a finish chunk, a usage chunk and [DONE]
 */
import http from "node:http"

export const TOKENS = ["Once", " upon", " a", " time", ",", " a", " stream", " kept", " every", " token", "."]

export async function startFakeOpenAI({ key }) {
  const seen = { requests: 0, auth: [], bodies: [], aborted: 0 }
  const server = http.createServer((req, res) => {
    const parts = []
    req.on("data", (c) => parts.push(c))
    req.on("end", async () => {
      seen.requests++
      seen.auth.push(req.headers.authorization ?? "")
      const body = JSON.parse(Buffer.concat(parts).toString() || "{}")
      seen.bodies.push(body)
      if (req.headers.authorization !== `Bearer ${key}`) {
        res.writeHead(401, { "content-type": "application/json" })
        res.end(JSON.stringify({ error: { message: "no valid key" } }))
        return
      }
      const last = [...(body.messages ?? [])].reverse().find((m) => m.role === "user")?.content ?? ""
      if (last === "error echo") {
        res.writeHead(400, { "content-type": "application/json" })
        res.end(JSON.stringify({ error: { message: `bad request for key ${key}` } }))
        return
      }
      const failAfter = /^fail after (\d+)$/.exec(last)
      const pace = last === "slow" ? 200 : 5
      res.writeHead(200, { "content-type": "text/event-stream" })
      let closed = false
      res.on("close", () => {
        if (!res.writableEnded) {
          closed = true
          seen.aborted++
        }
      })
      const chunk = (delta, finish = null) =>
        `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", model: body.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
      for (const [i, t] of TOKENS.entries()) {
        if (closed) return
        if (failAfter && i === Number(failAfter[1])) {
          res.socket.destroy()
          return
        }
        res.write(chunk({ content: t }))
        await new Promise((r) => setTimeout(r, pace))
      }
      res.write(chunk({}, "stop"))
      res.write(`data: ${JSON.stringify({ id: "c1", choices: [], usage: { prompt_tokens: 3, completion_tokens: TOKENS.length, total_tokens: 3 + TOKENS.length } })}\n\n`)
      res.end("data: [DONE]\n\n")
    })
  })
  await new Promise((r) => server.listen(0, "127.0.0.1", r))
  const port = server.address().port
  return {
    url: `http://127.0.0.1:${port}/v1`,
    host: `127.0.0.1:${port}`,
    seen,
    close: () => new Promise((r) => server.close(r)),
  }
}
