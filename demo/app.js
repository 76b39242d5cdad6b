// The demo page: a bare EventSource on the answer's stream. The stream and the
// last offset live in the URL (and the text in sessionStorage), so a reload
// resumes where it was; EventSource itself resumes with Last-Event-ID when the
// server ends a connection.
const $ = (id) => document.getElementById(id)
const state = { stream: null, cancel: null, offset: "-1", text: "", source: null, done: false, paused: null }

const token = () => localStorage.getItem("ds-token") || ""
$("token").value = token()
$("token").addEventListener("change", (e) => localStorage.setItem("ds-token", e.target.value.trim()))

function setStatus(text, cls = "") {
  $("status").textContent = text
  $("status").className = cls
}

function remember() {
  const url = new URL(location.href)
  url.searchParams.set("stream", state.stream)
  url.searchParams.set("offset", state.offset)
  history.replaceState(null, "", url)
  sessionStorage.setItem(`ds:${state.stream}`, JSON.stringify({ offset: state.offset, text: state.text, cancel: state.cancel }))
}

function render() {
  $("answer").textContent = state.text
  $("meta").textContent = state.stream ? `stream ${state.stream} · offset ${state.offset}` : ""
  for (const b of ["other", "disconnect", "replay"]) $(b).disabled = !state.stream
  $("cancel").disabled = !state.stream || state.done || !state.cancel
}

function onMessages(messages) {
  for (const m of messages) {
    if (m.type === "delta") state.text += m.text
    if (m.type === "done") {
      state.done = true
      const usage = m.usage ? ` · ${m.usage.total_tokens ?? "?"} tokens (${m.usage.prompt_tokens ?? "?"} prompt, ${m.usage.completion_tokens ?? "?"} completion)` : ""
      $("final").textContent = `Final message: ${m.status}${usage}${m.reason ? ` · ${m.reason}` : ""}`
      if (m.output !== state.text) $("final").textContent += " · (output differs from the tokens shown!)"
      $("final").dataset.status = m.status
      $("final").dataset.output = m.output
    }
  }
}

function connect() {
  if (state.source) state.source.close()
  const url = new URL(state.stream, location.origin)
  url.searchParams.set("offset", state.offset)
  url.searchParams.set("live", "sse")
  if (token()) url.searchParams.set("token", token())
  const source = new EventSource(url)
  state.source = source
  setStatus(state.done ? "done" : "live", state.done ? "done" : "")
  source.addEventListener("data", (e) => {
    onMessages(JSON.parse(e.data))
    if (e.lastEventId) state.offset = e.lastEventId
    remember()
    render()
  })
  source.addEventListener("control", (e) => {
    const c = JSON.parse(e.data)
    if (c.streamNextOffset) state.offset = c.streamNextOffset
    remember()
    render()
    if (c.streamClosed) {
      source.close()
      setStatus("done", "done")
      document.body.dataset.closed = "true"
    }
  })
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) setStatus("offline", "offline")
    else setStatus("reconnecting…", "offline")
  }
}

function open(stream, cancel, { fromStart = false } = {}) {
  state.stream = stream
  state.cancel = cancel
  state.done = false
  delete document.body.dataset.closed
  $("final").textContent = ""
  const saved = JSON.parse(sessionStorage.getItem(`ds:${stream}`) || "null")
  const urlOffset = new URL(location.href).searchParams.get("offset")
  if (!fromStart && saved && saved.offset === urlOffset) {
    state.text = saved.text
    state.offset = saved.offset
    state.cancel = state.cancel || saved.cancel
  } else {
    state.text = ""
    state.offset = "-1"
  }
  remember()
  render()
  connect()
}

$("ask").addEventListener("submit", async (e) => {
  e.preventDefault()
  $("send").disabled = true
  try {
    const headers = { "content-type": "application/json" }
    if (token()) headers.authorization = `Bearer ${token()}`
    const r = await fetch("/v1/proxy", {
      method: "POST",
      headers,
      body: JSON.stringify({ messages: [{ role: "user", content: $("prompt").value }] }),
    })
    const body = await r.json()
    if (r.status !== 201) throw new Error(body.error?.message ?? `HTTP ${r.status}`)
    open(new URL(body.stream).pathname, body.cancel, { fromStart: true })
  } catch (err) {
    setStatus(`error: ${err.message}`, "offline")
  } finally {
    $("send").disabled = false
  }
})

$("other").addEventListener("click", () => {
  const url = new URL(location.pathname, location.origin)
  url.searchParams.set("stream", state.stream)
  window.open(url, "_blank")
})

$("disconnect").addEventListener("click", () => {
  if (state.source) state.source.close()
  setStatus("disconnected (resuming in 3 s)", "offline")
  clearTimeout(state.paused)
  state.paused = setTimeout(connect, 3000)
})

$("replay").addEventListener("click", () => open(state.stream, state.cancel, { fromStart: true }))

$("cancel").addEventListener("click", async () => {
  const headers = token() ? { authorization: `Bearer ${token()}` } : {}
  await fetch(state.cancel, { method: "DELETE", headers })
})

const initial = new URL(location.href).searchParams.get("stream")
if (initial) open(initial, null)
render()
