"""
bench/run's output: C{results/<ts>.json} (everything) and C{results/<ts>.md}
(the tables, with ratios vs direct, socat and websockify), plus the py-spy
analysis of collapsed stacks.
"""

import json
import os
import re
from collections import Counter

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def write(results, directory, ts):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{ts}.json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=False, default=str)
    with open(os.path.join(directory, f"{ts}.md"), "w") as f:
        f.write(markdown(results))


def _rows(results, scenario):
    return [r for r in results["rows"] if r.get("scenario") == scenario]


def _n(value, digits=0):
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _x(a, b, digits=2):
    if a is None or not b:
        return "—"
    return f"{a / b:.{digits}f}×"


def _short(path):
    return path.rsplit("site-packages/", 1)[-1] if path else path


def markdown(results):
    m = results["machine"]
    v = results["versions"]
    out = [f"# kaazing-promo bench — {results['timestamp']} ({results['mode']} mode)", ""]
    out += _issue19(results)
    out += [f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB memory, Linux {m['kernel']}, "
            f"open-files hard limit {m['open_files_hard_limit']}. Everything on loopback, one run "
            f"({results.get('total_seconds', '?')} s in all).", ""]
    la = results.get("load_average", {})
    out += [f"Load average (1, 5, 15 min) at start: {results.get('load_average_at_start', '?')}"
            + ("; per scenario (start → end): " + "; ".join(f"{k} {v['start']} → {v['end']}" for k, v in la.items())
               if la else "") + ". Other work on the machine moves absolute figures; ratios are taken within "
            "this run, rows of a scenario interleaved.", ""]
    out += [f"Versions: kaazing-promo {v['kaazing_promo']} (Python {v['python']}, Twisted {v['twisted']}, "
            f"Autobahn {v['autobahn']}), RabbitMQ {v['rabbitmq']} (OTP {v['erlang_otp']}, a dedicated node), "
            f"websockify {v['websockify']}, {v['socat']}.", ""]
    src = results.get("gateway_source", {})
    out += [f"Load generator: {v['load_generator']}. Its ceiling is the `direct` row "
            "(client straight to the broker). Gateway source "
            f"{'= this checkout' if src.get('same') else '≠ this checkout (see notes)'} "
            f"({src.get('installed')}); gateway start-up (to listening) "
            f"{results.get('gateway_startup_seconds', '—')} s.", ""]

    tp = _rows(results, "throughput")
    if tp:
        runs = results["settings"]["runs"]
        out += ["## Throughput — one connection, publish→consume",
                f"Median of {runs} interleaved run(s); messages per run: 16 B "
                f"{results['settings']['messages_16']:,}, 4 KiB {results['settings']['messages_4k']:,}, 64 KiB "
                f"{results['settings']['messages_64k']:,}; frame_max 131072; at most ~8 MiB (≤10,000 messages) "
                "in flight. CPU columns: the client's share of one core and its CPU time per message, the relay's "
                "and the broker's CPU time per message (medians over the runs). "
                + _wsClientText(results), "",
                "| size | target | msg/s | MB/s | × direct | × socat | × websockify | client CPU | client µs/msg "
                "| relay µs/msg | broker µs/msg |",
                "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for size in (16, 4096, 65536):
            rows = {r["target"]: r for r in tp if r["size"] == size}
            ref = {k: rows.get(k, {}).get("msgPerSec") for k in ("direct", "socat", "websockify")}
            for name, r in rows.items():
                rate = r.get("msgPerSec")
                relay = r.get("relayCpuUsPerMsg") if name != "direct" else None
                out.append(f"| {_size(size)} | {name} | {_n(rate)} | {_n(r.get('mbPerSec'), 1)} | "
                           f"{_x(rate, ref['direct'])} | {_x(rate, ref['socat'])} | {_x(rate, ref['websockify'])} | "
                           f"{_n(r.get('clientCpuShare'), 2)} | {_n(_clientUs(r), 1)} | {_n(relay, 1)} | "
                           f"{_n(r.get('brokerCpuUsPerMsg'), 1)} |")
        out += ["", "Each run (msg/s): " + "; ".join(
            f"{_size(r['size'])} {r['target']}: " + ", ".join(
                _n(x.get("msgPerSec")) if "error" not in x else "error" for x in r["runs"]) for r in tp), ""]


    for label, entry in results.get("profiles", {}).items():
        prof = entry.get("analysis")
        if not prof:
            continue
        res = prof.get("loadResult") or {}
        rate = res.get("msgPerSec") or res.get("perSec")
        out += [f"## Profile of the gateway: {entry['what']} (py-spy)",
                f"{prof['samples']:,} samples of the reactor thread at 200 Hz with `--idle`, "
                f"{prof['idleShare'] * 100:.1f}% of them idle in epoll; the shares below are of its busy samples "
                f"(thread-pool threads were busy in {prof.get('threadBusySamples', 0):,} samples). The load ran at {_n(rate)}/s while sampled (py-spy "
                f"pauses the process to sample). Files: `{entry.get('text')}`, `{entry.get('collapsed')}`"
                + (f", flame graph `{entry['svg']}`" if entry.get("svg") else "") + ".", "",
                "| self % | total % | function | file |", "|---:|---:|---|---|"]
        for f in prof["top"][:25 if label == "ws" else 15]:
            out.append(f"| {f['self'] * 100:.1f} | {f['total'] * 100:.1f} | `{f['func']}` | {_short(f['file'])} |")
        out += ["", "Self time by package: " + ", ".join(
            f"{p['package']} {p['self'] * 100:.1f}%" for p in prof.get("packages", [])[:8]), ""]

    lat = _rows(results, "latency")
    if lat:
        d = next((r.get("p50ms") for r in lat if r["target"] == "direct"), None)
        s = next((r.get("p50ms") for r in lat if r["target"] == "socat"), None)
        out += ["## Round trip — sequential publish→delivery, 16 B",
                f"{results['settings']['latency_samples']:,} samples per run after 200 warm-up; median over runs.",
                "", "| target | p50 ms | p99 ms | added p50 vs direct | added p50 vs socat's |",
                "|---|---:|---:|---:|---:|"]
        for r in lat:
            p50 = r.get("p50ms")
            added = None if p50 is None or d is None else p50 - d
            socatAdded = None if s is None or d is None else s - d
            vsSocat = "—"
            if r["target"] != "direct" and added is not None and socatAdded and socatAdded > 0:
                vsSocat = _x(added, socatAdded)
            out.append(f"| {r['target']} | {_n(p50, 3)} | {_n(r.get('p99ms'), 3)} | "
                       f"{'—' if added is None or r['target'] == 'direct' else f'{added:+.3f} ms'} | {vsSocat} |")
        out += [""]

    st = _rows(results, "setup")
    if st:
        d = next((r.get("perSec") for r in st if r["target"] == "direct"), None)
        out += ["## Connection setup — connect, authenticate, Open-Ok, close",
                f"{results['settings']['concurrency']} opens in flight, each opener from its own loopback address "
                "(the gateway's login protection counts per host). `cold`: every user's first login "
                "(PBKDF2-SHA256 at 1,000 iterations, or one HTTPS request to the stub API Gateway); `warm`: "
                "the same users again (verify cache / delegated cache).", "",
                "| target | authentication | cache | users | connections | ok | failed | per s | × direct | open p50 ms "
                "| open p99 ms | relay CPU ms/conn | realm requests |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in st:
            out.append(f"| {r['target']} | {r.get('auth')} | {r.get('cache')} | {_n(r.get('users'))} | "
                       f"{_n(r.get('connections'))} | "
                       f"{_n(r.get('ok'))} | {_n(r.get('failed'))} | {_n(r.get('perSec'))} | "
                       f"{_x(r.get('perSec'), d)} | {_n(r.get('openP50ms'), 1)} | {_n(r.get('openP99ms'), 1)} | "
                       f"{_n(r.get('relayCpuMsPerConn'), 2) if r['target'] != 'direct' else '—'} | "
                       f"{_n(r.get('realmRequests'))} |")
        errs = [f"{r['target']} ({r.get('cache')}): {r['errors'] or r.get('error')}" for r in st
                if r.get("errors") or r.get("error")]
        if errs:
            out += ["", "Errors: " + "; ".join(map(str, errs))]
        out += [""]

    hd = _rows(results, "held")
    if hd:
        out += ["## Held connections",
                f"Opened {results['settings']['concurrency']} at a time and held; the gateway rows are "
                "authenticated (internal realm; WebSocket with Basic on the upgrade) and each runs in a fresh "
                "gateway process. Memory is the growth of the process tree's RSS (and PSS: forked children "
                "share pages) over its idle baseline, divided by the connections held.", "",
                "| target | requested | held | alive after 1 s | failed | opens/s | memory of | RSS before MiB "
                "| RSS after MiB | RSS KiB/conn | PSS KiB/conn | processes |",
                "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
        for r in hd:
            out.append(f"| {r['target']} | {_n(r.get('requested'))} | {_n(r.get('held'))} | {_n(r.get('alive'))} | "
                       f"{_n(r.get('failed'))} | {_n(r.get('openPerSec'))} | {r.get('memoryOf')} | "
                       f"{_mib(r.get('rssBefore'))} | {_mib(r.get('rssAfter'))} | {_kib(r.get('rssPerConn'))} | "
                       f"{_kib(r.get('pssPerConn'))} | {_n(r.get('processes'))} |")
        errs = [f"{r['target']}: {r.get('errors') or r.get('error')}" for r in hd if r.get("errors") or r.get("error")]
        if errs:
            out += ["", "Errors: " + "; ".join(map(str, errs))]
        out += [""]

    sc = _rows(results, "slow-consumer")
    if sc:
        out += ["## Slow consumer — bounded memory",
                "A consumer (noAck) through each relay is stopped (SIGSTOP) while a publisher straight to the "
                "broker sends 64 KiB messages to its queue; 2 s later it is resumed and drains everything. The "
                "relay's RSS is sampled every 100 ms.", "",
                "| target | published MiB | max_pending_bytes | still queued in the broker while stalled MiB "
                "| RSS before MiB | growth while stalled MiB | peak growth MiB | drained MiB | drain s |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sc:
            out.append(f"| {r['target']} | {_mib(r.get('published'))} | {_n(r.get('maxPendingBytes'))} | "
                       f"{_mib(r.get('brokerReadyBytesWhileStalled'))} | {_mib(r.get('rssBefore'))} | {_mib(r.get('growthStalled'))} | {_mib(r.get('growthPeak'))} | "
                       f"{_mib(r.get('received'))} | {_n(r.get('drainSeconds'), 1)} |"
                       + (f" error: {r['error']}" if r.get("error") else ""))
        out += [""]

    su = _rows(results, "startup")
    if su:
        out += ["## Start-up and users.cnf size",
                "twistd spawned → every listener accepts (median of 3 starts), then logins through the AMQP "
                "listener, 50 in flight: `cold` = 200 users' first logins (PBKDF2-SHA256, 1,000 iterations), "
                "`warm` = 1,000 more (verify cache).", "",
                "| users | users.cnf MiB | start-up s | runs | cold logins/s | warm logins/s | RSS after MiB |",
                "|---:|---:|---:|---|---:|---:|---:|"]
        for r in su:
            out.append(f"| {_n(r['users'])} | {_mib(r.get('fileBytes'))} | {_n(r.get('startupSeconds'), 2)} | "
                       f"{r.get('startupRuns')} | {_n(r.get('coldPerSec'))} | {_n(r.get('warmPerSec'))} | "
                       f"{_mib(r.get('rssAfter'))} |")
        out += [""]

    ls = _rows(results, "login-storm")
    if ls:
        out += ["## Login storm — distinct users logging in at once over the AMQP listener",
                "Each user has the default hash cost (PBKDF2-SHA256, 600,000 iterations) and logs in from its own "
                "loopback address (127.0.10.1, …) to a fresh gateway (empty verify cache): header, Start-Ok PLAIN, "
                "Tune-Ok, Open → Open-Ok, Close. A \"retry after\" answer or a connection the gateway closed is "
                "tried again a second later. Ideal = users × one hash ÷ cores, with one hash timed in this run on "
                "one core (median of 5 just before the row; the 5 after it are shown too: the shared machine's "
                "load moves them); target: everyone in ≤ 1.2 × ideal. Meanwhile one already open connection "
                "through the same listener makes a 16 B publish→delivery round trip every 10 ms (target: p99 < 5 ms).", "",
                "| variant | users | one hash ms (before / after) | ideal s | bound s | all in after s | logged in "
                "| attempts | refusals and closes | login p50 s | gateway cores | probe idle p99 ms | probe p50 / p99 / max ms "
                "| load average before → after |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|"]
        for r in ls:
            if r.get("error"):
                out.append(f"| {r['variant']} | {_n(r.get('users'))} | error: {r['error']} |" + " |" * 11)
                continue
            probe = r.get("probe") or {}
            idle, load = probe.get("idle") or {}, probe.get("load") or {}
            failures = ", ".join(f"{k} {v:,}" for k, v in sorted((r.get("failures") or {}).items())) or "none"
            allIn = r.get("totalSeconds")
            label = r["variant"] + (" (py-spy attached)" if r.get("profile") else "")
            out.append(
                f"| {label} | {_n(r['users'])} | {_n(r['hashSeconds'] * 1e3)} / "
                f"{_n((r.get('hashSecondsAfter') or 0) * 1e3)} | {_n(r['idealSeconds'], 1)} | "
                f"{_n(r['boundSeconds'], 1)} | "
                f"{_n(allIn, 1) if allIn is not None else 'not all (last ok ' + _n(r.get('lastOkSeconds'), 1) + ')'}"
                f" | {_n(r['ok'])} | {_n(r['attempts'])} | {failures} | {_n(r.get('loginP50Seconds'), 1)} | "
                f"{_n(r.get('gatewayCores'), 2)} | {_n(idle.get('p99ms'), 2)} | {_n(load.get('p50ms'), 2)} / "
                f"{_n(load.get('p99ms'), 2)} / {_n(load.get('maxMs'), 1)} ({_n(load.get('samples'))} samples) | "
                f"{r.get('loadAverageBefore')} → {r.get('loadAverageAfter')} |")
        for r in ls:
            prof = r.get("profile") or {}
            if prof.get("text"):
                out += ["", f"`{r['variant']}` was profiled (py-spy on every thread of the gateway, slowing it): "
                        f"`{prof['text']}`; the reactor thread was idle in {prof['idleShare'] * 100:.1f}% of "
                        f"{prof['samples']:,} samples, thread-pool threads busy in {prof['threadBusySamples']:,}."]
            if r.get("outcomes"):
                out.append("")
                out.append(f"`{r['variant']}`: listener options {r.get('listenerOptions') or 'none (defaults)'}; "
                           "the last answer of those not logged in: " + "; ".join(
                               f"{k} ({v:,})" for k, v in sorted(r["outcomes"].items(), key=lambda kv: -kv[1])))
        out += [""]

    rs = _rows(results, "reconnect-storm")
    if rs:
        out += ["## Reconnect storm — a gateway restart with connected browsers",
                "Each page logged in once with its password on the WebSocket listener's ticket endpoint (which set "
                "its session cookie), opened the WebSocket with its ticket, and stayed, each from its own loopback "
                "address. The gateway (`key_file` set) is then stopped (SIGTERM: Close 320 to every page) and "
                "started again with the same configuration; every page asks for a new ticket with its cookie "
                "alone and opens the WebSocket again (to Open-Ok), at most `concurrency` in flight. Password "
                "hashes = the new gateway's `kaazing_promo_verify_cache_total{result=\"miss\"}` during the "
                "reconnect; \"N hashes would take\" = pages × one hash at the default cost (PBKDF2-SHA256, "
                "600,000 iterations, timed in this run) ÷ cores: the reconnect's price without the cookie.", "",
                "| pages | in flight | restart: stop / start s | all back after s | p50 / p99 ms | needed a password "
                "| password hashes | gateway CPU s | N hashes would take s | load average before → after |",
                "|---:|---:|---|---:|---|---:|---:|---:|---:|---|"]
        for r in rs:
            if r.get("error"):
                out.append(f"| {_n(r.get('users'))} | {_n(r.get('concurrency'))} | error: {r['error']} |" + " |" * 7)
                continue
            res, restart = r.get("result") or {}, r.get("restart") or {}
            back = res.get("seconds")
            out.append(
                f"| {_n(r['users'])} | {_n(r['concurrency'])} | {_n(restart.get('stopSeconds'), 2)} / "
                f"{_n(restart.get('startSeconds'), 2)} | "
                f"{_n(back, 2) if res.get('reconnected') == r['users'] else 'not all: ' + _n(res.get('reconnected'))}"
                f" | {_n(res.get('p50ms'))} / {_n(res.get('p99ms'))} | {_n(res.get('neededPassword'))} | "
                f"{_n(r.get('hashes'))} | {_n(r.get('gatewayCpuSeconds'), 2)} | "
                f"{_n(r.get('withoutCookiesSeconds'), 1)} | {r.get('loadAverageBefore')} → {r.get('loadAverageAfter')} |")
            if res.get("errors"):
                out.append("")
                out.append("Reconnect attempts tried again: " + "; ".join(
                    f"{k} ({v:,})" for k, v in sorted(res["errors"].items(), key=lambda kv: -kv[1])))
        out += [""]

    if results.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(out)


def _wsClientText(results):
    client = results.get("ws_client", "native")
    text = {"browser": "WebSocket rows: the ws package with a random masking key per frame XORed natively "
                       "(bufferutil), as browsers do; `gateway-ws-zeromask` is the same listener with an all-zero "
                       "key (the client skips masking: the relay's CPU only, not judged).",
            "zero": "WebSocket client: the ws package with an all-zero masking key (it skips masking; the relay "
                    "unmasks as usual) — not what browsers do.",
            "ws": "WebSocket client: the ws package with an all-zero masking key (it skips masking; the relay "
                  "unmasks as usual) — not what browsers do.",
            "native": "WebSocket client: Node's built-in WebSocket, which masks every byte in JavaScript (it costs "
                      "more per message than the TCP client)."}
    return text.get(client, client)


def _verdict(ok):
    return "met" if ok else "**NOT met**"


def _issue19(results):
    """
    Each issue-19 target as a ratio within this run (shared/PERFORMANCE.md,
    "Since 2026-12-06"), judged on the browser-like WebSocket rows.
    """
    lines = []
    tp = _rows(results, "throughput")

    def rate(target, size):
        return next((r.get("msgPerSec") for r in tp if r["target"] == target and r["size"] == size), None)
    for size in (16, 4096):
        d, so = rate("direct", size), rate("socat", size)
        if not d or not so:
            continue
        ref = min(d, so)
        refName = "direct" if d <= so else "socat"
        for target, need, what in (("gateway-ws", 0.9, "WebSocket listener"), ("gateway-tcp", 0.95, "AMQP listener")):
            x = rate(target, size)
            if x is None:
                continue
            lines.append(f"| throughput {_size(size)}, {what} | {x:,.0f} msg/s ÷ {ref:,.0f} ({refName}, the lower of "
                         f"direct {d:,.0f} and socat {so:,.0f}) | **{x / ref:.2f}×** | ≥ {need:.2f}× | "
                         f"{_verdict(x >= need * ref)} |")
        z = rate("gateway-ws-zeromask", size)
        if z is not None:
            lines.append(f"| (relay CPU only) {_size(size)}, WebSocket, all-zero key | {z:,.0f} msg/s ÷ {ref:,.0f} "
                         f"| {z / ref:.2f}× | not judged | — |")
    lat = {r["target"]: r.get("p50ms") for r in _rows(results, "latency")}
    d, so = lat.get("direct"), lat.get("socat")
    if d is not None and so is not None:
        socatAdded = so - d
        for target, slack, what in (("gateway-ws", 0.03, "WebSocket listener"), ("gateway-tcp", 0.0, "AMQP listener")):
            if lat.get(target) is None:
                continue
            added = lat[target] - d
            need = socatAdded + slack
            lines.append(f"| added p50 round trip 16 B, {what} | {lat[target]:.3f} − {d:.3f} ms (direct) | "
                         f"**{added:+.3f} ms** | ≤ socat's {socatAdded:+.3f}" + (f" + {slack:.2f}" if slack else "")
                         + f" = {need:+.3f} ms | {_verdict(added <= need)} |")
    st = _rows(results, "setup")
    direct = next((r.get("perSec") for r in st if r["target"] == "direct"), None)
    if direct:
        for target, need, what in (("gateway-ws", 0.8, "WebSocket listener (Basic)"),
                                   ("gateway-tcp", 0.9, "AMQP listener (PLAIN)")):
            warm = next((r for r in st if r["target"] == target and r.get("cache") == "warm"), None)
            if warm is None or not warm.get("perSec"):
                continue
            x = warm["perSec"]
            lines.append(f"| connection setup, {results['settings']['concurrency']} in flight, {what}, verify cache "
                         f"| {x:,.0f}/s ÷ {direct:,.0f}/s (direct) | **{x / direct:.2f}×** | ≥ {need:.2f}× | "
                         f"{_verdict(x >= need * direct)} |")
    for r in _rows(results, "login-storm"):
        if r.get("error") or r.get("variant") != "patient" or r.get("profile"):
            # A profiled row is slowed by py-spy: not judged.
            continue
        allIn = r.get("totalSeconds")
        lines.append(f"| login storm, {r['users']:,} users at once, AMQP listener | "
                     + (f"all in after {allIn:.1f} s" if allIn is not None else
                        f"{r['ok']:,} of {r['users']:,} in (last after {_n(r.get('lastOkSeconds'), 1)} s)")
                     + f" ÷ ideal {r['idealSeconds']:.1f} s | **{(allIn or float('inf')) / r['idealSeconds']:.2f}×** "
                     f"| ≤ 1.20× | {_verdict(allIn is not None and allIn <= r['boundSeconds'])} |")
        load = (r.get("probe") or {}).get("load") or {}
        if load.get("p99ms") is not None:
            lines.append(f"| open connection's round trip during the storm | p99 of {load['samples']:,} | "
                         f"**{load['p99ms']:.2f} ms** | < 5 ms | {_verdict(load['p99ms'] < 5)} |")
    if not lines:
        return []
    return (["## Issue 19 targets, this run", "",
             "Ratios within this run, the WebSocket rows with the browser-like client "
             f"({results.get('ws_client')}); load average at the start {results.get('load_average_at_start')}.", "",
             "| target | measured | ratio | needed | |", "|---|---|---:|---|---|"] + lines + [""])


def _clientUs(row):
    good = [x for x in row.get("runs", []) if "error" not in x and x.get("messages")]
    if not good:
        return None
    values = sorted(x["clientCpuSeconds"] / x["messages"] * 1e6 for x in good)
    return values[len(values) // 2]


def _size(size):
    return {16: "16 B", 4096: "4 KiB", 65536: "64 KiB"}.get(size, f"{size} B")


def _mib(b):
    return "—" if b is None else f"{b / 2**20:,.1f}"


def _kib(b):
    return "—" if b is None else f"{b / 1024:,.1f}"


# -- py-spy -----------------------------------------------------------------------

_IDLE = ("poll (twisted/internet/epollreactor.py", "doPoll (twisted/internet/epollreactor.py")


def _frame(text):
    m = _FRAME.match(text)
    if not m:
        return text, ""
    return m.group("func"), m.group("file")


def analyseCollapsed(path):
    """
    Self and inclusive shares per function from py-spy's raw (collapsed)
    output, over the samples not idle in epoll.
    """
    selfCount, totalCount, threadCount = Counter(), Counter(), Counter()
    samples = idle = threadBusy = 0
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                continue
            frames = [_frame(x) for x in stack.split(";") if x and not x.startswith("process ")
                      and not x.startswith("thread ")]
            if not frames:
                continue
            if frames[0][0].startswith("Thread._bootstrap"):
                # A thread-pool thread (PBKDF2, DNS): reported apart; the
                # shares are of the reactor thread.
                if frames[-1][0].rsplit(".", 1)[-1] not in ("wait", "get", "_wait_for_tstate_lock"):
                    threadBusy += n
                    threadCount[frames[-1]] += n
                continue
            samples += n
            leaf = frames[-1]
            if leaf[0].rsplit(".", 1)[-1] in ("poll", "doPoll") and "epollreactor" in leaf[1]:
                idle += n
                continue
            selfCount[leaf] += n
            for fr in set(frames):
                totalCount[fr] += n
    busy = max(1, samples - idle)
    packages = Counter()
    for (func, path), n in selfCount.items():
        packages[_package(path)] += n
    top = sorted(selfCount, key=lambda k: -selfCount[k])
    byTotal = sorted(totalCount, key=lambda k: -totalCount[k])
    return {
        "samples": samples, "idle": idle, "idleShare": idle / samples if samples else 0.0,
        "threadBusySamples": threadBusy,
        "threadTop": [{"func": k[0], "file": k[1], "samples": n} for k, n in threadCount.most_common(5)],
        "top": [{"func": k[0], "file": k[1], "self": selfCount[k] / busy, "total": totalCount[k] / busy}
                for k in top[:40]],
        "packages": [{"package": k, "self": n / busy} for k, n in packages.most_common()],
        "topTotal": [{"func": k[0], "file": k[1], "self": selfCount[k] / busy, "total": totalCount[k] / busy}
                     for k in byTotal[:60]],
    }


def _package(path):
    path = _short(path or "")
    if path.startswith("<") or not path:
        return "(other)"
    head = path.split("/", 1)[0]
    if head.endswith(".py"):
        return "(stdlib)" if "/lib/python" in path else head
    if "/lib/python3" in path:
        return "(stdlib)"
    return head


def profileText(a):
    lines = [f"py-spy on the gateway: {a['samples']} samples of the reactor thread, "
             f"{a['idle']} idle in epoll ({a['idleShare'] * 100:.1f}%); shares of its busy samples. "
             f"Thread-pool threads busy in {a.get('threadBusySamples', 0)} samples: "
             + ", ".join(f"{t['func']} {t['samples']}" for t in a.get("threadTop", [])), "",
             "By self time:", f"{'self%':>6} {'total%':>7}  function (file)"]
    for f in a["top"]:
        lines.append(f"{f['self'] * 100:6.1f} {f['total'] * 100:7.1f}  {f['func']} ({_short(f['file'])})")
    lines += ["", "Self time by package:"] + [f"{p['self'] * 100:6.1f}  {p['package']}" for p in a["packages"]]
    lines += ["", "By inclusive time:", f"{'total%':>7} {'self%':>6}  function (file)"]
    for f in a["topTotal"]:
        lines.append(f"{f['total'] * 100:7.1f} {f['self'] * 100:6.1f}  {f['func']} ({_short(f['file'])})")
    return "\n".join(lines) + "\n"
