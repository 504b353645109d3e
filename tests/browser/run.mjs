// Drives Debian's chromium through the gateway's demo page with
// playwright-core.  tests/integration/test_browser.py runs it against an in-process
// gateway; by hand:
//
//   node tests/browser/run.mjs --url http://127.0.0.1:8080/ --out /tmp/shots \
//     --plan '[{"name":"roundtrip","user":"demo","password":"demo-password","expect":"connected","message":"hi"}]'
//
// Each plan step gets a fresh page in one browser (fresh user-data-dir):
//   expect "connected": log in, check the identity, publish `message`, wait for it
//     to come back; with "hold": true, print a "holding" event and wait for a
//     line on standard input (the caller looks at the broker meanwhile), then
//     disconnect.
//   expect "error": log in and wait for the page's error status, whose
//     data-code must equal `code` ("401", "403", "429", "broker-down", …).
// A step may name its own "url" (another gateway); --url is the default.
// Every step saves <out>/<name>.png.  Standard output carries one JSON object
// per line ({"event": …}); the exit status is 0 only if every step did what
// it expected.

import { mkdtempSync, mkdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { parseArgs } from "node:util"

import { chromium } from "playwright-core"

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium"
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
]
const STEP_TIMEOUT = 20_000
const OVERALL_TIMEOUT = 90_000

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    out: { type: "string" },
    plan: { type: "string" },
  },
})
if (!args.url || !args.out || !args.plan) {
  console.error("usage: run.mjs --url URL --out DIR --plan JSON")
  process.exit(64)
}
const plan = JSON.parse(args.plan)
mkdirSync(args.out, { recursive: true })

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n")
}

class StepFailed extends Error {}

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()

async function waitForInput() {
  // A line, or the end of standard input, lets the step go on.
  await stdinLines.next()
}

/** The page's status line: text, kind (info|ok|error), code and state. */
async function status(page) {
  return page.locator("#status").evaluate((el) => ({
    text: el.textContent,
    kind: el.dataset.kind,
    code: el.dataset.code || "",
    state: el.dataset.state,
  }))
}

async function logIn(page, step) {
  await page.goto(step.url || args.url, { waitUntil: "load" })
  await page.fill("#user", step.user)
  await page.fill("#password", step.password)
  await page.click("#login-button")
  // Whichever comes first: connected, or an error on the status line.
  await page.waitForSelector('#status[data-state="connected"], #status[data-kind="error"]',
    { timeout: STEP_TIMEOUT })
  return status(page)
}

async function runStep(page, step) {
  const shot = join(args.out, `${step.name}.png`)
  const seen = await logIn(page, step)
  if (step.expect === "error") {
    await page.screenshot({ path: shot, fullPage: true })
    if (seen.kind !== "error") throw new StepFailed(`expected an error, the page says: ${seen.text}`)
    if (step.code && seen.code !== step.code) {
      throw new StepFailed(`expected error ${step.code}, the page shows ${seen.code}: ${seen.text}`)
    }
    emit({ event: "error-shown", name: step.name, status: seen, screenshot: shot })
    return
  }
  if (seen.kind === "error") {
    await page.screenshot({ path: shot, fullPage: true })
    throw new StepFailed(`login failed: ${seen.code}: ${seen.text}`)
  }
  const identity = await page.evaluate(() => ({
    user: document.getElementById("who-user").textContent,
    broker_user: document.getElementById("who-broker-user").textContent,
    vhost: document.getElementById("who-vhost").textContent,
    groups: document.getElementById("who-groups").textContent,
    queue: document.getElementById("queue-name").textContent,
  }))
  await page.fill("#message", step.message)
  await page.click("#publish-button")
  await page.locator("#messages li .body", { hasText: step.message }).first()
    .waitFor({ timeout: STEP_TIMEOUT })
  const received = await page.locator("#messages li .body").allTextContents()
  // What arrived is text: markup in it must not have become elements.
  const elements = await page.locator("#messages li .body *").count()
  if (elements) throw new StepFailed(`a received message became ${elements} HTML element(s)`)
  await page.screenshot({ path: shot, fullPage: true })
  emit({ event: "round-trip", name: step.name, identity, received, status: await status(page), screenshot: shot })
  if (step.hold) {
    emit({ event: "holding", name: step.name })
    await waitForInput()
  }
  await page.click("#disconnect-button")
  await page.waitForSelector("#status:text-is('Disconnected.')", { timeout: STEP_TIMEOUT })
  emit({ event: "disconnected", name: step.name })
}

async function main() {
  const profile = mkdtempSync(join(tmpdir(), "kaazing-promo-chromium-"))
  let context
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      viewport: { width: 900, height: 720 },
      deviceScaleFactor: 1,
    })
    let failures = 0
    for (const [index, step] of plan.entries()) {
      const page = index === 0 && context.pages().length ? context.pages()[0] : await context.newPage()
      const problems = []
      const origin = new URL(step.url || args.url)
      // The page must load nothing from anywhere else (no CDN: it works
      // offline), break no Content-Security-Policy rule and throw nothing.
      page.on("request", (request) => {
        const url = new URL(request.url())
        if (url.host !== origin.host || !/^(https?|wss?):$/.test(url.protocol)) {
          problems.push(`request to another origin: ${request.url()}`)
        }
      })
      page.on("websocket", (socket) => {
        if (new URL(socket.url()).host !== origin.host) problems.push(`WebSocket to another host: ${socket.url()}`)
      })
      page.on("pageerror", (error) => problems.push(`uncaught: ${error.message}`))
      page.on("console", (message) => {
        if (/Content.Security.Policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`)
      })
      try {
        await runStep(page, step)
        if (problems.length) throw new StepFailed(problems.join("; "))
        emit({ event: "passed", name: step.name })
      } catch (error) {
        failures += 1
        emit({ event: "failed", name: step.name, error: String(error?.message ?? error), problems })
        await page.screenshot({ path: join(args.out, `${step.name}-failure.png`), fullPage: true }).catch(() => {})
      } finally {
        await page.close().catch(() => {})
      }
    }
    return failures === 0 ? 0 : 1
  } finally {
    if (context) await context.close().catch(() => {})
    rmSync(profile, { recursive: true, force: true })
  }
}

const overall = setTimeout(() => {
  emit({ event: "failed", name: "*", error: `gave up after ${OVERALL_TIMEOUT / 1000} s` })
  process.exit(2)
}, OVERALL_TIMEOUT)

main().then(
  (code) => {
    clearTimeout(overall)
    process.exitCode = code
    process.stdin.destroy()
  },
  (error) => {
    clearTimeout(overall)
    emit({ event: "failed", name: "*", error: String(error?.stack ?? error) })
    process.exitCode = 1
    process.stdin.destroy()
  },
)
