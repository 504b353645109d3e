import { AMQPClient } from "@cloudamqp/amqp-client"
const [port, mode, window, awaitEvery, count] = process.argv.slice(2).map((x,i)=> i==1? x : Number(x))
const c = new AMQPClient(`amqp://guest:guest@127.0.0.1:${port}/?frameMax=131072`)
await c.connect(); c.socket.setNoDelay(mode.includes("nd"))
const ch = await c.channel()
const pch = mode.includes("2ch") ? await c.channel() : ch
const q = await ch.queueDeclare("", { exclusive: true, autoDelete: true })
const body = Buffer.alloc(16, 0x61)
let received = 0, published = 0, resume = null, doneR; const done = new Promise(r=>doneR=r)
await ch.basicConsume(q.name, { noAck: true }, () => { received++; if (resume && published - received < window/2) { const r = resume; resume = null; r() } if (received === count) doneR() })
const t0 = performance.now(); let last
while (published < count) {
  if (published - received >= window) await new Promise(r => resume = r)
  last = pch.basicPublish("", q.name, body); published++
  if (awaitEvery && published % awaitEvery === 0) await last
}
await last; await done
const s = (performance.now()-t0)/1000
console.log(mode, window, awaitEvery, Math.round(count/s), "cpu", ((process.cpuUsage().user+process.cpuUsage().system)/1e6/s).toFixed(2))
process.exit(0)
