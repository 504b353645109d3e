"""
C{kaazing-promo check-config FILE}: everything start-up validates, without
listening, and a report of what it found.

The validation is start-up's own: the file is loaded with
L{kaazing_promo.config.loadConfig} and the whole L{GatewayService} is built
(realm loaded, secrets read, endpoints parsed, admin and reload services
made), only never started.  What this module adds is the report.
"""

import contextlib
import grp
import os
import pwd
import stat
import sys

import attr

from kaazing_promo.adapters.twistedinternals import systemdDescriptors
from kaazing_promo.config import loadConfig
from kaazing_promo.errors import ConfigError
from kaazing_promo.tomlwriter import tomlValue

REDACTED = "<redacted>"

# Keys a listener has only when it speaks WebSocket.
_WEBSOCKET_ONLY = ("path", "webroot", "allowed_origins", "hosts", "max_ws_message")


class _AnyDescriptor:
    """
    Stands for the sockets systemd would pass: any index or name finds one.
    """

    def __getitem__(self, key):
        if isinstance(key, int) and key < 0:
            raise IndexError(f"systemd socket index {key} is negative")
        # Never used: nothing listens during a check.
        return 3


class _AnySystemdSockets:
    def inheritedDescriptors(self):
        return _AnyDescriptor()

    def inheritedNamedDescriptors(self):
        return _AnyDescriptor()


@contextlib.contextmanager
def systemdEndpointsBySyntax():
    """
    While active, C{systemd:} endpoint strings parse without C{LISTEN_FDS}
    (Twisted raises without them): their syntax, address family and index
    or name are checked; which sockets systemd passes is the socket unit's
    business.
    """
    with systemdDescriptors(_AnySystemdSockets()):
        yield


def _lines(obj, skip=()):
    lines = []
    for field in attr.fields(type(obj)):
        name = field.name
        value = getattr(obj, name)
        if name in skip or attr.has(type(value)) or isinstance(value, dict):
            continue
        if value is None:
            lines.append(f"# {name} is not set")
        else:
            lines.append(f"{name} = {tomlValue(value)}")
    return lines


def describeSettings(config):
    """
    @return: the effective settings of C{config} (defaults filled in) as
        TOML text, with every secret replaced by C{<redacted>}.
    """
    lines = _lines(config, skip=("path", "listeners", "permissions", "cluster"))
    for section in ("broker", "internal", "delegated", "admin", "broker_auth"):
        lines += ["", f"[{section}]"] + _lines(getattr(config, section))
    for listener in config.listeners:
        skip = () if listener.protocol == "websocket" else _WEBSOCKET_ONLY
        lines += ["", "[[listeners]]"] + _lines(listener, skip=skip)
    promotion = config.promotion
    lines += ["", "[promotion]"] + _lines(promotion, skip=("map", "inline_secrets"))
    if promotion.map:
        lines += ["", "[promotion.map]"]
        lines += [f"{tomlValue(user)} = {tomlValue(broker)}" for user, broker in sorted(promotion.map.items())]
    if promotion.inline_secrets:
        lines += ["", "[promotion.secrets]"]
        lines += [f"{tomlValue(user)} = {tomlValue(REDACTED)}" for user in sorted(promotion.inline_secrets)]
    for permission in config.permissions:
        lines += ["", "[[permissions]]"] + _lines(permission)
    if config.cluster is not None:
        lines += ["", "[cluster]"] + _lines(config.cluster)
    return "\n".join(lines) + "\n"


def _owner(info):
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"{user}:{group}"


def _endpointNote(description):
    if description.startswith("systemd:"):
        return "parses (checked by syntax: the socket comes from systemd, kaazing-promo.socket)"
    return "parses"


def findings(config, brokerEndpoints, checker, secrets):
    """
    @param brokerEndpoints: the broker endpoint strings, as the gateway's
        connector parsed them.
    @param checker: the portal's checker as start-up built it, or L{None}.
    @param secrets: the loaded L{kaazing_promo.secrets.SecretStore}.
    @return: the lines of the report: what each check found.
    """
    lines = []
    for listener in config.listeners:
        lines.append(f"listener {listener.name}: {listener.protocol} on {listener.endpoint}: "
                     f"{_endpointNote(listener.endpoint)}; auth {listener.auth}")
    for description in brokerEndpoints:
        lines.append(f"broker: {description}: parses")
    if config.admin.endpoint:
        lines.append(f"admin: {config.admin.endpoint}: {_endpointNote(config.admin.endpoint)} "
                     "(/metrics /healthz /readyz)")
    else:
        lines.append("admin: off (set [admin] endpoint for /metrics, /healthz, /readyz)")
    if config.user_auth == "internal":
        line = f"realm internal: {checker.path}: {checker.userCount} users"
        for hashFormat, count in sorted(checker.unsupportedHashes.items()):
            line += (f"; {count} with passHash format {hashFormat}, which kaazing-promo cannot "
                     "verify (they cannot log in; give them an [internal] overlay hash)")
        lines.append(line)
    elif config.user_auth == "delegated":
        trust = (f"certificates checked against {config.delegated.ca_file}" if config.delegated.ca_file
                 else "certificates checked against the system's trust store")
        lines.append(f"realm delegated: {config.delegated.url}: https; {trust}")
    else:
        lines.append("realm: off (no listener asks for credentials)")
    if secrets.source is None:
        lines.append("broker secrets: none")
    elif secrets.path is not None and secrets.source == secrets.path:
        info = os.stat(secrets.path)
        lines.append(f"broker secrets: {secrets.path}: mode {stat.S_IMODE(info.st_mode):04o}, owner "
                     f"{_owner(info)}: not readable by others")
    elif secrets.source.startswith("inline"):
        lines.append("broker secrets: inline [promotion.secrets]: for demos only; use secrets_file "
                     "(mode 0640 or 0600) in production")
    else:
        lines.append(f"broker secrets: from {secrets.source}")
    return lines


def checkConfig(path, apigwDir=None, out=None, err=None, reactor=None):
    """
    Validate C{path} as start-up would, without listening; print what was
    checked and the effective settings (secrets redacted).

    @return: the exit code: 0 when the gateway would start, 1 when not.
    """
    from kaazing_promo.tap import GatewayService
    out = out or sys.stdout
    err = err or sys.stderr
    if reactor is None:
        from twisted.internet import reactor
    try:
        config = loadConfig(path, apigwDir)
        with systemdEndpointsBySyntax():
            gateway = GatewayService(config, reactor, apigwDir=apigwDir)
    except ConfigError as e:
        print(f"kaazing-promo: {e}", file=err)
        print(f"{path}: NOT OK: the gateway would not start", file=err)
        return 1
    print(f"{path}: OK: the gateway would start", file=out)
    for line in findings(config, gateway.brokerConnector.descriptions, gateway.checker, gateway.secrets):
        print(f"  {line}", file=out)
    print("\n# effective settings, defaults filled in, secrets redacted", file=out)
    print(describeSettings(config), file=out, end="")
    return 0
