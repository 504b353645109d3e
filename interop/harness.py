"""
The peer-suite harness behind interop/run (a developer tool, not run in CI):
real AMQP clients' own test suites, run directly against a dedicated
RabbitMQ node and through the gateway, with every difference listed.

  - Sources: the pinned release of each suite (interop/suites.py), cloned
    at its tag into the sources directory, or taken from C{--sources DIR}
    (one subdirectory per suite: amqp-client, pika, amqplib).  Nothing of
    them goes into this repository.
  - Installs: each Node suite's own C{npm ci}; pika's test dependencies and
    websockify in a venv (interop/requirements-peers.txt).
  - One dedicated RabbitMQ node (bench/infra.py) with a TLS listener; one
    gateway process per path (consolidated, passthrough, login), each with
    an AMQP, an AMQPS (ssl:) and, except login, a WebSocket listener.  The
    browser suite's direct path goes through websockify.
  - The suites are pointed at the node or a gateway by the preloads in
    interop/shims (their test files stay as released); the node is reset
    between runs.
  - The report (interop/report.py) goes to interop/results/<UTC time>.md,
    its differences explained from interop/expected.toml.

Run it through interop/run, which picks the project's venv.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, ROOT)

import infra  # noqa: E402  (bench/infra.py: the node and child processes)

from interop import report, suites  # noqa: E402

PROJECT_VENV = os.environ.get("KAAZING_PROMO_VENV") or os.path.dirname(os.path.dirname(sys.executable))
GIT_URL = "https://github.com/{repo}.git"
PATHS = ("direct", "consolidated", "passthrough", "login")
WS_PATH = "/ws/amqp"
SUITE_TIMEOUT = 900


def log(*parts):
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


class HarnessError(Exception):
    """
    Something the developer has to fix before a run (the message says what).
    """


#: What each path is, for the report's head.
PATH_DESCRIPTIONS = {
    "direct": "the suite straight to the node (the browser suite through websockify 0.13, a plain "
              "WebSocket-to-TCP relay)",
    "consolidated": 'gateway, listeners auth = "none", [promotion] mode = "consolidated" (user guest): '
                    "the client's credentials are ignored and replaced",
    "passthrough": 'gateway, listeners auth = "none", [promotion] mode = "passthrough": the client\'s own '
                   "Start-Ok relayed",
    "login": 'gateway, AMQP listeners auth = "required" (users.cnf: guest / guest), consolidated to guest: '
             "the client logs in to the gateway with SASL (no WebSocket listener: the browser suite cannot "
             "send credentials on the upgrade)",
}


# -- sources ------------------------------------------------------------------

def git(*args, cwd=None, check=True):
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise HarnessError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def ensureSource(source, sourcesDir, gitUrl, allowOtherVersion):
    """
    The checkout of a pinned release: C{sourcesDir/<directory>}, cloned at
    its tag when missing.

    @return: a description (tag and commit) for the report.
    """
    checkout = os.path.join(sourcesDir, source.directory)
    if not os.path.isdir(checkout):
        owner, name = source.repo.split("/")
        url = gitUrl.format(repo=source.repo, owner=owner, name=name)
        log(f"cloning {source.repo} {source.tag} from {url} into {checkout}")
        os.makedirs(sourcesDir, exist_ok=True)
        git("-c", "advice.detachedHead=false", "clone", "--quiet", "--depth", "1", "--branch", source.tag,
            url, checkout)
    if not os.path.isdir(os.path.join(checkout, ".git")):
        return f"{source.repo} (not a git checkout: {checkout}, release not checked)"
    commit = git("rev-parse", "--short", "HEAD", cwd=checkout)
    tags = git("tag", "--points-at", "HEAD", cwd=checkout, check=False).split()
    if source.tag not in tags:
        message = (f"{checkout} is at {commit} ({', '.join(tags) or 'no tag'}), not {source.repo} {source.tag}")
        if not allowOtherVersion:
            raise HarnessError(message + "; check out the tag, or pass --any-version")
        log("warning: " + message)
        return f"{source.repo} {commit} ({', '.join(tags) or 'untagged'}; pinned: {source.tag})"
    return f"{source.repo} {source.tag} ({commit})"


# -- what the run starts -------------------------------------------------------

class Environment(infra.Children):
    """
    The node, the gateways and websockify of one run, and its directory.
    """

    def __init__(self, base, browserPort):
        infra.Children.__init__(self, base, log)
        self.browserPort = browserPort
        self.node = None
        self.nodeTlsPort = None
        self.gateways = {}
        self.websockifyPort = None

    def stopAll(self):
        self.stopChildren()
        if self.node is not None:
            self.node.stop()

    def runLogged(self, argv, cwd, name, env=None):
        path = os.path.join(self.base, f"{name}.log")
        log(f"{name}: {' '.join(argv)} (log: {path})")
        with open(path, "ab") as out:
            result = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        if result.returncode != 0:
            raise HarnessError(f"{name} failed with exit code {result.returncode}; see {path}")

    def makeCertificate(self):
        """
        A self-signed certificate for 127.0.0.1 and localhost: the node's and
        the gateways' TLS listeners (the suites connect with certificate
        checks off).
        """
        d = os.path.join(self.base, "tls")
        os.makedirs(d)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       cwd=d, check=True, capture_output=True)
        self.key = os.path.join(d, "key.pem")
        self.cert = os.path.join(d, "cert.pem")

    def startNode(self):
        self.nodeTlsPort = infra.freePort()
        tls = [f"listeners.ssl.default = 127.0.0.1:{self.nodeTlsPort}",
               f"ssl_options.cacertfile = {self.cert}", f"ssl_options.certfile = {self.cert}",
               f"ssl_options.keyfile = {self.key}", "ssl_options.verify = verify_none",
               "ssl_options.fail_if_no_peer_cert = false"]
        t0 = time.monotonic()
        self.node = infra.RabbitNode(self.base, extraConfig=tls)
        self.node.start()
        infra.waitForPort(self.nodeTlsPort, 30, what="rabbitmq TLS listener")
        log(f"RabbitMQ node {self.node.node} on 127.0.0.1:{self.node.port}, TLS {self.nodeTlsPort} "
            f"(started in {time.monotonic() - t0:.1f} s)")

    def resetNode(self):
        """
        Empty the node (queues, exchanges, users back to guest) so that no
        run sees what an earlier one left.
        """
        for command in ("stop_app", "reset", "start_app"):
            self.node.ctl(command)
        infra.waitForPort(self.node.port, 60, what="rabbitmq after reset")
        infra.waitForPort(self.nodeTlsPort, 60, what="rabbitmq TLS listener after reset")

    def rabbitVersion(self):
        return self.node.ctl("eval", 'rabbit_misc:version().').strip().strip('"') or "?"

    def startWebsockify(self, peerVenv):
        self.websockifyPort = infra.freePort()
        c = self.child("websockify", [os.path.join(peerVenv, "bin", "websockify"),
                                      f"127.0.0.1:{self.websockifyPort}", f"127.0.0.1:{self.node.port}"])
        infra.waitForPort(self.websockifyPort, 20, c.proc, "websockify")

    def gatewayConfig(self, path):
        """
        @return: C{(config file, ports)} of the gateway for C{path}.
        """
        login = path == "login"
        ports = {"amqp": infra.freePort(), "amqps": infra.freePort()}
        if not login:
            ports["ws"] = infra.freePort()
        directory = os.path.join(self.base, f"gateway-{path}")
        os.makedirs(directory)
        auth = "required" if login else "none"
        lines = [f'user_auth = "{"internal" if login else "off"}"', "",
                 "[broker]", f'endpoint = "tcp:host=127.0.0.1:port={self.node.port}"', ""]
        # A suite's bad-password tests are failed logins from 127.0.0.1:
        # the login protection must not turn the next test away.
        limits = ["max_failed_logins = 100000"] if login else []
        lines += ["[[listeners]]", 'name = "amqp"', 'protocol = "amqp"',
                  f'endpoint = "tcp:port={ports["amqp"]}:interface=127.0.0.1"', f'auth = "{auth}"', *limits, ""]
        lines += ["[[listeners]]", 'name = "amqps"', 'protocol = "amqp"',
                  f'endpoint = "ssl:port={ports["amqps"]}:interface=127.0.0.1:privateKey={self.key}'
                  f':certKey={self.cert}"', f'auth = "{auth}"', *limits, ""]
        if "ws" in ports:
            origins = ", ".join(f'"http://{h}:{self.browserPort}"' for h in ("127.0.0.1", "localhost"))
            lines += ["[[listeners]]", 'name = "ws"', 'protocol = "websocket"',
                      f'endpoint = "tcp:port={ports["ws"]}:interface=127.0.0.1"', f'path = "{WS_PATH}"',
                      f'auth = "{auth}"', f"allowed_origins = [{origins}]", ""]
        if login:
            self.writeUsersCnf(directory)
            lines += ["[internal]", 'users_cnf = "users.cnf"', ""]
        lines += ["[promotion]", f'mode = "{"passthrough" if path == "passthrough" else "consolidated"}"']
        if path != "passthrough":
            secrets = os.path.join(directory, "broker-secrets.toml")
            with open(secrets, "w") as f:
                f.write('guest = "guest"\n')
            os.chmod(secrets, 0o600)
            lines += ['user = "guest"', 'secrets_file = "broker-secrets.toml"']
        config = os.path.join(directory, "gateway.toml")
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        return config, ports

    def writeUsersCnf(self, directory):
        from kaazing_promo.auth.passhash import makeHash
        from kaazing_promo.auth.userscnf import UserEntry, renderUsersCnf
        entries = [UserEntry("guest", makeHash("guest", iterations=1000), frozenset(["Everybody"]))]
        with open(os.path.join(directory, "users.cnf"), "wb") as f:
            f.write(renderUsersCnf(entries, {"Everybody": ["guest"]}))

    def startGateway(self, path):
        config, ports = self.gatewayConfig(path)
        twistd = os.path.join(PROJECT_VENV, "bin", "twistd")
        # This checkout's gateway, whatever the venv has installed.
        env = dict(os.environ, PYTHONPATH=ROOT)
        logFile = os.path.join(self.base, f"gateway-{path}.twistd.log")
        c = self.child(f"gateway-{path}", [twistd, "-n", "--pidfile=", "--logfile", logFile, "kaazing-promo",
                                           "--config", config], env=env, cwd=ROOT)
        for port in ports.values():
            infra.waitForPort(port, 30, c.proc, f"gateway {path}")
        self.gateways[path] = (c, ports, logFile)
        log(f"gateway {path}: " + ", ".join(f"{k} 127.0.0.1:{v}" for k, v in ports.items()))

    def target(self, path, transport):
        """
        @return: the L{suites.Target} of C{path}, or L{None} when the path
            has no listener for C{transport}.
        """
        if path == "direct":
            if transport == "ws":
                return suites.Target(wsUrl=f"ws://127.0.0.1:{self.websockifyPort}{WS_PATH}")
            return suites.Target(amqpPort=self.node.port, amqpsPort=self.nodeTlsPort)
        ports = self.gateways[path][1]
        if transport == "ws":
            return suites.Target(wsUrl=f"ws://127.0.0.1:{ports['ws']}{WS_PATH}") if "ws" in ports else None
        return suites.Target(amqpPort=ports["amqp"], amqpsPort=ports["amqps"])

    def gatewayHealth(self):
        """
        @return: C{(path, alive, lines logged with a traceback or an
            unhandled error)} for each gateway.
        """
        out = []
        for path, (c, _, logFile) in self.gateways.items():
            try:
                with open(logFile, encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                text = ""
            errors = sum(1 for line in text.splitlines() if "Traceback" in line or "Unhandled" in line)
            out.append((path, c.alive(), errors))
        return out


# -- one suite run -------------------------------------------------------------

def runSuite(env, suite, path, checkout, options, peerVenv):
    """
    Run C{suite} on C{path} once, bounded by C{options.timeout}.

    @return: a L{report.Run}.
    """
    target = env.target(path, suite.transport)
    name = f"{suite.name}-{path}"
    junit = os.path.join(env.base, f"{name}.xml")
    redirectLog = os.path.join(env.base, f"{name}.redirects")
    context = suites.Context(checkout=checkout, junit=junit, redirectLog=redirectLog, grep=options.grep,
                             peerVenv=peerVenv, browserPort=options.browser_port, chromium=options.chromium)
    childEnv = dict(os.environ)
    childEnv.pop("PYTHONPATH", None)
    childEnv.update(suite.environment(context, target))
    if not options.no_reset:
        env.resetNode()
    log(f"{name}: starting ({target})")
    t0 = time.monotonic()
    c = env.child(name, suite.argv(context), env=childEnv, cwd=checkout)
    status = "ok"
    try:
        c.proc.wait(options.timeout)
    except subprocess.TimeoutExpired:
        status = f"timed out after {options.timeout} s"
    c.stop()
    env.children.remove(c)
    seconds = time.monotonic() - t0
    results = {}
    if os.path.exists(junit):
        try:
            with open(junit, "rb") as f:
                results = report.parseJUnit(f.read(), suite.style)
        except report.ResultsError as e:
            status = f"results unreadable: {e}"
    elif status == "ok":
        status = f"exited {c.proc.returncode} without results (see {c.logPath})"
    if suite.transport == "tcp" and results:
        redirected = 0
        if os.path.exists(redirectLog):
            with open(redirectLog) as f:
                redirected = sum(1 for _ in f)
        if redirected == 0:
            status = "no connection was redirected: the suite did not reach the node or gateway"
    counted = report.counts(results)
    log(f"{name}: {status}, {counted['pass']} passed, {counted['fail']} failed, {counted['skip']} skipped "
        f"in {seconds:.0f} s")
    return report.Run(suite=suite.name, path=path, status=status, results=results, seconds=seconds,
                      exitCode=c.proc.returncode, log=c.logPath)


# -- set-up --------------------------------------------------------------------

def ensurePeerVenv(env, workDir):
    """
    The venv with pika's test dependencies and websockify, rebuilt when
    requirements-peers.txt changes.
    """
    venv = os.path.join(workDir, "venv-peers")
    requirements = os.path.join(HERE, "requirements-peers.txt")
    marker = os.path.join(venv, "requirements-peers.txt")
    try:
        with open(marker) as f, open(requirements) as g:
            if f.read() == g.read():
                return venv
    except OSError:
        pass
    shutil.rmtree(venv, ignore_errors=True)
    env.runLogged([sys.executable, "-m", "venv", venv], workDir, "venv-peers")
    env.runLogged([os.path.join(venv, "bin", "pip"), "install", "-q", "-r", requirements], workDir, "venv-peers")
    shutil.copyfile(requirements, marker)
    return venv


def toolVersions(options):
    def version(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip() or "?"
        except OSError:
            return "missing"
    out = [("Node", version(["node", "--version"])), ("Python", sys.version.split()[0])]
    if os.path.exists(options.chromium):
        out.append(("Chromium", version([options.chromium, "--version"])))
    return out


def gatewayCommit():
    """
    The checkout's commit, and whether the gateway's own code (not this
    harness, the docs or the results) differs from it.
    """
    commit = git("rev-parse", "--short", "HEAD", cwd=ROOT, check=False) or "?"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "kaazing_promo", "twisted", cwd=ROOT,
                check=False)
    return commit + (" (gateway code with uncommitted changes)" if dirty else "")


def parseOptions(argv):
    parser = argparse.ArgumentParser(
        prog="interop/run", description="Run real AMQP clients' own test suites directly against a "
        "dedicated RabbitMQ node and through the gateway; report every difference.")
    parser.add_argument("--sources", metavar="DIR",
                        help="the suites' source releases, one subdirectory each (amqp-client, pika, amqplib); "
                        "missing ones are cloned there (default: WORK/sources)")
    parser.add_argument("--git-url", default=os.environ.get("INTEROP_GIT_URL", GIT_URL), metavar="TEMPLATE",
                        help="where to clone a missing release from; {repo}, {owner} and {name} are replaced "
                        f"(default: {GIT_URL}; e.g. a local mirror: /srv/mirror/{{owner}}+{{name}})")
    parser.add_argument("--any-version", action="store_true",
                        help="accept a --sources checkout that is not at the pinned tag")
    parser.add_argument("--work", metavar="DIR", default=os.path.join(HERE, ".work"),
                        help="installs, logs and JUnit files (default: interop/.work)")
    parser.add_argument("--results", metavar="DIR", default=os.path.join(HERE, "results"),
                        help="where the Markdown report goes (default: interop/results)")
    parser.add_argument("--suites", default=",".join(suites.SUITES),
                        help=f"comma-separated, from: {', '.join(suites.SUITES)} (default: all)")
    parser.add_argument("--paths", default=",".join(PATHS),
                        help=f"comma-separated, from: {', '.join(PATHS)} (default: all; direct is always run "
                        "when a gateway path is, to compare with)")
    parser.add_argument("--grep", metavar="PATTERN",
                        help="only tests whose name matches, by each runner's own filter (vitest -t, "
                        "node --test-name-pattern, pytest -k)")
    parser.add_argument("--timeout", type=int, default=SUITE_TIMEOUT, metavar="SECONDS",
                        help=f"wall-clock limit of one suite run (default: {SUITE_TIMEOUT})")
    parser.add_argument("--no-reset", action="store_true", help="do not empty the node between runs")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
                        help="the browser for amqp-client-ws (default: /usr/bin/chromium)")
    parser.add_argument("--browser-port", type=int, default=0,
                        help="port of the vitest page in the browser suite (default: a free one)")
    parser.add_argument("--expected", default=os.path.join(HERE, "expected.toml"),
                        help="the list of expected differences (default: interop/expected.toml)")
    options = parser.parse_args(argv)
    options.suites = [s for s in options.suites.split(",") if s]
    options.paths = [p for p in options.paths.split(",") if p]
    for s in options.suites:
        if s not in suites.SUITES:
            parser.error(f"unknown suite {s!r} (known: {', '.join(suites.SUITES)})")
    for p in options.paths:
        if p not in PATHS:
            parser.error(f"unknown path {p!r} (known: {', '.join(PATHS)})")
    if "direct" not in options.paths:
        options.paths.insert(0, "direct")
    return options


def main(argv=None):
    options = parseOptions(argv)
    with open(options.expected) as f:
        expected = report.parseExpected(f.read(), os.path.relpath(options.expected, ROOT))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workDir = os.path.abspath(options.work)
    sourcesDir = os.path.abspath(options.sources or os.path.join(workDir, "sources"))
    base = os.path.join(workDir, "runs", stamp)
    os.makedirs(base)
    if not options.browser_port:
        options.browser_port = infra.freePort()
    selected = [suites.SUITES[s] for s in options.suites]
    if "amqp-client-ws" in options.suites and not os.path.exists(options.chromium):
        log(f"amqp-client-ws left out: no browser at {options.chromium} (--chromium PATH)")
        selected = [s for s in selected if s.name != "amqp-client-ws"]

    gateway = gatewayCommit()
    env = Environment(base, options.browser_port)
    runs = []
    releases = {}
    try:
        checkouts = {}
        for suite in selected:
            if suite.source not in releases:
                releases[suite.source] = ensureSource(suite.source, sourcesDir, options.git_url,
                                                      options.any_version)
            checkouts[suite.name] = os.path.join(sourcesDir, suite.source.directory)
            suite.prepare(checkouts[suite.name], lambda argv, cwd, name: env.runLogged(argv, cwd, name))
        peerVenv = None
        if any(s.name in ("pika", "amqp-client-ws") for s in selected):
            peerVenv = ensurePeerVenv(env, workDir)
        env.makeCertificate()
        env.startNode()
        if any(s.transport == "ws" for s in selected):
            env.startWebsockify(peerVenv)
        for path in options.paths:
            if path != "direct":
                env.startGateway(path)
        for suite in selected:
            for path in options.paths:
                if env.target(path, suite.transport) is None:
                    continue
                runs.append(runSuite(env, suite, path, checkouts[suite.name], options, peerVenv))
        health = env.gatewayHealth()
        rabbit = env.rabbitVersion()
    finally:
        env.stopAll()

    meta = [("when", stamp), ("command", "interop/run " + " ".join(argv if argv is not None else sys.argv[1:])),
            ("gateway", f"kaazing-promo {gateway}"), ("RabbitMQ", rabbit)]
    meta += toolVersions(options)
    meta += [(f"suite {source.directory}", text) for source, text in releases.items()]
    meta += [(f"path {p}", PATH_DESCRIPTIONS[p]) for p in options.paths]
    meta += [(f"gateway {p} at the end", ("running" if alive else "EXITED") + f", {errors} traceback/unhandled-error "
              "lines in its log") for p, alive, errors in health]
    meta.append(("logs and JUnit files", base))
    text = report.render(runs, expected, meta)
    os.makedirs(options.results, exist_ok=True)
    out = os.path.join(options.results, f"{stamp}.md")
    with open(out, "w") as f:
        f.write(text + "\n")
    with open(os.path.join(base, "results.json"), "w") as f:
        json.dump([{"suite": r.suite, "path": r.path, "status": r.status, "seconds": r.seconds,
                    "results": {k: [v.outcome, v.message] for k, v in r.results.items()}} for r in runs], f)
    analysis = report.analyse(runs, expected)
    print("\n".join(report.table(report.SUMMARY_HEADER, report.summaryRows(runs, analysis))))
    log(f"report: {out}")
    unexpected = sum(1 for pairs in analysis.values() for _, entry in pairs if entry is None)
    broken = [r for r in runs if r.status != "ok"]
    return 1 if unexpected or broken else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (HarnessError, report.ExpectedListError) as e:
        print(f"interop/run: {e}", file=sys.stderr)
        sys.exit(2)
