// The Rust client's tests (client/tests) against this worker under Miniflare
// and the official Node reference server, both started here; their URLs go
// to `cargo test` in DS_TEST_SERVERS. Exits with cargo's status.
import { spawn } from "node:child_process"
import { DurableStreamTestServer } from "@durable-streams/server"
import { start } from "../miniflare-tests/mf.mjs"

const worker = await start()
const node = new DurableStreamTestServer({ port: 0, host: "127.0.0.1", longPollTimeout: 500, compression: false })
const nodeUrl = await node.start()
const env = { ...process.env, DS_TEST_SERVERS: `worker=${worker.base},node=${nodeUrl}` }
const args = ["test", "--locked", "-p", "durable-streams-client", ...process.argv.slice(2)]
const cargo = spawn("cargo", args, { env, stdio: "inherit" })
const code = await new Promise((resolve) => cargo.on("exit", (c) => resolve(c ?? 1)))
await worker.mf.dispose()
await node.stop()
process.exit(code)
