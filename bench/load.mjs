// The load generator of bench/run: @cloudamqp/amqp-client 4.1.1 on Node,
// over TCP (AMQPClient) or WebSocket (AMQPWebSocketClient).  The WebSocket
// under AMQPWebSocketClient is, by spec.target.wsClient, else spec.wsClient:
//   "browser" — the `ws` package as it comes: a random masking key per frame,
//               XORed in native code by `bufferutil`, as browsers do (the
//               default, and what the WebSocket rows are judged on);
//   "zero"    — the `ws` package with an all-zero masking key, which ws then
//               skips applying (RFC 6455 lets a client pick any key; the
//               server unmasks all the same): the "relay CPU only" row;
//   "native"  — Node's built-in WebSocket (undici, `--experimental-websocket`),
//               which masks every byte in JavaScript.
//
//   node --experimental-websocket bench/load.mjs '<JSON spec>'
//
// Prints one JSON line per event on stdout; the last one is the result.
// Every loop is bounded (a message count or a connection count) and the
// whole process gives up after spec.timeout seconds.
//
// spec = {
//   scenario: "throughput" | "latency" | "setup" | "hold" | "consume" | "publish" | "probe" | "browsers",
//   target: {kind: "tcp", host, port} | {kind: "ws", url, wsClient?},
//   user, password,            // AMQP PLAIN (TCP) and/or HTTP Basic (WebSocket)
//   users: [[user, password], ...]   // setup/hold: round-robin over these
//   basic: true,               // WebSocket: send Authorization: Basic on the upgrade
//   frameMax: 131072,
//   size, count, window,       // throughput / latency / publish
//   concurrency, connections,  // setup / hold
//   sources: ["127.0.20.1", ...]     // setup/hold: worker k connects from sources[k % n]
//                              // (the gateway's login protection counts per host)
//   queue,                     // consume / publish: a named queue
//   interval,                  // probe: ms between round trips
//   timeout                    // seconds, for the whole run
// }

import { AMQPClient, AMQPWebSocketClient } from "@cloudamqp/amqp-client"
import { createInterface } from "node:readline"
import { createRequire } from "node:module"
import WS from "ws"

const spec = JSON.parse(process.argv[2])
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n")
const now = () => Number(process.hrtime.bigint()) / 1e6 // ms

const deadline = setTimeout(() => {
  emit({ error: `timed out after ${spec.timeout} s` })
  process.exit(3)
}, (spec.timeout || 120) * 1000)
deadline.unref()

// Node's WebSocket cannot set headers through the browser API that
// amqp-client uses; these subclasses add Authorization: Basic (ws's options
// and undici's WebSocketInit accept `headers`).
let currentHeaders = null
let currentSource = null
const zeroMask = (mask) => mask.fill(0)
const wsClient = (spec.target.kind === "ws" && (spec.target.wsClient || spec.wsClient)) || "browser"
if (spec.target.kind === "ws" && (wsClient === "browser" || wsClient === "zero")) {
  if (wsClient === "browser") {
    // ws masks with bufferutil when it loads; without it, in JavaScript,
    // which measures the client, not the relay (shared/PERFORMANCE.md).
    const bufferutil = createRequire(import.meta.url)("bufferutil")
    if (process.env.WS_NO_BUFFER_UTIL || !String(bufferutil.mask).includes("[native code]")) {
      emit({ error: "bufferutil's native mask is not in use: npm ci in bench/ (prebuilt for linux-x64)" })
      process.exit(2)
    }
  }
  const options = { perMessageDeflate: false }
  if (wsClient === "zero") options.generateMask = zeroMask
  globalThis.WebSocket = class extends WS {
    constructor(url, protocols) {
      const extra = currentSource ? { localAddress: currentSource } : {}
      super(url, protocols ?? [], { ...options, ...extra, headers: currentHeaders || {} })
    }
  }
} else if (spec.target.kind === "ws" && wsClient === "native") {
  if (typeof globalThis.WebSocket !== "function") {
    emit({ error: "no global WebSocket: run node with --experimental-websocket" })
    process.exit(2)
  }
  const Base = globalThis.WebSocket
  globalThis.WebSocket = class extends Base {
    constructor(url, protocols) {
      const init = { protocols: protocols ?? [] }
      if (currentHeaders) init.headers = currentHeaders
      super(url, init)
    }
  }
} else if (spec.target.kind === "ws") {
  emit({ error: `unknown wsClient ${JSON.stringify(wsClient)}: browser, zero or native` })
  process.exit(2)
}

