// Feeds the page's AMQP client (kaazing_promo/data/web/amqp-gateway-client.mjs,
// the bundled @cloudamqp/amqp-client plus its header fix) the same AMQP
// frames cut into WebSocket messages every way the gateway might: several
// frames in one message, a frame over several messages, a 7-byte frame
// header over two and over three messages, one byte per message.  Needs no
// browser and no node_modules.
//
//   node tests/browser/frames.mjs kaazing_promo/data/web
//
// Prints one JSON line {"cases": N, "failures": [...]}; exits 1 on a failure.

import { join, resolve } from "node:path"
import { pathToFileURL } from "node:url"

const webroot = resolve(process.argv[2] || "kaazing_promo/data/web")
const { GatewayWebSocketClient } = await import(pathToFileURL(join(webroot, "amqp-gateway-client.mjs")).href)

function frame(type, channel, size, fill) {
  const bytes = new Uint8Array(8 + size)
  const view = new DataView(bytes.buffer)
  view.setUint8(0, type)
  view.setUint16(1, channel)
  view.setUint32(3, size)
  bytes.fill(fill, 7, 7 + size)
  bytes[7 + size] = 0xce
  return bytes
}

// A heartbeat, a body frame larger than one message would usually be, a
// heartbeat, a small body frame: 5,035 bytes in all.
const frames = [frame(8, 0, 0, 0), frame(3, 1, 5000, 7), frame(8, 0, 0, 0), frame(3, 2, 3, 1)]
const stream = new Uint8Array(frames.reduce((n, f) => n + f.length, 0))
let offset = 0
const boundaries = []
for (const f of frames) {
  stream.set(f, offset)
  offset += f.length
  boundaries.push(offset)
}
const expected = JSON.stringify(frames.map((f) => Array.from(f)))

function feed(cuts) {
  const client = new GatewayWebSocketClient("ws://127.0.0.1/amqp")
  const parsed = []
  client.parseFrames = (view) => {
    parsed.push(Array.from(new Uint8Array(view.buffer, view.byteOffset, view.byteLength)))
  }
  let last = 0
  for (const cut of [...cuts, stream.length]) {
    const message = stream.slice(last, cut)
    last = cut
    if (message.length) client.handleMessage({ data: message.buffer })
  }
  return JSON.stringify(parsed) === expected ? null : `parsed ${parsed.length} frames`
}

const cases = {
  "all frames in one message": [],
  "one frame per message": boundaries.slice(0, -1),
  "a body frame over three messages": [100, 3000],
}
const second = boundaries[0] // where the 5,008-byte frame starts
for (let k = 1; k < 7; k++) cases[`header split ${k}+${7 - k} over two messages`] = [second + k]
cases["header split 2+2+3 over three messages"] = [second + 2, second + 4]
cases["header split 1+1+1+1+1+1+1"] = [1, 2, 3, 4, 5, 6].map((k) => second + k)
cases["one byte per message"] = Array.from({ length: stream.length - 1 }, (_, i) => i + 1)

const failures = []
for (const [name, cuts] of Object.entries(cases)) {
  let problem
  try {
    problem = feed(cuts)
  } catch (error) {
    problem = `threw ${error?.name}: ${error?.message}`
  }
  if (problem) failures.push(`${name}: ${problem}`)
}
console.log(JSON.stringify({ cases: Object.keys(cases).length, failures }))
process.exitCode = failures.length ? 1 : 0
