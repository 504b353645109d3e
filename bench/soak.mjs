// The load generator of bench/soak.py: N concurrent connection loops, each
// churning connect → authenticate → confirmSelect → exclusive server-named
// queue → publish K messages with unique ids → wait for the confirms →
// consume until every id is back → close, until a deadline (or a loop count).
// @cloudamqp/amqp-client 4.1.1 on Node, over TCP (AMQPClient, PLAIN with the
// users.cnf credentials) or WebSocket (AMQPWebSocketClient over the `ws`
// package, Authorization: Basic on the upgrade, all-zero masking key as in
// load.mjs).
//
//   node bench/soak.mjs SPEC.json
//
// Prints one JSON line per event on stdout ({event: "progress", ...} every
// spec.progressSeconds); the last one is {result: {...}}.  Bounded: loops
// start no new iteration after the deadline, every iteration has its own
// timeout (spec.loopTimeout), and the whole process exits after spec.timeout.
//
// spec = {
//   targets: {amqp: {host, port}, web: {url}},
//   listeners: ["amqp", "web"],   // loop i uses listeners[i % listeners.length]
//   usersFile: "users.json",       // [[user, password], ...]; loop i uses users[i % n]
//   connections,                   // concurrent loops
//   seconds | maxLoops,            // stop at the deadline, or after this many iterations in all
//   messages, size,                // per iteration: K messages of `size` bytes (>= the id)
//   rampSeconds,                   // loops start spread over this long
//   loopTimeout, timeout, progressSeconds
// }

import { AMQPClient, AMQPWebSocketClient } from "@cloudamqp/amqp-client"
import { readFileSync } from "node:fs"
import WS from "ws"

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"))
const users = JSON.parse(readFileSync(spec.usersFile, "utf8"))
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n")
const now = () => Number(process.hrtime.bigint()) / 1e6 // ms

const hardStop = setTimeout(() => {
  emit({ error: `timed out after ${spec.timeout} s`, partial: summary() })
  process.exit(3)
}, (spec.timeout || 300) * 1000)
hardStop.unref()

// The `ws` package under AMQPWebSocketClient, with the headers of the
// connection being opened (set just before the synchronous `new WebSocket`
// inside client.connect()).
let currentHeaders = null
const zeroMask = (mask) => mask.fill(0)
globalThis.WebSocket = class extends WS {
  constructor(url, protocols) {
    super(url, protocols ?? [], { headers: currentHeaders || {}, perMessageDeflate: false, generateMask: zeroMask })
  }
}

const K = spec.messages || 5
const SIZE = spec.size || 0
const loopTimeoutMs = (spec.loopTimeout || 60) * 1000

const stats = {
  loopsStarted: 0,
  loopsCompleted: 0, // every step done, every id back exactly once, closed
  loopsFailed: 0,
  connected: 0,
  closedClean: 0,
  published: 0,
  confirmed: 0,
  unconfirmed: 0, // publishes that got a nack or lost their connection before a confirm
  consumed: 0, // distinct confirmed ids delivered
  deliveries: 0, // every delivery, duplicates included
  duplicates: 0, // deliveries of an id already delivered
  missing: 0, // confirmed, never delivered (within the loop's timeout)
  missingInFailedLoops: 0, // of which: in a loop that failed afterwards
  foreign: 0, // deliveries of an id this loop never published
  corrupt: 0, // body does not match the id
  deliveredUnconfirmed: 0, // delivered but its publish was not confirmed
  errors: {},
  perListener: {},
}
const connectTimes = []
const loopTimes = []
let active = 0

function listenerStats(name) {
  return (stats.perListener[name] ??= { loops: 0, completed: 0, failed: 0, connected: 0, confirmed: 0, consumed: 0 })
}

// Errors, Node socket errors, and the ws package's error and close events
// (which is what AMQPWebSocketClient.connect rejects with).
function describe(e) {
  if (!e) return String(e)
  if (e.message) return e.message
  if (e.error && e.error.message) return e.error.message
  if (e.type === "close") return `WebSocket closed (${e.code}${e.reason ? " " + e.reason : ""})`
  if (e.type) return `WebSocket ${e.type}`
  return String(e)
}

function countError(e, where) {
  const key = `${where}: ${describe(e).slice(0, 120)}`
  stats.errors[key] = (stats.errors[key] || 0) + 1
}

