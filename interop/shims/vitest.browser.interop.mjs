// interop/run copies this file into the @cloudamqp/amqp-client checkout and
// runs `vitest --config vitest.browser.interop.mjs`: the suite's own browser
// tests (test-browser/), in headless Debian Chromium driven by playwright
// (its own browser download is not needed), with the vitest page on a fixed
// port so that the gateway's allowed_origins can name it.  The WebSocket URL
// comes from VITE_WS_URL, which the tests read.
import { defineConfig } from "vitest/config"
import { playwright } from "@vitest/browser-playwright"

const port = Number(process.env.INTEROP_BROWSER_PORT || "63315")

export default defineConfig({
  test: {
    name: "test-browser",
    include: ["test-browser/**/*.ts"],
    browser: {
      enabled: true,
      headless: true,
      api: { host: "127.0.0.1", port, strictPort: true },
      provider: playwright({
        launchOptions: {
          executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
          args: ["--no-sandbox"],
        },
      }),
      instances: [{ browser: "chromium" }],
    },
  },
  server: { host: "127.0.0.1", port, strictPort: true },
  envDir: ".",
})
