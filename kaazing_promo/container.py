"""
C{kaazing-promo containerfile}: a container build context, the analogue of
the Microgateway's C{createDockerFile} (as C{provision} is of its
C{createInstance}).

The context builds on its own, with no network and no registry but the one
its C{BASE} comes from::

    Containerfile                 Dockerfile syntax (docker build, podman build --format docker)
    wheels/*.whl                  this package and every dependency, for the host's Python and machine
    etc/gateway.toml              the configuration, paths pointing inside the image
    etc/config/users.cnf          the instance's users.cnf (internal realm)
    etc/...                       the overlay, CA file and web roots the configuration names
    broker-secrets.toml.example   which broker users the secrets file must name (no password)

No secret is copied: the broker secrets are read at run time from
L{SECRETS_PATH} (mounted read-only) or C{$KAAZING_PROMO_SECRETS}, and the
image's configuration names L{SECRETS_PATH} whenever the promotion mode logs
in with broker passwords, so that the gateway refuses to START without them
(one line: the secrets file cannot be read) instead of refusing every login.

Everything here runs on the host; the image's C{HEALTHCHECK} is a
self-contained C{python -c} with urllib (minbase images have no curl).
"""

import configparser
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from importlib import resources

import attr

from kaazing_promo import __version__
from kaazing_promo.adapters.twistedinternals import parseEndpointString
from kaazing_promo.errors import ConfigError
from kaazing_promo.tomlwriter import dumpToml, tomlKey

IMAGE_ETC = "/etc/kaazing-promo"
IMAGE_CONFIG = IMAGE_ETC + "/gateway.toml"
IMAGE_VENV = "/opt/kaazing-promo/venv"
SECRETS_PATH = "/run/secrets/kaazing-promo/broker-secrets.toml"
GATEWAY_UID = 10001
DEFAULT_BASE = "python:3.11-slim"
# Modes whose promoter logs in with a broker password from the secret store.
SECRET_MODES = ("identity", "mapping", "consolidated")
# Modes that read no secret store: a secrets_file left in would only fail start-up.
SECRETLESS_MODES = ("passthrough", "token")
# The files this command writes in the context (all it removes with --force).
CONTEXT_ENTRIES = ("Containerfile", "wheels", "etc", "broker-secrets.toml.example")
# What a source checkout holds besides the source (left out of the wheel build).
_NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "_trial_temp*", "node_modules",
               "__pycache__", "*.pyc", ".trial.log")
# The checkout's pins: the versions the suite last passed with.
CONSTRAINTS = "constraints.txt"
# Endpoint parameters that name files (TLS keys, certificates): never copied.
_FILE_PARAMETERS = ("privateKey", "certKey", "extraCertChain", "caCertsDir", "dhParameters")


@attr.s(frozen=True)
class Address:
    """
    Where a server endpoint listens, as far as a container cares.

    @ivar scheme: C{"http"} (plain TCP) or C{"https"} (C{ssl:}).
    @ivar host: the interface, or L{None} for all of them.
    @ivar port: the TCP port (0: chosen at start).
    """

    scheme = attr.ib()
    host = attr.ib()
    port = attr.ib()

    def connectHost(self):
        """
        @return: the address a process on the same host connects to.
        """
        if self.host in (None, "", "0.0.0.0"):
            return "127.0.0.1"
        if self.host == "::":
            return "::1"
        return self.host


def _splitEndpoint(description):
    """
    @return: C{(wrappers, args, kwargs)}: the C{haproxy:} prefixes, then the
        positional and keyword parameters of the endpoint itself (Twisted's
        own parser, backslash escapes included).
    """
    args, kwargs = parseEndpointString(description)
    wrappers = []
    while args and args[0] == "haproxy":
        wrappers.append(args.pop(0))
    return wrappers, args, kwargs


def _quote(value):
    return "".join("\\" + c if c in ":=\\" else c for c in str(value))


def _joinEndpoint(wrappers, args, kwargs):
    parts = list(wrappers) + [_quote(arg) for arg in args]
    parts += [f"{_quote(key)}={_quote(value)}" for key, value in kwargs.items()]
    return ":".join(parts)


