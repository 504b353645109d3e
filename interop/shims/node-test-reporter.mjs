// A reporter for `node --test` (interop/run passes it with --test-reporter):
// one JUnit <testcase> per test, classname = its file (relative to the
// suite's checkout), name = its describe blocks and its own name joined by
// " > ", the way vitest names them.  Node 20's own junit reporter nests
// every later file inside a describe block whose file timed out, which
// renames their tests; this keeps each test's name whatever happened
// before it.  A file that times out as a whole is one failed test named
// "(whole file)"; its tests that never ended are missing, and the harness
// reports them as "not run".
import path from "node:path"

const stacks = new Map()

function escape(text) {
  return String(text)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
}

function fileOf(data) {
  return data.file ? path.relative(process.cwd(), data.file) : "(unknown file)"
}

function testcase(event) {
  const data = event.data
  const file = fileOf(data)
  const stack = stacks.get(file) || []
  const details = data.details || {}
  const error = details.error
  let name
  if (data.nesting === 0 && data.file && data.name === data.file) {
    name = "(whole file)"
  } else {
    name = [...stack.slice(0, data.nesting), data.name].join(" > ")
  }
  if (details.type === "suite" && (event.type === "test:pass" || (error && error.failureType === "subtestsFailed"))) {
    // A describe block is only reported when it failed on its own (a hook).
    return ""
  }
  let body = ""
  if (event.type === "test:fail") {
    const cause = error && (error.cause || error)
    const message = (cause && (cause.message || String(cause))) || "failed"
    body = `<failure message="${escape(String(message).split("\n")[0].slice(0, 500))}"/>`
  } else if (data.skip !== undefined || data.todo !== undefined) {
    const reason = [data.skip, data.todo].find((r) => typeof r === "string") || ""
    body = `<skipped message="${escape(reason)}"/>`
  }
  const seconds = ((details.duration_ms || 0) / 1000).toFixed(3)
  return `    <testcase classname="${escape(file)}" name="${escape(name)}" time="${seconds}">${body}</testcase>\n`
}

export default async function* junit(source) {
  const cases = []
  for await (const event of source) {
    if (event.type === "test:start") {
      const file = fileOf(event.data)
      const stack = stacks.get(file) || []
      stack.length = event.data.nesting
      stack[event.data.nesting] = event.data.name
      stacks.set(file, stack)
    } else if (event.type === "test:pass" || event.type === "test:fail") {
      cases.push(testcase(event))
    }
  }
  yield '<?xml version="1.0" encoding="utf-8"?>\n<testsuites>\n  <testsuite name="node --test">\n'
  yield cases.join("")
  yield "  </testsuite>\n</testsuites>\n"
}
