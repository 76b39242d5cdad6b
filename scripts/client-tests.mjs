// The Rust client's tests (client/tests) against this worker under Miniflare
// and the official Node reference server, both started here; their URLs go
// to `cargo test` in DS_TEST_SERVERS. A third worker, on persisted storage in
// its own process, can be SIGKILLed and restarted on the same port by
// `POST $DS_TEST_CONTROL/restart` (the consumer's restart test). Exits with
// cargo's status.
import { spawn } from "node:child_process"
import { createServer } from "node:http"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { DurableStreamTestServer } from "@durable-streams/server"
import { ROOT, start } from "../miniflare-tests/mf.mjs"

const worker = await start()
const node = new DurableStreamTestServer({ port: 0, host: "127.0.0.1", longPollTimeout: 500, compression: false })
const nodeUrl = await node.start()

// The restartable worker: a child process, killed with its workerd.
const dir = mkdtempSync(path.join(tmpdir(), "ds-client-restart-"))
let child = null
function launch(port = 0) {
  child = spawn(process.execPath, [path.join(ROOT, "miniflare-tests/crash-server.mjs"), dir, "{}", String(port)], {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "inherit"],
  })
  return new Promise((resolve, reject) => {
    let out = ""
    child.stdout.on("data", (d) => {
      out += d
      if (out.includes("\n")) resolve(out.split("\n")[0].trim())
    })
    child.on("exit", (code) => reject(new Error(`restartable worker exited: ${code}`)))
  })
}
const kill = () =>
  new Promise((resolve) => {
    child.removeAllListeners("exit")
    child.on("exit", () => resolve())
    process.kill(-child.pid, "SIGKILL")
  })
const restartable = await launch()
const port = Number(new URL(restartable).port)
const control = createServer(async (req, res) => {
  if (req.method === "POST" && req.url === "/restart") {
    await kill()
    await launch(port)
    res.end("restarted")
  } else {
    res.statusCode = 404
    res.end()
  }
})
await new Promise((r) => control.listen(0, "127.0.0.1", r))

const env = {
  ...process.env,
  DS_TEST_SERVERS: `worker=${worker.base},node=${nodeUrl}`,
  DS_TEST_RESTARTABLE: restartable,
  DS_TEST_CONTROL: `http://127.0.0.1:${control.address().port}`,
}
const args = ["test", "--locked", "-p", "durable-streams-client", ...process.argv.slice(2)]
const cargo = spawn("cargo", args, { env, stdio: "inherit" })
const code = await new Promise((resolve) => cargo.on("exit", (c) => resolve(c ?? 1)))
await worker.mf.dispose()
await node.stop()
await kill()
control.close()
rmSync(dir, { recursive: true, force: true })
process.exit(code)
