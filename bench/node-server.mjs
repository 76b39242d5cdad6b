// The official Node reference server (@durable-streams/server) in its own
// process, so it never shares the load generator's event loop. Prints its
// origin on a line `URL=<origin>`. Usage: node bench/node-server.mjs [dataDir]
import { DurableStreamTestServer } from "@durable-streams/server"

const dataDir = process.argv[2] || undefined
const server = new DurableStreamTestServer({
  port: 0,
  host: "127.0.0.1",
  longPollTimeout: 20_000,
  dataDir,
  compression: false,
})
process.stdout.write(`URL=${await server.start()}\n`)
process.on("SIGTERM", async () => {
  await server.stop()
  process.exit(0)
})