def endpointAddress(description):
    """
    @param description: a Twisted server endpoint string.
    @return: the L{Address} of a C{tcp:}, C{tcp6:} or C{ssl:} endpoint
        (behind C{haproxy:} too), or L{None} for kinds with no port of their
        own (C{systemd:}, C{unix:}, …).
    """
    try:
        wrappers, args, kwargs = _splitEndpoint(description)
    except Exception:
        return None
    if not args or args[0] not in ("tcp", "tcp6", "ssl"):
        return None
    port = kwargs.get("port", args[1] if len(args) > 1 else None)
    try:
        port = int(port)
    except (TypeError, ValueError):
        return None
    return Address("https" if args[0] == "ssl" else "http", kwargs.get("interface"), port)


def _clientHost(description):
    """
    @return: the host of a C{tcp:}, C{tcp6:} or C{tls:} client endpoint
        string, else L{None}.
    """
    try:
        args, kwargs = parseEndpointString(description)
    except Exception:
        return None
    if not args or args[0] not in ("tcp", "tcp6", "tls"):
        return None
    return kwargs.get("host", args[1] if len(args) > 1 else None)


def listenOnAllInterfaces(description):
    """
    @return: C{description} listening on every interface instead of the
        loopback one (C{0.0.0.0}, or C{::} for C{tcp6:}); other endpoints
        and other interfaces unchanged.
    """
    try:
        wrappers, args, kwargs = _splitEndpoint(description)
    except Exception:
        return description
    if not args or args[0] not in ("tcp", "tcp6", "ssl"):
        return description
    interface = kwargs.get("interface")
    if interface is None:
        return description
    if interface == "localhost" or interface.startswith("127."):
        kwargs["interface"] = "0.0.0.0"
    elif interface == "::1":
        kwargs["interface"] = "::"
    else:
        return description
    return _joinEndpoint(wrappers, args, kwargs)


# -- the context ---------------------------------------------------------------

@attr.s
class Context:
    """
    What L{buildContext} wrote.

    @ivar path: the context directory.
    @ivar ports: the ports the image C{EXPOSE}s.
    @ivar health: the URL the C{HEALTHCHECK} asks, or L{None}.
    @ivar brokerUsers: the broker users the secrets must name, or L{None}
        when they cannot be listed (identity mode) or none are needed.
    @ivar needsSecrets: whether the image refuses to start without secrets.
    @ivar notes: lines for the operator (what was rewritten, what to mount).
    """

    path = attr.ib()
    ports = attr.ib(factory=list)
    health = attr.ib(default=None)
    brokerUsers = attr.ib(default=None)
    needsSecrets = attr.ib(default=False)
    notes = attr.ib(factory=list)


def _isCheckout(root):
    setupCfg = os.path.join(root, "setup.cfg")
    if not os.path.isfile(setupCfg):
        return False
    parser = configparser.ConfigParser()
    try:
        parser.read(setupCfg)
        return parser.get("metadata", "name") == "kaazing-promo"
    except (configparser.Error, OSError):
        return False


def _sourceCheckout():
    """
    @return: the source checkout this package runs from, else the current
        directory if it is one (an installed package has no C{setup.cfg}
        beside it), else L{None}.
    """
    import kaazing_promo
    for root in (os.path.dirname(os.path.dirname(os.path.abspath(kaazing_promo.__file__))), os.getcwd()):
        if _isCheckout(root):
            return root
    return None


def _copyFile(source, target, what):
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(source, target)
        os.chmod(target, 0o644)
    except OSError as e:
        raise ConfigError(f"cannot copy {what} {source} into the context: {e.strerror or e}") from None


