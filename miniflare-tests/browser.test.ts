/**
 * The demo page in a real browser (Debian's Chromium through puppeteer-core; README.md,
 * Try it): one answer watched by two tabs, one of them offline for a while, the other
 * reloaded mid-answer. Both end with exactly the full answer once and the final message.
 * Screenshots go to .test-results/.
 */
import { expect, test } from "vitest"
import puppeteer, { type Page } from "puppeteer-core"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { start } from "./mf.mjs"

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium"
const OUT = path.join(process.cwd(), ".test-results")

/** What a page shows: the answer's text, the final message's status and output, its state. */
const shown = (p: Page) =>
  p.evaluate(() => {
    const final = document.querySelector<HTMLElement>("#final")!
    return {
      answer: document.querySelector("#answer")!.textContent ?? "",
      status: final.dataset.status ?? "",
      output: final.dataset.output ?? "",
      closed: document.body.dataset.closed === "true",
      live: document.querySelector("#status")!.textContent ?? "",
    }
  })

/** Polls the page until `check` holds. */
async function until(p: Page, check: (s: Awaited<ReturnType<typeof shown>>) => boolean, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const s = await shown(p)
    if (check(s)) return s
    if (Date.now() > deadline) throw new Error(`page never reached the state: ${JSON.stringify(s).slice(0, 300)}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

test("two tabs on one answer, one offline for a while, one reloaded: both get the whole answer once", { timeout: 120_000 }, async () => {
  const t0 = Date.now()
  // A human pace, so there is time to go offline and reload mid-answer.
  const { mf, base } = await start({ vars: { PROXY_DEMO_TOKEN_MS: "80" } })
  const profile = mkdtempSync(path.join(tmpdir(), "ds-chromium-"))
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  })
  try {
    mkdirSync(OUT, { recursive: true })
    const a = await browser.newPage()
    await a.goto(`${base}/`)
    await a.click("#send")
    await until(a, (s) => s.answer.length > 10)
    // "Open in another tab" opens the same answer live.
    const opened = new Promise<Page>((resolve) =>
      browser.once("targetcreated", async (t) => resolve((await t.page()) as Page))
    )
    await a.click("#other")
    const b = await opened
    await until(b, (s) => s.answer.length > 0)

    // Tab A loses the network (and its connection, with the page's own
    // "Disconnect for 3 s") until tab B has seen more of the answer. A page
    // must be in front for clicks (a background tab gets no animation frames).
    const before = (await shown(a)).answer.length
    await a.bringToFront()
    await a.setOfflineMode(true)
    await a.click("#disconnect")
    await until(a, (s) => s.live.startsWith("disconnected"))
    const during = await until(b, (s) => s.answer.length > before + 60)
    expect((await shown(a)).answer.length, "tab A got nothing while offline").toBeLessThan(during.answer.length)
    expect(during.closed, "the answer was still streaming while tab A was offline").toBe(false)
    await a.setOfflineMode(false)

    // Tab B reloads mid-answer: the stream and offset are in its URL.
    expect(new URL(b.url()).searchParams.get("offset")).toMatch(/^\d{16}_\d{16}$/)
    await b.bringToFront()
    await b.reload()

    const endA = await until(a, (s) => s.closed && s.status !== "")
    const endB = await until(b, (s) => s.closed && s.status !== "")
    // A screenshot needs the page in front (it waits for a frame).
    await a.bringToFront()
    await a.screenshot({ path: path.join(OUT, "browser-tab-a.png") })
    await b.bringToFront()
    await b.screenshot({ path: path.join(OUT, "browser-tab-b.png") })
    for (const end of [endA, endB]) {
      expect(end.status).toBe("complete")
      expect(end.answer, "every token once, in order: the text equals the final output").toBe(end.output)
      expect(end.answer.startsWith('You asked: "What makes a stream durable?". Durable Streams keeps')).toBe(true)
    }
    expect(endA.answer).toBe(endB.answer)
    console.log(`browser: two tabs, offline period and reload, ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  } finally {
    await browser.close()
    await mf.dispose()
    rmSync(profile, { recursive: true, force: true })
  }
})
