// The kaazing-promo demo page: log in, get a single-use ticket, open AMQP
// 0-9-1 over WebSocket through the gateway, declare a server-named exclusive
// queue, publish what the user types and show what arrives.
//
// Everything that came from the user, the gateway or the broker is put on
// the page with textContent, never innerHTML.

import { GatewayWebSocketClient } from "./amqp-gateway-client.mjs"

const ENDPOINT = (document.querySelector('meta[name="amqp-endpoint"]')?.content || "/amqp").replace(/\/+$/, "")
const CONNECTION_NAME = "kaazing-promo demo page"
// The gateway closes a handshake that takes longer than its listener's
// handshake_timeout (10 s by default); this is the page's own limit.
const HANDSHAKE_TIMEOUT = 15_000

const $ = (id) => document.getElementById(id)
const ui = {
  loginPanel: $("login-panel"),
  loginForm: $("login-form"),
  user: $("user"),
  password: $("password"),
  loginButton: $("login-button"),
  status: $("status"),
  sessionPanel: $("session-panel"),
  whoUser: $("who-user"),
  whoBrokerUser: $("who-broker-user"),
  whoVhost: $("who-vhost"),
  whoGroups: $("who-groups"),
  queueName: $("queue-name"),
  publishForm: $("publish-form"),
  message: $("message"),
  publishButton: $("publish-button"),
  disconnectButton: $("disconnect-button"),
  messages: $("messages"),
  noMessages: $("no-messages"),
}

let session = null // { client, channel, queue }

/**
 * Show one line of status. `kind` is info | ok | error; `code` is a short
 * machine-readable reason (401, 403, 429, 503, broker-down, …) the browser
 * test reads; `state` is idle | connecting | connected.
 */
function setStatus(text, { kind = "info", code = "", state } = {}) {
  ui.status.textContent = text
  ui.status.dataset.kind = kind
  ui.status.dataset.code = code
  if (state) ui.status.dataset.state = state
}

/** `Authorization: Basic …` for a user name and password, UTF-8 encoded. */
function basicAuthorization(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`)
  let binary = ""
  for (const byte of bytes) binary += String.fromCharCode(byte)
  return `Basic ${btoa(binary)}`
}

/** An error to show, with the status code it stands for. */
class PageError extends Error {
  constructor(message, code) {
    super(message)
    this.code = code
  }
}

/**
 * POST <endpoint>/ticket or GET <endpoint>/whoami with the typed credentials,
 * or (authorization null) with the session cookie the gateway set at the
 * last password login: HttpOnly, so this script never sees it; the browser
 * sends it to this origin only. The gateway answers a failed login without a
 * Basic challenge, so the browser never pops its own login dialog over the page.
 */
async function gatewayRequest(method, what, authorization) {
  let response
  try {
    response = await fetch(`${ENDPOINT}/${what}`, {
      method,
      credentials: "same-origin",
      cache: "no-store",
      headers: authorization ? { Authorization: authorization } : {},
    })
  } catch {
    throw new PageError("Cannot reach the gateway. Is it running?", "network")
  }
  if (response.ok) return response.json()
  switch (response.status) {
    case 401:
      throw new PageError("Wrong user name or password.", "401")
    case 403: {
      // The body is only compared, never shown.
      const body = await response.json().catch(() => ({}))
      if (body.error === "origin not allowed") {
        throw new PageError("This page's origin is not in the gateway's allowed_origins.", "403-origin")
      }
      throw new PageError("You are not authorized to use this gateway (your account is not in a "
        + "required group).", "403")
    }
    case 429: {
      const wait = parseInt(response.headers.get("Retry-After") || "", 10)
      const when = Number.isFinite(wait) ? `in ${wait} second${wait === 1 ? "" : "s"}` : "in a minute"
      throw new PageError(`Too many failed attempts. Try again ${when}.`, "429")
    }
    case 503:
      throw new PageError("The gateway cannot check passwords right now. Try again later.", "503")
    default:
      throw new PageError(`The gateway answered HTTP ${response.status}.`, String(response.status))
  }
}

/** Explain why the AMQP connection failed or ended. */
function describeConnectionError(error) {
  // Before Open-Ok the library rejects connect() with the WebSocket's own
  // close or error event; afterwards it reports an AMQPError.
  if (typeof CloseEvent !== "undefined" && error instanceof CloseEvent) {
    return closeCodeError(error.code)
  }
  if (error instanceof Event) {
    return new PageError("The gateway refused the WebSocket connection (an expired ticket?) "
      + "or could not be reached. Log in again.", "ws-refused")
  }
  const message = String(error?.message ?? error)
  const notClean = /not cleanly closed \((\d+)\)/.exec(message)
  if (notClean) return closeCodeError(Number(notClean[1]))
  const amqpClose = /^connection closed: (.*) \((\d+)\)$/.exec(message)
  if (amqpClose) {
    return new PageError(`The broker closed the connection: ${amqpClose[1]} (AMQP ${amqpClose[2]}).`,
      `amqp-${amqpClose[2]}`)
  }
  return new PageError(`Connection error: ${message}`, "amqp-error")
}

function closeCodeError(code) {
  if (code === 1011) {
    return new PageError("The gateway could not reach the message broker (is RabbitMQ running?).", "broker-down")
  }
  if (code === 1006) {
    return new PageError("The connection to the gateway was lost.", "connection-lost")
  }
  return new PageError(`The gateway closed the connection (WebSocket close ${code}).`, `ws-${code}`)
}

function webSocketURL(ticket) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:"
  return `${scheme}//${location.host}${ENDPOINT}?ticket=${encodeURIComponent(ticket)}`
}