// @cloudamqp/amqp-client 4.1.1 calls its rejectConnect unbound when a
// connect times out ("Cannot read properties of undefined (reading
// 'connectPromise')", seen with a gateway slowed by tracemalloc): count it as
// an error of the loop it hit, which then fails by its own timeout, instead
// of losing the whole soak's result.
process.on("uncaughtException", (e) => countError(e, "uncaught in amqp-client"))

function pct(sorted, p) {
  if (!sorted.length) return null
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}

function makeClient(listener, user, password) {
  if (listener === "amqp") {
    const t = spec.targets.amqp
    return new AMQPClient(`amqp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${t.host}:${t.port}/`)
  }
  return new AMQPWebSocketClient({ url: spec.targets.web.url, vhost: "/", username: user, password })
}

function connect(client, listener, user, password) {
  if (listener === "web") {
    currentHeaders = { Authorization: "Basic " + Buffer.from(`${user}:${password}`).toString("base64") }
  }
  const p = client.connect() // constructs the socket synchronously
  currentHeaders = null
  return p
}

function destroy(client) {
  try {
    const s = client.socket
    if (!s) return
    if (typeof s.terminate === "function") s.terminate() // ws
    else if (typeof s.destroy === "function") s.destroy() // net.Socket
  } catch {}
}

class Timeout extends Error {}

