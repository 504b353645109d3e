// The AMQP 0-9-1 over WebSocket client the demo page uses: the bundled
// @cloudamqp/amqp-client 4.1.1, with one reassembly gap closed.
//
// The gateway sends each read from the broker as one binary WebSocket
// message, so AMQP frames may be split across messages or several may share
// one.  The library handles both (src/amqp-websocket-client.ts,
// handleMessage): it loops over every frame in a message and copies a
// partial frame into its frameBuffer until the rest arrives, including a
// 7-byte frame header split over two messages.  A header split over three or
// more messages, though, makes it throw a RangeError (it copies
// `7 - framePos` bytes from a message that may hold fewer).  Its TCP client
// was fixed for exactly that (src/amqp-socket-client.ts, onRead); the
// WebSocket client was not.  This subclass keeps topping up a partial header
// until the library can finish it.  (It reads the library's own fields, which
// TypeScript marks private: keep it with the vendored version.)

import { AMQPWebSocketClient } from "./vendor/amqp-client/amqp-websocket-client.mjs"

export * from "./vendor/amqp-client/amqp-websocket-client.mjs"

const FRAME_HEADER_SIZE = 7 // type (1), channel (2), size (4)

export class GatewayWebSocketClient extends AMQPWebSocketClient {
  handleMessage(event) {
    if (this.frameSize === 0 && this.framePos !== 0) {
      const data = new Uint8Array(event.data)
      if (data.byteLength < FRAME_HEADER_SIZE - this.framePos) {
        this.frameBuffer.set(data, this.framePos)
        this.framePos += data.byteLength
        return
      }
    }
    super.handleMessage(event)
  }

  /** Drop the WebSocket without an AMQP goodbye (a handshake that hangs). */
  abort() {
    this.closeSocket()
  }
}