def _prepareOut(out, force):
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out} exists and is not a directory; choose another path")
    existing = os.listdir(out) if os.path.isdir(out) else []
    if existing and not force:
        raise ConfigError(f"--out {out} is not empty; choose an empty or new directory, "
                          "or pass --force to rewrite the context there")
    strangers = sorted(set(existing) - set(CONTEXT_ENTRIES))
    if strangers:
        raise ConfigError(f"--out {out} holds {strangers[0]!r}, which this command did not write; "
                          "choose an empty or new directory")
    for entry in existing:
        path = os.path.join(out, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    os.makedirs(out, exist_ok=True)


def collectWheels(wheelsDir, wheelDir=None, source=None, runner=subprocess.run):
    """
    Put this package's wheel and every dependency's into C{wheelsDir}.

    @param wheelDir: a directory of ready wheels to copy (offline).
    @param source: the source checkout to build the package's wheel from
        (default: see L{_sourceCheckout}); C{pip wheel} fetches the
        dependencies from the package index the host's pip uses, in the
        versions its L{CONSTRAINTS} file pins.
    @return: the wheel file names.
    """
    os.makedirs(wheelsDir, exist_ok=True)
    if wheelDir is not None:
        try:
            names = sorted(name for name in os.listdir(wheelDir) if name.endswith(".whl"))
        except OSError as e:
            raise ConfigError(f"--wheel-dir {wheelDir}: {e.strerror}") from None
        for name in names:
            shutil.copyfile(os.path.join(wheelDir, name), os.path.join(wheelsDir, name))
    else:
        source = source or _sourceCheckout()
        if source is None:
            raise ConfigError("no kaazing-promo source checkout here to build the wheel from; run this "
                              "in the checkout, or pass --source CHECKOUT, or --wheel-dir DIR holding its wheel and its "
                              "dependencies' (pip wheel --wheel-dir DIR kaazing-promo)")
        # Built from a clean copy: a checkout's stale build/ would leak into the wheel.
        with tempfile.TemporaryDirectory(prefix="kaazing-promo-source-") as scratch:
            clean = os.path.join(scratch, "source")
            try:
                shutil.copytree(source, clean, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
            except OSError as e:
                raise ConfigError(f"cannot copy the source checkout {source}: {e}") from None
            command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                       "--wheel-dir", wheelsDir, clean]
            # The image gets the versions the suite last passed with, as ./dev installs them.
            constraints = os.path.join(clean, CONSTRAINTS)
            if os.path.isfile(constraints):
                command[-1:-1] = ["--constraint", constraints]
            result = runner(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            tail = " | ".join(result.stdout.strip().splitlines()[-3:])
            raise ConfigError(f"pip wheel {source} failed ({tail}); the host needs the package "
                              "index (or pass --wheel-dir)")
        names = sorted(name for name in os.listdir(wheelsDir) if name.endswith(".whl"))
    if not any(name.startswith("kaazing_promo-") for name in names):
        raise ConfigError(f"no kaazing_promo-*.whl among the wheels ({wheelDir or wheelsDir}); "
                          "add the package's own wheel (pip wheel --wheel-dir DIR CHECKOUT)")
    foreign = [name for name in names if not _wheelFits(name)]
    if foreign:
        raise ConfigError(f"wheel {foreign[0]} is not for Python {sys.version_info[0]}.{sys.version_info[1]} "
                          f"on {platform.machine()}; build the wheels with the Python the image runs")
    return names


def _wheelFits(name):
    """
    @return: whether wheel file C{name} installs on this Python and machine
        (the image's, since its BASE must match them).
    """
    parts = name[:-len(".whl")].split("-")
    if len(parts) < 5:
        return False
    pythons, abi, platforms = parts[-3].split("."), parts[-2], parts[-1].split(".")
    here = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    pythonOK = here in pythons or abi == "abi3" or any(tag in ("py3", f"py{here[2:]}") for tag in pythons)
    platformOK = "any" in platforms or any(tag.endswith(platform.machine()) for tag in platforms)
    return pythonOK and platformOK


def _healthcheck(address):
    url = f"{address.scheme}://{_urlHost(address.connectHost())}:{address.port}/healthz"
    context = ", context=ssl._create_unverified_context()" if address.scheme == "https" else ""
    code = ("import ssl, sys, urllib.request\n"
            "try:\n"
            f"    urllib.request.urlopen({url!r}, timeout=4{context}).read()\n"
            "except Exception as e:\n"
            "    sys.exit(f'unhealthy: {e}')\n")
    command = json.dumps([f"{IMAGE_VENV}/bin/python", "-c", code])
    return url, ("HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \\\n"
                 f"    CMD {command}")


def _urlHost(host):
    return f"[{host}]" if ":" in host else host


def buildContext(configPath, out, apigwDir=None, usersCnf=None, wheelDir=None, source=None,
                 listenAll=False, allowInlineSecrets=False, force=False, base=DEFAULT_BASE,
                 arguments=(), runner=subprocess.run):
    """
    Write a container build context for the gateway configured by
    C{configPath} into C{out}.

    @param apigwDir: copy C{<apigwDir>/IntegrationServer/instances/default/
        config/users.cnf} (the Microgateway's way); exclusive with C{usersCnf}.
    @param usersCnf: the users.cnf to copy.  Without either, the
        configuration's own lookup (C{[internal] users_cnf}, then U3).
    @param wheelDir, source: see L{collectWheels}.
    @param listenAll: listeners on the loopback interface listen on every
        interface in the image (for published ports on a bridge network);
        otherwise they stay, for C{--network host}.
    @param allowInlineSecrets: copy C{[promotion.secrets]} into the image.
    @param force: rewrite a context already in C{out}.
    @param arguments: the command line, quoted in the Containerfile.
    @return: a L{Context}.
    @raise ConfigError: the configuration or an input cannot be used; one line.
    """
    from kaazing_promo.auth.internal import APIGW_USERS_CNF, locateUsersCnf
    from kaazing_promo.auth.userscnf import UsersCnfError, parseUsersCnf
    from kaazing_promo.config import loadConfig, parseConfig

    if apigwDir is not None and usersCnf is not None:
        raise ConfigError("pass --apigw-dir or --users-cnf, not both")
    config = loadConfig(configPath, apigwDir)
    with open(configPath, "rb") as f:
        document = tomllib.load(f)
    promotion = document.setdefault("promotion", {})
    mode = config.promotion.mode
    inline = "secrets" in promotion
    if inline and not allowInlineSecrets:
        raise ConfigError(
            f"{configPath}: [promotion.secrets] holds broker passwords inline, which would be baked into "
            "the image; move them to a secrets file mounted at run time (and remove the table), "
            "or pass --allow-inline-secrets")

    _prepareOut(out, force)
    etc = os.path.join(out, "etc")
    context = Context(path=out)
    notes = context.notes

    # The realm's files.
    document.pop("apigw_dir", None)
    internal = document.get("internal", {})
    if config.user_auth == "internal":
        if usersCnf is not None:
            found = usersCnf
        elif apigwDir is not None:
            found = os.path.join(apigwDir, APIGW_USERS_CNF)
        else:
            found = locateUsersCnf(config.instanceDir, config.apigw_dir, config.internal.users_cnf)
        try:
            parseUsersCnf(found)
        except (UsersCnfError, OSError) as e:
            raise ConfigError(f"users.cnf {found} cannot be used ({e}); check --users-cnf / --apigw-dir")
        _copyFile(found, os.path.join(etc, "config", "users.cnf"), "users.cnf")
        document.setdefault("internal", internal)["users_cnf"] = "config/users.cnf"
        notes.append(f"users.cnf: {found} -> {IMAGE_ETC}/config/users.cnf")
    else:
        if usersCnf is not None or apigwDir is not None:
            notes.append(f"user_auth is {config.user_auth!r}: no users.cnf copied")
        internal.pop("users_cnf", None)
    if config.internal.overlay:
        _copyFile(config.internal.overlay, os.path.join(etc, "config", "overlay.toml"), "[internal] overlay")
        internal["overlay"] = "config/overlay.toml"
    if config.delegated.ca_file:
        _copyFile(config.delegated.ca_file, os.path.join(etc, "config", "apigw-ca.pem"), "[delegated] ca_file")
        document["delegated"]["ca_file"] = "config/apigw-ca.pem"

    # Listeners: web roots copied, interfaces as asked, ports exposed.
    for raw, listener in zip(document["listeners"], config.listeners):
        if listener.webroot:
            name = "".join(c if c.isalnum() or c in "-_" else "_" for c in listener.name)
            try:
                shutil.copytree(listener.webroot, os.path.join(etc, "web", name), symlinks=False)
            except OSError as e:
                raise ConfigError(f"cannot copy the webroot {listener.webroot} of [[listeners]] "
                                  f"{listener.name!r}: {e}") from None
            raw["webroot"] = f"web/{name}"
    endpoints = [(f"[[listeners]] {raw['name']!r}", raw, "endpoint") for raw in document["listeners"]]
    for section in ("admin", "broker_auth"):
        if document.get(section, {}).get("endpoint"):
            endpoints.append((f"[{section}]", document[section], "endpoint"))
    for where, table, key in endpoints:
        if listenAll:
            table[key] = listenOnAllInterfaces(table[key])
        address = endpointAddress(table[key])
        if address is None:
            notes.append(f"{where}: {table[key]!r} has no TCP port of its own; nothing exposed for it")
        elif address.port == 0:
            notes.append(f"{where}: port 0 is chosen at start; nothing exposed for it")
        else:
            context.ports.append(address.port)
        _, _, kwargs = _splitEndpoint(table[key])
        for parameter in _FILE_PARAMETERS:
            if parameter in kwargs:
                notes.append(f"{where}: {parameter}={kwargs[parameter]} is not copied (keys are secrets); "
                             "mount it at that path at run time")
    if listenAll:
        if _clientHost(config.broker.endpoint) in ("127.0.0.1", "localhost", "::1"):
            notes.append("[broker] endpoint is on the loopback interface, which in a bridge network is the "
                         "container's own: name the broker's address, or run with --network host")
    if not listenAll:
        loopback = [where for where, table, key in endpoints
                    if (endpointAddress(table[key]) or Address(None, None, 0)).host
                    in ("127.0.0.1", "localhost", "::1")]
        if loopback:
            notes.append("listeners stay on the loopback interface: run with --network host, "
                         "or regenerate with --listen-all to publish ports (-p)")

    # Secrets: never baked in; the image refuses to start without them.
    if mode in SECRETLESS_MODES:
        promotion.pop("secrets_file", None)
    elif inline and "secrets_file" not in promotion:
        notes.append("[promotion.secrets] copied into the image (--allow-inline-secrets)")
    else:
        promotion["secrets_file"] = SECRETS_PATH
        context.needsSecrets = True
        notes.append(f"broker secrets: mount them read-only at {SECRETS_PATH} (owner uid {GATEWAY_UID}, "
                     "mode 0600 or 0400), or set KAAZING_PROMO_SECRETS; the gateway does not start without")
    if mode == "consolidated":
        context.brokerUsers = [config.promotion.user]
    elif mode == "mapping":
        context.brokerUsers = sorted(set(config.promotion.map.values()))

    if config.drain_timeout >= 10:
        notes.append(f"drain_timeout is {config.drain_timeout:g} s: stop with a longer grace period "
                     "(podman stop -t / docker stop -t), or clients are killed mid-drain")

    # The configuration, pointing inside the image, validated as the image reads it.
    text = ("# Written by `kaazing-promo containerfile` from "
            f"{os.path.abspath(configPath)}:\n# edit that file and regenerate the context.\n"
            + dumpToml(document))
    parseConfig(tomllib.loads(text), IMAGE_CONFIG)
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "gateway.toml"), "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(os.path.join(etc, "gateway.toml"), 0o644)

    # Wheels, then the Containerfile.
    wheels = collectWheels(os.path.join(out, "wheels"), wheelDir, source, runner)
    if sys.version_info[:2] != (3, 11) and base == DEFAULT_BASE:
        base = f"python:{sys.version_info[0]}.{sys.version_info[1]}-slim"
    health = ""
    if config.admin.endpoint:
        address = endpointAddress(document["admin"]["endpoint"])
        if address is None or address.port == 0:
            notes.append("[admin] endpoint has no fixed TCP port: no HEALTHCHECK")
        else:
            context.health, health = _healthcheck(address)
    else:
        notes.append("no [admin] endpoint: no HEALTHCHECK (set one to get /healthz)")
    ports = sorted(set(context.ports))
    replacements = {
        "VERSION": __version__,
        "ARGS": " ".join(shlex.quote(argument) for argument in arguments) or "…",
        "PYTHON": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "PLATFORM": platform.machine(),
        "BASE": base,
        "REQUIREMENT": f"kaazing-promo=={__version__}",
        "UID": str(GATEWAY_UID),
        "EXPOSE": ("EXPOSE " + " ".join(f"{port}/tcp" for port in ports)) if ports else "# no fixed port to EXPOSE",
        "HEALTHCHECK": health or "# no HEALTHCHECK: the configuration has no [admin] endpoint",
    }
    template = (resources.files("kaazing_promo") / "data" / "container" / "Containerfile.in").read_text("utf-8")
    for key, value in replacements.items():
        template = template.replace(f"@{key}@", value)
    with open(os.path.join(out, "Containerfile"), "w", encoding="utf-8") as f:
        f.write(template)

    lines = ["# The broker secrets of this gateway: mount a copy of this file, with the real",
             f"# passwords, read-only at {SECRETS_PATH}",
             f"# (owner uid {GATEWAY_UID}, mode 0600 or 0400), or pass its text in $KAAZING_PROMO_SECRETS.",
             "# Never build it into the image."]
    if context.brokerUsers:
        lines += [f"{tomlKey(user)} = \"<password>\"" for user in context.brokerUsers]
    elif mode == "identity":
        lines.append('# identity mode: one line per gateway user, broker_user = "<password>"')
    else:
        lines.append(f"# {mode} mode reads no broker secret")
    with open(os.path.join(out, "broker-secrets.toml.example"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    context.ports = ports
    notes.append(f"{len(wheels)} wheels in {os.path.join(out, 'wheels')}")
    return context


def containerfileCommand(options, stdout, stderr, arguments=()):
    """
    The C{kaazing-promo containerfile} subcommand.

    @return: the exit code.
    """
    try:
        context = buildContext(
            options.config, options.out, apigwDir=options.apigw_dir, usersCnf=options.users_cnf,
            wheelDir=options.wheel_dir, source=options.source, listenAll=options.listen_all,
            allowInlineSecrets=options.allow_inline_secrets, force=options.force,
            arguments=arguments)
    except ConfigError as e:
        print(f"kaazing-promo: {e}", file=stderr)
        return 1
    print(f"wrote a build context in {context.path}", file=stdout)
    for note in context.notes:
        print(f"  {note}", file=stdout)
    print(f"build:  podman build --format docker -t kaazing-promo {shlex.quote(context.path)}"
          f"   (or docker build -t kaazing-promo {shlex.quote(context.path)})", file=stdout)
    return 0


def addArguments(parser):
    """
    The subcommand's options, on an C{argparse} (sub)parser.
    """
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="the gateway configuration to build in (validated first); paths are "
                             "rewritten to point inside the image")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="the build context to write (new or empty; see --force)")
    users = parser.add_mutually_exclusive_group()
    users.add_argument("--apigw-dir", metavar="DIR",
                       help="copy DIR/IntegrationServer/instances/default/config/users.cnf (internal realm)")
    users.add_argument("--users-cnf", metavar="FILE",
                       help="copy this users.cnf; without either option, the configuration's own "
                            "lookup ([internal] users_cnf, then config/users.cnf beside it)")
    parser.add_argument("--wheel-dir", metavar="DIR",
                        help="take the wheels (kaazing-promo's and every dependency's) from DIR instead "
                             "of running pip wheel on the source checkout")
    parser.add_argument("--source", metavar="CHECKOUT",
                        help="the source checkout to build the package's wheel from (default: the one "
                             "this kaazing-promo runs from, else the current directory)")
    parser.add_argument("--listen-all", action="store_true",
                        help="listeners (and [admin]) on 127.0.0.1 listen on 0.0.0.0 in the image, for "
                             "published ports (-p); default: unchanged, for --network host")
    parser.add_argument("--allow-inline-secrets", action="store_true",
                        help="copy inline [promotion.secrets] into the image (refused otherwise)")
    parser.add_argument("--force", action="store_true",
                        help="rewrite a context this command wrote before in --out")


def main(argv=None):
    """
    C{python -m kaazing_promo.container ARGS}: the subcommand on its own.
    """
    import argparse
    parser = argparse.ArgumentParser(prog="kaazing-promo containerfile")
    addArguments(parser)
    argv = sys.argv[1:] if argv is None else argv
    return containerfileCommand(parser.parse_args(argv), sys.stdout, sys.stderr, ["containerfile", *argv])


if __name__ == "__main__":
    sys.exit(main())