function showIdentity(whoami, queueName) {
  ui.whoUser.textContent = whoami.user ?? ""
  ui.whoBrokerUser.textContent = whoami.broker_user ?? "(none)"
  ui.whoVhost.textContent = whoami.vhost ?? "/"
  ui.whoGroups.textContent = (whoami.groups || []).join(", ") || "(none)"
  ui.queueName.textContent = queueName
}

function showMessage(text) {
  const item = document.createElement("li")
  const time = document.createElement("time")
  const now = new Date()
  time.dateTime = now.toISOString()
  time.textContent = now.toLocaleTimeString()
  const body = document.createElement("span")
  body.className = "body"
  body.textContent = text
  item.append(time, " ", body)
  ui.messages.append(item)
  ui.noMessages.hidden = true
}

function setLoggedIn(loggedIn) {
  ui.loginPanel.hidden = loggedIn
  ui.sessionPanel.hidden = !loggedIn
  ui.loginButton.disabled = false
  ui.user.disabled = false
  ui.password.disabled = false
  if (loggedIn) {
    ui.message.focus()
  } else {
    ui.password.focus()
  }
}

function endSession(error) {
  if (session === null) return
  session = null
  ui.messages.replaceChildren()
  ui.noMessages.hidden = false
  setLoggedIn(false)
  if (error) {
    const explained = describeConnectionError(error)
    setStatus(explained.message, { kind: "error", code: explained.code, state: "idle" })
  }
}

/**
 * Log in and open the AMQP connection: with `Authorization: Basic` from the
 * form, or with the session cookie (authorization null).
 */