function makeClient(user, password, source) {
  const t = spec.target
  const frameMax = spec.frameMax || 131072
  user = user ?? spec.user ?? "guest"
  password = password ?? spec.password ?? "guest"
  if (t.kind === "tcp") {
    const u = `amqp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${t.host}:${t.port}/?frameMax=${frameMax}`
    // AMQPClient spreads its "TLS options" into net.connect's options.
    return new AMQPClient(u, source ? { localAddress: source } : undefined)
  }
  if (source && wsClient === "native") throw new Error("the native WebSocket cannot bind a source address")
  currentSource = source || null
  currentHeaders = spec.basic
    ? { Authorization: "Basic " + Buffer.from(`${user}:${password}`).toString("base64") }
    : null
  return new AMQPWebSocketClient({ url: t.url, vhost: "/", username: user, password, frameMax })
}

async function connect(user, password, source) {
  const c = makeClient(user, password, source)
  await c.connect()
  if (c.socket && typeof c.socket.setNoDelay === "function") c.socket.setNoDelay(true)
  return c
}

function pct(sorted, p) {
  if (!sorted.length) return null
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}

function cpu() {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

// One connection publishing to and consuming from its own queue.  At most
// `window` messages are in flight (published, not yet delivered), so the
// queue stays short and every transport gets the same backpressure.
async function throughput() {
  const c = await connect()
  const ch = await c.channel()
  const q = await ch.queueDeclare("", { exclusive: true, autoDelete: true })
  const size = spec.size
  const count = spec.count
  const window = spec.window || Math.max(64, Math.min(10000, Math.floor((8 << 20) / size)))
  const body = Buffer.alloc(size, 0x61)
  let received = 0
  let published = 0
  let resumeWaiter = null
  let doneResolve
  const done = new Promise((r) => (doneResolve = r))
  await ch.basicConsume(q.name, { noAck: true }, (msg) => {
    received++
    if (resumeWaiter && published - received < window / 2) {
      const r = resumeWaiter
      resumeWaiter = null
      r()
    }
    if (received === count) doneResolve()
  })
  const cpu0 = cpu()
  const t0 = now()
  let last = null
  while (published < count) {
    if (published - received >= window) {
      await new Promise((r) => (resumeWaiter = r))
    }
    last = ch.basicPublish("", q.name, body)
    published++
    // Socket-level backpressure: wait for the kernel to take the bytes now and then.
    if ((published & 255) === 0) await last
  }
  await last
  await done
  const t1 = now()
  const cpu1 = cpu()
  await c.close().catch(() => {})
  const seconds = (t1 - t0) / 1000
  return { messages: count, size, seconds, msgPerSec: count / seconds, mbPerSec: (count * size) / seconds / 1e6, window,
           clientCpuSeconds: cpu1 - cpu0, clientCpuShare: (cpu1 - cpu0) / seconds }
}

// Sequential publish→delivery round trips on one connection.
async function latency() {
  const c = await connect()
  const ch = await c.channel()
  const q = await ch.queueDeclare("", { exclusive: true, autoDelete: true })
  const body = Buffer.alloc(spec.size || 16, 0x61)
  let waiter = null
  await ch.basicConsume(q.name, { noAck: true }, () => {
    const w = waiter
    waiter = null
    if (w) w()
  })
  const warmup = spec.warmup ?? 200
  const samples = []
  for (let i = 0; i < warmup + spec.count; i++) {
    const p = new Promise((r) => (waiter = r))
    const t0 = process.hrtime.bigint()
    ch.basicPublish("", q.name, body)
    await p
    const dt = Number(process.hrtime.bigint() - t0) / 1e6
    if (i >= warmup) samples.push(dt)
  }
  await c.close().catch(() => {})
  samples.sort((a, b) => a - b)
  return { samples: samples.length, p50ms: pct(samples, 50), p90ms: pct(samples, 90), p99ms: pct(samples, 99),
           meanMs: samples.reduce((a, b) => a + b, 0) / samples.length, maxMs: samples[samples.length - 1] }
}

function sourceOf(worker) {
  const sources = spec.sources
  return sources && sources.length ? sources[worker % sources.length] : undefined
}

function userAt(i) {
  const users = spec.users
  if (users && users.length) return users[i % users.length]
  return [spec.user, spec.password]
}

// `connections` connection setups (to Open-Ok) then closes, `concurrency`
// in flight at a time.
async function setup() {
  const total = spec.connections
  const concurrency = spec.concurrency || 50
  let next = 0
  let ok = 0
  let failed = 0
  const errors = {}
  const times = []
  const t0 = now()
  async function worker(_, k) {
    const source = sourceOf(k)
    while (next < total) {
      const i = next++
      const [user, password] = userAt(i)
      const s = now()
      let c = null
      try {
        c = await connect(user, password, source)
        times.push(now() - s)
        ok++
      } catch (e) {
        failed++
        const key = String(e && e.message || e).slice(0, 120)
        errors[key] = (errors[key] || 0) + 1
      }
      if (c) await c.close().catch(() => {})
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const seconds = (now() - t0) / 1000
  times.sort((a, b) => a - b)
  return { connections: total, ok, failed, seconds, perSec: ok / seconds, concurrency,
           openP50ms: pct(times, 50), openP99ms: pct(times, 99), errors }
}

// Open and hold `connections` connections (`concurrency` opens in flight);
// stop opening once more than `maxFailures` failed.  Then report and wait
// for a line on stdin (or the timeout) before exiting.
async function hold() {
  const total = spec.connections
  const concurrency = spec.concurrency || 50
  const maxFailures = spec.maxFailures ?? 50
  const held = []
  let next = 0
  let failed = 0
  const errors = {}
  const t0 = now()
  async function worker(_, k) {
    const source = sourceOf(k)
    while (next < total && failed <= maxFailures) {
      const i = next++
      const [user, password] = userAt(i)
      try {
        const c = await connect(user, password, source)
        c.onerror = () => {}
        held.push(c)
      } catch (e) {
        failed++
        const key = String(e && e.message || e).slice(0, 120)
        errors[key] = (errors[key] || 0) + 1
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const seconds = (now() - t0) / 1000
  // Are they all still alive after a moment?
  await new Promise((r) => setTimeout(r, 1000))
  const alive = held.filter((c) => !c.closed).length
  emit({ event: "held", attempted: next, held: held.length, alive, failed, openSeconds: seconds,
         perSec: held.length / seconds, errors, rssBytes: process.memoryUsage().rss })
  await new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin })
    rl.on("line", () => resolve())
    rl.on("close", () => resolve())
  })
  const stillAlive = held.filter((c) => !c.closed).length
  return { held: held.length, alive, stillAlive, failed }
}

// A consumer on a named queue that reports when it has `count` messages
// (bench/run stops this process with SIGSTOP to make it a stalled consumer).
async function consume() {
  const c = await connect()
  const ch = await c.channel()
  await ch.queueDeclare(spec.queue, { durable: false, autoDelete: false })
  let received = 0
  let bytes = 0
  let first = null
  let doneResolve
  const done = new Promise((r) => (doneResolve = r))
  await ch.basicConsume(spec.queue, { noAck: true }, (msg) => {
    if (first === null) first = now()
    received++
    bytes += msg.bodySize
    if (received === spec.count) doneResolve()
  })
  emit({ event: "ready" })
  await done
  const seconds = (now() - first) / 1000
  await ch.queueDelete(spec.queue).catch(() => {})
  await c.close().catch(() => {})
  return { received, bytes, drainSeconds: seconds }
}

async function publish() {
  const c = await connect()
  const ch = await c.channel()
  await ch.queueDeclare(spec.queue, { durable: false, autoDelete: false })
  const body = Buffer.alloc(spec.size, 0x62)
  const t0 = now()
  let last = null
  for (let i = 0; i < spec.count; i++) {
    last = ch.basicPublish("", spec.queue, body)
    if ((i & 15) === 15) await last
  }
  await last
  // A round trip proves the broker has taken every message.
  await ch.queueDeclare(spec.queue, { passive: true })
  const seconds = (now() - t0) / 1000
  await c.close().catch(() => {})
  return { published: spec.count, bytes: spec.count * spec.size, seconds }
}

// An already open connection's round trips (publish→delivery, 16 B) every
// `interval` ms while something else loads the relay: samples before the
// line "start" on stdin are the idle baseline, those between "start" and
// "stop" the ones under load.
async function probe() {
  const c = await connect()
  const ch = await c.channel()
  const q = await ch.queueDeclare("", { exclusive: true, autoDelete: true })
  const body = Buffer.alloc(spec.size || 16, 0x61)
  let waiter = null
  await ch.basicConsume(q.name, { noAck: true }, () => {
    const w = waiter
    waiter = null
    if (w) w()
  })
  let phase = "idle"
  const samples = { idle: [], load: [] }
  const rl = createInterface({ input: process.stdin })
  rl.on("line", (line) => {
    if (line.trim() === "start") {
      phase = "load"
      emit({ event: "started" })
    } else phase = "done"
  })
  rl.on("close", () => (phase = "done"))
  emit({ event: "ready" })
  const interval = spec.interval ?? 10
  let slowest = []
  const t0 = now()
  while (phase !== "done") {
    const p = new Promise((r) => (waiter = r))
    const s = now()
    ch.basicPublish("", q.name, body)
    await p
    const dt = now() - s
    const into = phase
    if (into === "load" || into === "idle") {
      samples[into].push(dt)
      if (into === "load") {
        slowest.push([Math.round(s - t0), dt])
        if (slowest.length > 200) slowest = slowest.sort((a, b) => b[1] - a[1]).slice(0, 20)
      }
    }
    await new Promise((r) => setTimeout(r, interval))
  }
  await c.close().catch(() => {})
  const stats = (xs) => {
    xs.sort((a, b) => a - b)
    return { samples: xs.length, p50ms: pct(xs, 50), p99ms: pct(xs, 99), maxMs: xs.length ? xs[xs.length - 1] : null }
  }
  return { interval, idle: stats(samples.idle), load: stats(samples.load),
           slowest: slowest.sort((a, b) => b[1] - a[1]).slice(0, 10) }
}

// The reconnect storm's browsers, each a page of the demo's kind: a
// password login on the ticket endpoint (which sets the session cookie),
// then the WebSocket with the ticket, held.  On "reconnect" (stdin, once the
// restarted gateway listens) every page asks for a new ticket with its
// cookie alone, as a page does after losing its connection, and opens the
// WebSocket again; at most `concurrency` in flight, a failed attempt tried
// again after `retryMs`.  A page whose cookie is refused logs in with its
// password (counted: the gateway hashed).
//   spec.http: {host, port, path}   spec.users, spec.sources (one per page)
async function browsers() {
  const http = await import("node:http")
  const { host, port, path } = spec.http
  const users = spec.users
  const concurrency = spec.concurrency || 50
  const retryMs = spec.retryMs ?? 250
  const pages = users.map(([user, password], i) => ({ user, password, source: spec.sources[i % spec.sources.length],
                                                      cookie: null, client: null }))
  function ticket(page, withPassword) {
    const headers = { "Content-Length": "0" }
    if (withPassword) headers.Authorization = "Basic " + Buffer.from(`${page.user}:${page.password}`).toString("base64")
    else headers.Cookie = page.cookie
    return new Promise((resolve, reject) => {
      const req = http.request({ host, port, path: `${path}/ticket`, method: "POST", headers,
                                 localAddress: page.source, agent: false }, (res) => {
        let body = ""
        res.setEncoding("utf8")
        res.on("data", (chunk) => (body += chunk))
        res.on("end", () => {
          for (const line of res.headers["set-cookie"] || []) {
            const m = /^kp_session=([^;]*)/.exec(line)
            if (m) page.cookie = `kp_session=${m[1]}`
          }
          if (res.statusCode === 200) resolve(JSON.parse(body).ticket)
          else reject(new Error(`ticket: HTTP ${res.statusCode}`))
        })
      })
      req.on("error", reject)
      req.end()
    })
  }
  async function open(page, value) {
    currentSource = page.source
    currentHeaders = null
    const c = new AMQPWebSocketClient({ url: `ws://${host}:${port}${path}?ticket=${encodeURIComponent(value)}`,
                                        vhost: "/", username: "page", password: "page", frameMax: 131072 })
    await c.connect()
    c.onerror = () => {}
    page.client = c
  }
  async function pool(work) {
    let next = 0
    const errors = {}
    async function worker() {
      while (next < pages.length) {
        const page = pages[next++]
        for (;;) {
          try {
            await work(page)
            break
          } catch (e) {
            const key = String((e && e.message) || e).slice(0, 120)
            errors[key] = (errors[key] || 0) + 1
            if (now() > page.giveUpAt) throw new Error(`gave up: ${key}`)
            await new Promise((r) => setTimeout(r, retryMs))
          }
        }
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
    return errors
  }
  const t0 = now()
  for (const page of pages) page.giveUpAt = t0 + (spec.timeout || 300) * 1000
  const loginErrors = await pool(async (page) => open(page, await ticket(page, true)))
  const withCookie = pages.filter((p) => p.cookie).length
  emit({ event: "held", pages: pages.length, withCookie, seconds: (now() - t0) / 1000, errors: loginErrors })
  await new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin })
    rl.on("line", () => { rl.close(); resolve() })
  })
  const closedBefore = pages.filter((p) => p.client && p.client.closed).length
  const r0 = now()
  const times = []
  let neededPassword = 0
  const reconnectErrors = await pool(async (page) => {
    let value
    try {
      value = await ticket(page, false)
    } catch (e) {
      if (!/HTTP 40[13]/.test(e.message)) throw e
      neededPassword++
      value = await ticket(page, true)
    }
    await open(page, value)
    times.push(now() - r0)
  })
  times.sort((a, b) => a - b)
  for (const page of pages) if (page.client) await page.client.close().catch(() => {})
  return { pages: pages.length, withCookie, closedBefore, reconnected: times.length, neededPassword,
           seconds: times.length ? times[times.length - 1] / 1000 : null,
           p50ms: pct(times, 50), p99ms: pct(times, 99), errors: reconnectErrors }
}

const scenarios = { throughput, latency, setup, hold, consume, publish, probe, browsers }

try {
  const result = await scenarios[spec.scenario]()
  emit({ result })
  process.exit(0)
} catch (e) {
  emit({ error: String((e && e.stack) || e) })
  process.exit(1)
}
