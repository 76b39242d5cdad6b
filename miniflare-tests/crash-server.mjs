// Runs the worker under Miniflare on persisted storage until killed; prints
// its origin on the first line. The crash test SIGKILLs its process group.
import { start } from "./mf.mjs"

const dir = process.argv[2]
if (!dir) throw new Error("usage: crash-server.mjs <persist-dir>")
const { base } = await start({ persistDir: dir })
process.stdout.write(`${base}\n`)
setInterval(() => {}, 1 << 30)
