// Starting and stopping the servers under test, each in its own process.
import { spawn, execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { Miniflare } from "miniflare"
import { ROOT, start } from "../miniflare-tests/mf.mjs"

/** Resident memory (bytes) of a process. */
export function rss(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  return m ? Number(m[1]) * 1024 : 0
}

/** The workerd process Miniflare started for this process most recently. */
function workerdPid() {
  const rows = execFileSync("ps", ["-eo", "pid=,ppid=,comm="], { encoding: "utf8" })
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter(([, ppid, comm]) => Number(ppid) === process.pid && comm === "workerd")
  return Number(rows.at(-1)?.[0] ?? 0)
}

/** This worker under bare workerd (production configuration). */
export async function ours() {
  const { mf, base } = await start({ testVars: false, vars: LIVE })
  return { name: "ours (workerd)", base, pid: workerdPid(), stop: () => mf.dispose(), stats: true }
}

/** The live workloads lift the per-stream reader limit (2,000 by default). */
const LIVE = { MAX_READERS_PER_STREAM: "32768" }

/** This worker with live readers held in the object (LIVE_BRIDGE=0: the earlier design). */
export async function oursInObject() {
  const { mf, base } = await start({ testVars: false, vars: { ...LIVE, LIVE_BRIDGE: "0" } })
  return { name: "ours, readers in the object", base, pid: workerdPid(), stop: () => mf.dispose(), stats: true }
}

/** The do-nothing Worker → Durable Object (echo, or one SQLite insert). */
export async function baseline() {
  const mf = new Miniflare({
    modules: true,
    scriptPath: path.join(ROOT, "bench/baseline-worker.mjs"),
    compatibilityDate: "2025-09-23",
    durableObjects: { BASELINE: { className: "Baseline", useSQLite: true } },
    host: "127.0.0.1",
    port: 0,
  })
  const base = (await mf.ready).origin
  return { name: "baseline DO", base, pid: workerdPid(), stop: () => mf.dispose() }
}

/** The Node reference server, in memory or file-backed. */
export async function node(fileBacked) {
  const dir = fileBacked ? mkdtempSync(path.join(tmpdir(), "ds-node-")) : ""
  const child = spawn(process.execPath, [path.join(ROOT, "bench/node-server.mjs"), dir], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "ignore"],
  })
  const base = await new Promise((resolve, reject) => {
    let out = ""
    child.stdout.on("data", (d) => {
      out += d
      const line = out.split("\n").find((l) => l.startsWith("URL="))
      if (line) resolve(line.slice(4).trim())
    })
    child.on("exit", (c) => reject(new Error(`node server exited ${c}`)))
  })
  const stop = async () => {
    child.removeAllListeners("exit")
    const gone = new Promise((r) => child.on("exit", r))
    child.kill("SIGTERM")
    // Its graceful stop waits for every connection to close, and a
    // keep-alive connection it never saw closed kept it waiting for good
    // (a whole `make bench` hung on it once): bounded, then killed.
    const kill = setTimeout(() => child.kill("SIGKILL"), 5_000)
    await gone
    clearTimeout(kill)
    if (dir) rmSync(dir, { recursive: true, force: true })
  }
  return { name: fileBacked ? "node (file)" : "node (memory)", base, pid: child.pid, stop }
}
