// Runs the worker under Miniflare on persisted storage until killed; prints
// its origin on the first line. The crash test SIGKILLs its process group.
// An optional second argument is a JSON object of extra variables, a third
// the port to listen on.
import { start } from "./mf.mjs"

const dir = process.argv[2]
if (!dir) throw new Error("usage: crash-server.mjs <persist-dir>")
const vars = process.argv[3] ? JSON.parse(process.argv[3]) : {}
const port = process.argv[4] ? Number(process.argv[4]) : undefined
const { base } = await start({ persistDir: dir, vars, port })
process.stdout.write(`${base}\n`)
setInterval(() => {}, 1 << 30)
