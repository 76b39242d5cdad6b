// The physical limit under the same runtime: a Worker that forwards to a
// SQLite-backed Durable Object which does nothing (/echo/...) or writes one
// row (/insert/...) and answers 204. Same routing shape as ours.
export class Baseline {
  constructor(state) {
    this.sql = state.storage.sql
    this.sql.exec("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, data BLOB)")
  }
  async fetch(request) {
    const body = await request.arrayBuffer()
    if (new URL(request.url).pathname.startsWith("/insert/")) {
      this.sql.exec("INSERT INTO rows (data) VALUES (?)", body)
    }
    return new Response(null, { status: 204 })
  }
}

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname
    return env.BASELINE.get(env.BASELINE.idFromName(path.split("/").slice(2).join("/"))).fetch(request)
  },
}
