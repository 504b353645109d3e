// The WebSocket clients of bench/failover.py: one @cloudamqp/amqp-client
// publisher (confirms, numbered persistent messages) and one consumer, each
// an AMQPSession over WebSocket (the `ws` package, Authorization: Basic on
// the upgrade) reconnecting by itself as the library's documentation
// recommends; a publish that fails is published again once the session is
// back (at least once).
//
//   node bench/failover.mjs SPEC.json
//
// spec = {url, queue, user, password, rate, seconds, drain}
// Prints JSON lines; the last is {result: {confirmed, delivered, lost, duplicates, reconnects, ...}}.

import { AMQPSession } from "@cloudamqp/amqp-client"
import { readFileSync } from "node:fs"
import WS from "ws"

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"))
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n")
const now = () => performance.now() / 1000
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const basic = "Basic " + Buffer.from(`${spec.user}:${spec.password}`).toString("base64")

globalThis.WebSocket = class extends WS {
  constructor(url, protocols) {
    super(url, protocols ?? [], { headers: { Authorization: basic }, perMessageDeflate: false })
  }
}

const confirmed = new Set()
const delivered = []
const deliveredIds = new Set()
const reconnects = []
const errors = new Set()

function outages() {
  let down = null
  return {
    lost(error) {
      if (down === null) {
        down = now()
        errors.add(String(error?.message ?? error).slice(0, 200))
      }
    },
    back() {
      if (down !== null) {
        reconnects.push(now() - down)
        down = null
      }
    },
  }
}

function percentile(values, fraction) {
  if (!values.length) return null
  const sorted = [...values].sort((a, b) => a - b)
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] * 1000) / 1000
}

function summary() {
  const unique = new Set(delivered)
  let lost = 0
  for (const id of confirmed) if (!unique.has(id)) lost++
  return {
    confirmed: confirmed.size, delivered: delivered.length, lost, duplicates: delivered.length - unique.size,
    reconnects: reconnects.length, reconnect_p50_s: percentile(reconnects, 0.5),
    reconnect_p99_s: percentile(reconnects, 0.99),
    reconnect_max_s: reconnects.length ? Math.round(Math.max(...reconnects) * 1000) / 1000 : null,
    errors_seen: [...errors].sort(),
  }
}

const hardStop = setTimeout(() => {
  emit({ error: "timed out", result: summary() })
  process.exit(3)
}, (spec.seconds + spec.drain + 60) * 1000)

const reconnection = { reconnectInterval: 1000, maxReconnectInterval: 5000, backoffMultiplier: 2, maxRetries: 0 }
const publisherOutages = outages()
const consumerOutages = outages()
const consumer = await AMQPSession.connect(spec.url, {
  ...reconnection, ondisconnect: (e) => consumerOutages.lost(e), onconnect: () => consumerOutages.back(),
})
const publisher = await AMQPSession.connect(spec.url, {
  ...reconnection, ondisconnect: (e) => publisherOutages.lost(e),
})
const queueOptions = { durable: true, arguments: { "x-queue-type": "quorum" } }
const consumed = await consumer.queue(spec.queue, queueOptions)
await consumed.subscribe({ prefetch: 50 }, (msg) => {
  const id = Number(msg.bodyString())
  delivered.push(id)
  deliveredIds.add(id)
})
const queue = await publisher.queue(spec.queue, queueOptions)

const end = now() + spec.seconds
let next = 0
while (now() < end) {
  const id = next++
  for (;;) {
    try {
      await queue.publish(String(id), { deliveryMode: 2 })
      confirmed.add(id)
      publisherOutages.back()
      break
    } catch (error) {
      publisherOutages.lost(error)
      if (now() > end + spec.drain) break
      await sleep(500)
    }
  }
  await sleep(1000 / spec.rate)
}
emit({ event: "publishing stopped", confirmed: confirmed.size })
const drainEnd = now() + spec.drain
while (now() < drainEnd && [...confirmed].some((id) => !deliveredIds.has(id))) await sleep(200)
clearTimeout(hardStop)
emit({ result: summary() })
await Promise.allSettled([publisher.stop(), consumer.stop()])
process.exit(0)
