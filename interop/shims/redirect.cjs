// Loaded into every Node process of a peer suite with
// NODE_OPTIONS="--require .../redirect.cjs" (interop/run sets it).
//
// The suites hard-code the broker's address (amqp://127.0.0.1, localhost,
// [::1], port 5672, amqps on 5671).  Instead of editing their test files, this
// preload rewrites the address a socket connects to: a loopback connection to
// a port named in INTEROP_REDIRECT ("5672=41234,5671=41235") goes to
// 127.0.0.1 on the mapped port (the dedicated RabbitMQ node, or a gateway's
// listener).  Every other connection is left alone, so a suite's own test
// servers on other ports work as before.  With INTEROP_REDIRECT_LOG set,
// each redirect appends one line to that file: the harness counts them to
// know the suite really reached the node or gateway it meant.
"use strict";

const fs = require("node:fs");
const net = require("node:net");

const LOOPBACK = new Set(["", "localhost", "127.0.0.1", "::1", "[::1]", "::ffff:127.0.0.1"]);

function parseMap(text) {
  const map = new Map();
  for (const pair of (text || "").split(",")) {
    const [from, to] = pair.split("=").map((s) => s && s.trim());
    if (from && to) {
      map.set(Number(from), Number(to));
    }
  }
  return map;
}

const redirects = parseMap(process.env.INTEROP_REDIRECT);
const redirectLog = process.env.INTEROP_REDIRECT_LOG;

function note(host, port, target) {
  if (redirectLog) {
    fs.appendFileSync(redirectLog, `node ${process.pid} ${host}:${port} -> 127.0.0.1:${target}\n`);
  }
}

function rewrite(options) {
  if (options === null || typeof options !== "object" || options.path !== undefined) {
    return options;
  }
  const host = options.host === undefined || options.host === null ? "localhost" : String(options.host);
  const target = redirects.get(Number(options.port));
  if (target === undefined || !LOOPBACK.has(host)) {
    return options;
  }
  note(host, options.port, target);
  // The IPv6 family hint ([::1]) would make Node look 127.0.0.1 up as v6.
  return { ...options, host: "127.0.0.1", port: target, family: 0 };
}

if (redirects.size > 0) {
  const originalConnect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function connect(...args) {
    const first = args[0];
    if (Array.isArray(first) && first.length > 0 && typeof first[0] === "object") {
      // net.connect() hands over its already normalized [options, callback]
      // array; a copy keeps the marker Node put on it.
      const copy = first.slice();
      Object.getOwnPropertySymbols(first).forEach((s) => {
        copy[s] = first[s];
      });
      copy[0] = rewrite(first[0]);
      args[0] = copy;
    } else if (first !== null && typeof first === "object") {
      args[0] = rewrite(first);
    } else if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
      const rewritten = rewrite({ port: first, host: typeof args[1] === "string" ? args[1] : undefined });
      if (rewritten.host === "127.0.0.1") {
        args[0] = rewritten.port;
        if (typeof args[1] === "string") {
          args[1] = rewritten.host;
        } else {
          args.splice(1, 0, rewritten.host);
        }
      }
    }
    return originalConnect.apply(this, args);
  };
}