function withTimeout(promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Timeout(`${what} timed out after ${ms / 1000} s`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

let idSeq = 0
const runId = `${process.pid}-${Date.now().toString(36)}`

// One iteration; updates stats.  @return true if it completed cleanly.
async function iteration(loopNo, listener, user, password) {
  const ls = listenerStats(listener)
  ls.loops++
  stats.loopsStarted++
  const t0 = now()
  const end = t0 + loopTimeoutMs
  const left = (what) => {
    const ms = end - now()
    if (ms <= 0) throw new Timeout(`${what}: loop timed out`)
    return ms
  }
  const client = makeClient(listener, user, password)
  // The connection failing (closed by the peer, socket error) ends the
  // iteration at once instead of at its timeout.
  let broken
  const brokenP = new Promise((_, reject) => (broken = reject))
  brokenP.catch(() => {})
  client.onerror = (e) => broken(e)
  const step_ = (p, what) => withTimeout(Promise.race([p, brokenP]), left(what), what)
  const ids = new Map() // id -> {confirmed, seen}
  let confirmedHere = 0
  let unconfirmedHere = 0
  let step = "connect"
  let allBack = null
  let resolveAllBack = null
  try {
    await step_(connect(client, listener, user, password), step)
    connectTimes.push(now() - t0)
    stats.connected++
    ls.connected++
    step = "channel"
    const ch = await step_(client.channel(), step)
    step = "confirmSelect"
    await step_(ch.confirmSelect(), step)
    step = "queueDeclare"
    const q = await step_(ch.queueDeclare("", { exclusive: true, autoDelete: true }), step)
    allBack = new Promise((r) => (resolveAllBack = r))
    const maybeDone = () => {
      if (confirmedHere + unconfirmedHere !== K) return
      for (const v of ids.values()) if (v.confirmed && v.seen === 0) return
      resolveAllBack()
    }
    step = "basicConsume"
    await step_(
      ch.basicConsume(q.name, { noAck: true }, (msg) => {
        stats.deliveries++
        const id = msg.properties.messageId
        const entry = ids.get(id)
        if (!entry) {
          stats.foreign++
          return
        }
        const body = msg.bodyToString() || ""
        if (!body.startsWith(id)) stats.corrupt++
        entry.seen++
        if (entry.seen > 1) stats.duplicates++
        maybeDone()
      }),
      step,
    )
    step = "publish"
    const publishes = []
    for (let k = 0; k < K; k++) {
      const id = `${runId}-${loopNo}-${++idSeq}`
      ids.set(id, { confirmed: false, seen: 0 })
      const body = SIZE > id.length ? id + ".".repeat(SIZE - id.length) : id
      stats.published++
      publishes.push(
        ch.basicPublish("", q.name, body, { messageId: id }).then(
          () => {
            ids.get(id).confirmed = true
            confirmedHere++
            stats.confirmed++
            ls.confirmed++
            maybeDone()
          },
          (e) => {
            unconfirmedHere++
            stats.unconfirmed++
            countError(e, "publish")
            maybeDone()
          },
        ),
      )
    }
    step = "confirms"
    await step_(Promise.all(publishes), step)
    step = "consume"
    await step_(allBack, step)
    // One round trip on the channel: whatever the broker sent before its
    // reply (a duplicate, a stray delivery) has arrived by then.
    step = "round trip"
    await step_(ch.basicQos(0), step)
    step = "close"
    await step_(client.close(), step)
    stats.closedClean++
    // Tally (the connection is closed: nothing more can arrive).
    let consumedHere = 0
    for (const v of ids.values()) {
      if (v.confirmed && v.seen > 0) consumedHere++
      if (!v.confirmed && v.seen > 0) stats.deliveredUnconfirmed++
    }
    stats.consumed += consumedHere
    ls.consumed += consumedHere
    stats.missing += confirmedHere - consumedHere
    loopTimes.push(now() - t0)
    if (unconfirmedHere === 0) {
      stats.loopsCompleted++
      ls.completed++
      return true
    }
    stats.loopsFailed++
    ls.failed++
    return false
  } catch (e) {
    countError(e, step)
    destroy(client)
    stats.loopsFailed++
    ls.failed++
    let consumedHere = 0
    for (const v of ids.values()) {
      if (v.confirmed && v.seen > 0) consumedHere++
      if (!v.confirmed && v.seen > 0) stats.deliveredUnconfirmed++
    }
    stats.consumed += consumedHere
    ls.consumed += consumedHere
    const lost = confirmedHere - consumedHere
    stats.missing += lost
    stats.missingInFailedLoops += lost
    return false
  }
}

function summary() {
  const c = [...connectTimes].sort((a, b) => a - b)
  const l = [...loopTimes].sort((a, b) => a - b)
  return {
    ...stats,
    active,
    connectP50ms: pct(c, 50), connectP99ms: pct(c, 99), connectMaxMs: c.length ? c[c.length - 1] : null,
    loopP50ms: pct(l, 50), loopP99ms: pct(l, 99), loopMaxMs: l.length ? l[l.length - 1] : null,
    clientRssBytes: process.memoryUsage().rss,
    clientCpuSeconds: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
  }
}

async function main() {
  const n = spec.connections
  const listeners = spec.listeners
  const rampMs = (spec.rampSeconds || 0) * 1000
  const t0 = now()
  const deadline = spec.seconds ? t0 + spec.seconds * 1000 : Infinity
  const maxLoops = spec.maxLoops ?? Infinity
  const progress = setInterval(() => {
    const s = summary()
    emit({ event: "progress", t: (now() - t0) / 1000, active, loopsCompleted: s.loopsCompleted,
           loopsFailed: s.loopsFailed, connected: s.connected, confirmed: s.confirmed, consumed: s.consumed,
           duplicates: s.duplicates, missing: s.missing, errors: Object.values(s.errors).reduce((a, b) => a + b, 0) })
  }, (spec.progressSeconds || 5) * 1000)
  progress.unref()
  async function loop(i) {
    if (rampMs) await new Promise((r) => setTimeout(r, (rampMs * i) / n))
    const listener = listeners[i % listeners.length]
    const [user, password] = users[i % users.length]
    active++
    let iter = 0
    while (now() < deadline && stats.loopsStarted < maxLoops) {
      const ok = await iteration(`${i}.${iter++}`, listener, user, password)
      // After a failure, back off a little so that a refusing gateway is
      // not hammered in a tight loop.
      if (!ok) await new Promise((r) => setTimeout(r, 200))
    }
    active--
  }
  await Promise.all(Array.from({ length: n }, (_, i) => loop(i)))
  const seconds = (now() - t0) / 1000
  const s = summary()
  const soakSeconds = spec.seconds ? Math.min(seconds, spec.seconds) : seconds
  return { ...s, seconds, connections: n, listeners, messagesPerLoop: K, size: SIZE,
           setupPerSec: s.connected / seconds, loopsPerSec: s.loopsCompleted / seconds,
           confirmedPerSec: s.confirmed / seconds, soakSeconds }
}

try {
  const result = await main()
  emit({ result })
  process.exit(0)
} catch (e) {
  emit({ error: String((e && e.stack) || e), partial: summary() })
  process.exit(1)
}