async function logIn(authorization) {
  setStatus(authorization ? "Checking your password…" : "Reconnecting…", { state: "connecting" })
  const { ticket } = await gatewayRequest("POST", "ticket", authorization)
  const whoami = await gatewayRequest("GET", "whoami", authorization)

  setStatus("Opening the AMQP connection…", { state: "connecting" })
  // The gateway authenticated the person already (the ticket) and replaces
  // whatever credentials the AMQP library sends with the promoted identity,
  // so these two are placeholders that never reach the broker.
  const client = new GatewayWebSocketClient(webSocketURL(ticket), "/", "ignored", "ignored", CONNECTION_NAME)
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new PageError("The gateway did not finish the AMQP handshake in time "
      + "(is the message broker running?).", "timeout")), HANDSHAKE_TIMEOUT)
  })
  const connecting = client.connect()
  connecting.catch(() => {}) // settled by the race below, or after it: never unhandled
  try {
    await Promise.race([connecting, timeout])
  } catch (error) {
    client.abort()
    throw error instanceof PageError ? error : describeConnectionError(error)
  } finally {
    clearTimeout(timer)
  }
  const current = { client }
  session = current
  client.onerror = (error) => {
    if (session !== current) return
    if (client.closed) {
      endSession(error)
      const { code } = describeConnectionError(error)
      // The gateway went away (a restart sends 320 first): come back with
      // the session cookie, no password, after a pause of our own so that a
      // gateway's browsers do not all return in the same instant.
      if (code === "amqp-320" || code === "connection-lost") resumeAfterRestart()
    } else {
      // A channel error: the connection itself is still up.
      const explained = describeConnectionError(error)
      setStatus(explained.message, { kind: "error", code: explained.code })
    }
  }
  const channel = await client.channel()
  // A server-named queue only this connection can use, gone when it closes.
  const queue = await channel.queueDeclare("", { exclusive: true, autoDelete: true, durable: false })
  await channel.basicConsume(queue.name, { noAck: true }, (msg) => {
    showMessage(msg.bodyToString() ?? "")
  })
  current.channel = channel
  current.queue = queue.name
  current.published = 0
  current.greeting = `Connected as ${whoami.user}; the broker sees ${whoami.broker_user ?? "the promoted user"}.`
  showIdentity(whoami, queue.name)
  setLoggedIn(true)
  setStatus(current.greeting, { kind: "ok", state: "connected" })
}

/** Log in again with the session cookie, a few times, with growing jittered pauses. */
async function resumeAfterRestart(attempt = 1) {
  if (session !== null || attempt > 6) return
  setStatus("The gateway went away; reconnecting…", { state: "connecting" })
  await new Promise((resolve) => setTimeout(resolve, (500 + Math.random() * 2500) * Math.min(attempt, 3)))
  if (session !== null) return
  try {
    await logIn(null)
  } catch (error) {
    if (session) {
      const { client } = session
      session = null
      client.close().catch(() => {})
    }
    const explained = error instanceof PageError ? error : describeConnectionError(error)
    if (["401", "403", "429"].includes(explained.code)) {
      // The session is gone (expired, revoked): the person logs in again.
      setStatus(explained.message, { kind: "error", code: explained.code, state: "idle" })
      setLoggedIn(false)
      return
    }
    return resumeAfterRestart(attempt + 1)
  }
}

ui.loginForm.addEventListener("submit", async (event) => {
  event.preventDefault()
  const user = ui.user.value.trim()
  const password = ui.password.value
  if (!user || !password) return
  ui.loginButton.disabled = true
  ui.user.disabled = true
  ui.password.disabled = true
  try {
    await logIn(basicAuthorization(user, password))
    ui.password.value = ""
  } catch (error) {
    if (session) {
      const { client } = session
      session = null
      client.close().catch(() => {})
    }
    const explained = error instanceof PageError ? error : describeConnectionError(error)
    setStatus(explained.message, { kind: "error", code: explained.code, state: "idle" })
    setLoggedIn(false)
  }
})

ui.publishForm.addEventListener("submit", async (event) => {
  event.preventDefault()
  if (session === null || !session.channel) return
  const text = ui.message.value
  if (!text) return
  try {
    // The default exchange routes by queue name: straight back to us.
    const current = session
    await current.channel.basicPublish("", current.queue, text, { contentType: "text/plain" })
    ui.message.value = ""
    current.published += 1
    const count = `${current.published} message${current.published === 1 ? "" : "s"}`
    setStatus(`${current.greeting} Published ${count}.`, { kind: "ok", state: "connected" })
  } catch (error) {
    const explained = describeConnectionError(error)
    setStatus(`Publish failed: ${explained.message}`, { kind: "error", code: explained.code })
  }
})

ui.disconnectButton.addEventListener("click", async () => {
  if (session === null) return
  const { client } = session
  session = null
  ui.disconnectButton.disabled = true
  try {
    // A polite AMQP Connection.Close, but no waiting on a broker that is gone.
    await Promise.race([client.close(), new Promise((resolve) => setTimeout(resolve, 3000))])
  } catch {
    // Already gone: nothing to do.
  } finally {
    client.abort()
    ui.disconnectButton.disabled = false
  }
  ui.messages.replaceChildren()
  ui.noMessages.hidden = false
  setLoggedIn(false)
  setStatus("Disconnected.", { state: "idle" })
})

ui.user.focus()
