"""
The configuration file: TOML parsed once, at start-up, into frozen objects.

Every error is a L{ConfigError} whose message is one line naming the file,
the key and what to do.  Unknown keys are errors: a typo must not pass
silently.  Relative paths resolve against the configuration file's
directory (the instance directory).
"""

import ipaddress
import os
import re
import tomllib
from importlib import resources

import attr

from kaazing_promo.errors import ConfigError
from kaazing_promo.token.permissions import compilePattern
from kaazing_promo.promotion import promoterFactories
from kaazing_promo.transport.hosts import splitHost

USER_AUTH_MODES = ("off", "internal", "delegated")
PROTOCOLS = ("websocket", "amqp")
LISTENER_AUTH = ("required", "none")
ON_EXPIRY = ("revalidate", "close", "ignore")
DEFAULT_BROKER = "tcp:host=127.0.0.1:port=5672"
CLUSTER_PREFIX = "kaazing-promo:"
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def defaultConfigPath():
    """
    @return: the path of the packaged default configuration (identical to
        C{etc/gateway.toml}).
    """
    return str(resources.files("kaazing_promo") / "data" / "gateway.toml")


@attr.s(frozen=True)
class Listener:
    name = attr.ib()
    protocol = attr.ib()
    endpoint = attr.ib()
    path = attr.ib(default="/amqp")
    auth = attr.ib(default="required")
    require_groups = attr.ib(default=())
    allowed_origins = attr.ib(default=None)
    hosts = attr.ib(default=None)
    webroot = attr.ib(default=None)
    handshake_timeout = attr.ib(default=10.0)
    max_failed_logins = attr.ib(default=10)
    max_pending_bytes = attr.ib(default=1048576)
    max_ws_message = attr.ib(default=1048576)
    #: WebSocket listeners: seconds the page's session cookie lives (0: no cookie).
    session_ttl = attr.ib(default=43200.0)
    max_connections = attr.ib(default=0)
    max_connections_per_source = attr.ib(default=0)
    ping_interval = attr.ib(default=30.0)
    max_frame_size = attr.ib(default=131072)
    trusted_proxies = attr.ib(default=())


@attr.s(frozen=True)
class Broker:
    endpoint = attr.ib(default=DEFAULT_BROKER)
    fallback_endpoints = attr.ib(default=())


@attr.s(frozen=True)
class Internal:
    users_cnf = attr.ib(default=None)
    overlay = attr.ib(default=None)
    verify_cache_ttl = attr.ib(default=300.0)


@attr.s(frozen=True)
class Delegated:
    url = attr.ib(default=None)
    domain = attr.ib(default="")
    ca_file = attr.ib(default=None)
    timeout = attr.ib(default=5.0)
    max_concurrent = attr.ib(default=64)
    cache_size = attr.ib(default=10000)
    on_expiry = attr.ib(default="revalidate")


@attr.s(frozen=True)
class Promotion:
    mode = attr.ib(default="consolidated")
    secrets_file = attr.ib(default=None)
    user = attr.ib(default=None)
    vhost = attr.ib(default=None)
    map = attr.ib(default=attr.Factory(dict), hash=False)
    # Inline secrets are the demo's convenience; repr never shows them.
    inline_secrets = attr.ib(default=None, repr=lambda value: "<redacted>" if value else "None")
    token_ttl = attr.ib(default=10.0)


@attr.s(frozen=True)
class Admin:
    endpoint = attr.ib(default=None)


@attr.s(frozen=True)
class BrokerAuth:
    """
    C{[broker_auth]}: the listener RabbitMQ's HTTP auth backend asks (token mode).
    """

    endpoint = attr.ib(default=None)


@attr.s(frozen=True)
class Cluster:
    """
    C{[cluster]}: several gateways acting as one, sharing the failed-login
    counters, ticket and token redemption and token grants through Redis.

    The signing key and the Redis password are never in the file: only
    where to read them (a file only its owner may read, or an environment
    variable).
    """

    redis = attr.ib()
    key_file = attr.ib(default=None)
    key_env = attr.ib(default=None)
    password_file = attr.ib(default=None)
    password_env = attr.ib(default=None)
    username = attr.ib(default=None)
    prefix = attr.ib(default=CLUSTER_PREFIX)
    timeout = attr.ib(default=2.0)


@attr.s(frozen=True)
class Permission:
    """
    One C{[[permissions]]} entry: what members of C{group} (or holders of
    C{access_profile}) may do on C{vhost}.  Regexes are RabbitMQ's.
    """

    group = attr.ib(default=None)
    access_profile = attr.ib(default=None)
    vhost = attr.ib(default="/")
    configure = attr.ib(default="")
    write = attr.ib(default="")
    read = attr.ib(default="")
    topic = attr.ib(default=None)
    tags = attr.ib(default=())


@attr.s(frozen=True)
class Config:
    """
    The whole file.

    @ivar demo: C{demo = true}: the file is the shipped demo sample, whose
        inline broker secrets and users.cnf users that cannot log in are
        reported as information instead of warnings.
    """

    path = attr.ib()
    user_auth = attr.ib(default="off")
    apigw_dir = attr.ib(default=None)
    workers = attr.ib(default=1)
    drain_timeout = attr.ib(default=5.0)
    broker = attr.ib(default=attr.Factory(Broker))
    listeners = attr.ib(default=())
    internal = attr.ib(default=attr.Factory(Internal))
    delegated = attr.ib(default=attr.Factory(Delegated))
    promotion = attr.ib(default=attr.Factory(Promotion))
    admin = attr.ib(default=attr.Factory(Admin))
    broker_auth = attr.ib(default=attr.Factory(BrokerAuth))
    permissions = attr.ib(default=())
    demo = attr.ib(default=False)
    #: The file of the key tickets, session cookies and broker tokens are
    #: signed with, created when missing; L{None}: a random key per start.
    key_file = attr.ib(default=None)
    #: L{Cluster}, or L{None} without C{[cluster]}: everything per process.
    cluster = attr.ib(default=None)

    @property
    def instanceDir(self):
        """
        The directory relative paths resolve against.
        """
        return os.path.dirname(os.path.abspath(self.path))

    @property
    def groupsRequired(self):
        """
        Whether any listener authorizes on groups (U7: delegated requests
        then send C{includeGroups: true}).
        """
        return any(listener.require_groups for listener in self.listeners)


#: "The schema's default": L{_Section.get}'s default when none is given.
_SCHEMA = object()


class _Section:
    """
    Reads one table of the file, remembering which keys were used so that
    the rest can be reported as unknown.
    """

    def __init__(self, path, where, table, schema=None):
        """
        @param schema: the attrs class the table becomes: a key read without
            a default of its own gets the class's (defaults are written once,
            there).
        """
        self.path = path
        self.where = where
        self.schema = schema
        if not isinstance(table, dict):
            raise self.error(f"must be a table, not {type(table).__name__}")
        self.table = table
        self.used = set()

    def error(self, message, key=None):
        where = (self.where + (f" key '{key}'" if key else "")).strip()
        # A top-level error has no section to name: no empty ": :" segment.
        return ConfigError(f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}")

    def get(self, key, kind, default=_SCHEMA, choices=None, check=None, hint=""):
        self.used.add(key)
        if key not in self.table:
            return self._default(key) if default is _SCHEMA else default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(f"must be {_kindName(kind)}, not {value!r}", key)
        if choices is not None and value not in choices:
            raise self.error(
                f"must be one of {', '.join(map(repr, choices))}, not {value!r}", key)
        if check is not None and not check(value):
            raise self.error(f"{value!r} is not allowed{hint}", key)
        return value

    def _default(self, key):
        """
        @return: the schema's default for C{key} (L{None} without one).
        """
        if self.schema is None:
            return None
        field = getattr(attr.fields(self.schema), key, None)
        if field is None or field.default is attr.NOTHING or isinstance(field.default, attr.Factory):
            return None
        return field.default

    def strings(self, key, default=()):
        values = self.get(key, list, default=None)
        if values is None:
            return default
        if not all(isinstance(value, str) for value in values):
            raise self.error("must be a list of strings", key)
        return tuple(values)

    def path_(self, key, default=None):
        value = self.get(key, str, default=None)
        if value is None or value == "":
            return default
        return os.path.join(os.path.dirname(os.path.abspath(self.path)), os.path.expanduser(value))

    def sub(self, key):
        self.used.add(key)
        return self.table.get(key, {})

    def finish(self):
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise self.error(
                f"unknown key {unknown[0]!r} (known keys: {known}); fix the spelling or remove it")


def _kindName(kind):
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}[kind]


def _positive(value):
    return value > 0


def _nonNegative(value):
    return value >= 0


def loadConfig(path, apigwDir=None):
    """
    Read and validate a configuration file.

    @param path: the TOML file.
    @param apigwDir: C{--apigw-dir} from the command line; wins over the
        file's C{apigw_dir} (U4).
    @return: a L{Config}.
    @raise ConfigError: the file is unusable; the message says why and how to fix it.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found; pass --config with an existing file")
    except PermissionError:
        raise ConfigError(f"{path}: configuration file is not readable by this user; fix its permissions")
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the syntax")
    return parseConfig(data, path, apigwDir)


def parseConfig(data, path, apigwDir=None):
    """
    Validate an already parsed TOML document; see L{loadConfig}.
    """
    top = _Section(path, "", data, Config)
    userAuth = top.get("user_auth", str, choices=USER_AUTH_MODES)
    fileApigw = top.path_("apigw_dir")
    workers = top.get("workers", int, check=_positive, hint="; use 1 or more")
    drain = top.get("drain_timeout", float, check=_nonNegative)
    demo = top.get("demo", bool)
    keyFile = top.path_("key_file")

    broker = _Section(path, "[broker]", top.sub("broker"), Broker)
    brokerConfig = Broker(
        endpoint=broker.get("endpoint", str),
        fallback_endpoints=broker.strings("fallback_endpoints"))
    broker.finish()

    top.used.add("listeners")
    rawListeners = data.get("listeners", [])
    if not isinstance(rawListeners, list) or not rawListeners:
        raise top.error("needs at least one [[listeners]] table", "listeners")
    listeners = [_listener(path, index, raw) for index, raw in enumerate(rawListeners)]
    names = [listener.name for listener in listeners]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{path}: [[listeners]] name {name!r} is used twice; give each listener its own name")
    for listener in listeners:
        if listener.auth == "required" and userAuth == "off":
            raise ConfigError(
                f"{path}: [[listeners]] {listener.name!r} has auth = \"required\" but user_auth is \"off\" "
                "(U1); set user_auth = \"internal\" or \"delegated\", or auth = \"none\"")

    internal = _Section(path, "[internal]", top.sub("internal"), Internal)
    internalConfig = Internal(
        users_cnf=internal.path_("users_cnf"),
        overlay=internal.path_("overlay"),
        verify_cache_ttl=internal.get("verify_cache_ttl", float, check=_nonNegative))
    internal.finish()

    delegated = _Section(path, "[delegated]", top.sub("delegated"), Delegated)
    delegatedConfig = Delegated(
        url=delegated.get("url", str),
        domain=delegated.get("domain", str),
        ca_file=delegated.path_("ca_file"),
        timeout=delegated.get("timeout", float, check=_positive),
        max_concurrent=delegated.get("max_concurrent", int, check=_positive),
        cache_size=delegated.get("cache_size", int, check=_nonNegative),
        on_expiry=delegated.get("on_expiry", str, choices=ON_EXPIRY))
    delegated.finish()
    if userAuth == "delegated":
        if not delegatedConfig.url:
            raise delegated.error("is required with user_auth = \"delegated\"; set the API Gateway's https:// URL", "url")
        if not delegatedConfig.url.lower().startswith("https://"):
            raise delegated.error(
                f"{delegatedConfig.url!r} is not https:// (U8); delegated authentication "
                "sends passwords and is allowed only over HTTPS", "url")

    promotionConfig = _promotion(path, top.sub("promotion"), listeners)

    admin = _Section(path, "[admin]", top.sub("admin"))
    adminConfig = Admin(endpoint=admin.get("endpoint", str))
    admin.finish()

    brokerAuth = _Section(path, "[broker_auth]", top.sub("broker_auth"))
    brokerAuthConfig = BrokerAuth(endpoint=brokerAuth.get("endpoint", str))
    brokerAuth.finish()
    top.used.add("permissions")
    rawPermissions = data.get("permissions", [])
    if not isinstance(rawPermissions, list):
        raise top.error("must be [[permissions]] tables", "permissions")
    permissions = tuple(_permission(path, index, raw) for index, raw in enumerate(rawPermissions))
    if promotionConfig.mode == "token" and not brokerAuthConfig.endpoint:
        raise brokerAuth.error("is required with [promotion] mode = \"token\": the broker asks it about "
                               "every token", "endpoint")

    clusterConfig = _cluster(path, data["cluster"]) if "cluster" in data else None
    top.used.add("cluster")
    if clusterConfig is not None and keyFile is not None:
        raise top.error("cannot be set with [cluster]: the cluster's shared key ([cluster] key_file or key_env) "
                        "signs tickets, session cookies and tokens; remove key_file", "key_file")

    top.finish()
    return Config(
        path=path, user_auth=userAuth, apigw_dir=apigwDir or fileApigw, workers=workers,
        drain_timeout=drain, broker=brokerConfig, listeners=tuple(listeners),
        internal=internalConfig, delegated=delegatedConfig, promotion=promotionConfig,
        admin=adminConfig, broker_auth=brokerAuthConfig, permissions=permissions, demo=demo, key_file=keyFile,
        cluster=clusterConfig)


def _cluster(path, raw):
    section = _Section(path, "[cluster]", raw, Cluster)
    for inline, instead in (("key", "key_file or key_env"), ("password", "password_file or password_env")):
        if inline in section.table:
            raise section.error(f"is never written in the configuration file; name where to read it "
                                f"with {instead}", inline)
    redis = section.get("redis", str)
    if not redis:
        raise section.error("is required: the Redis server the gateways share, as a Twisted client endpoint "
                            "string such as \"tcp:host=127.0.0.1:port=6379\" (tls: works)", "redis")

    def environmentName(key):
        return section.get(key, str, check=_ENVIRONMENT_NAME.match,
                           hint="; name an environment variable (letters, digits, _)")
    cluster = Cluster(
        redis=redis,
        key_file=section.path_("key_file"),
        key_env=environmentName("key_env"),
        password_file=section.path_("password_file"),
        password_env=environmentName("password_env"),
        username=section.get("username", str),
        prefix=section.get("prefix", str, check=lambda p: p and not any(c.isspace() for c in p),
                           hint="; use a non-empty prefix without spaces such as \"kaazing-promo:\""),
        timeout=section.get("timeout", float, check=_positive))
    section.finish()
    if (cluster.key_file is None) == (cluster.key_env is None):
        raise section.error("needs exactly one of key_file (a file only its owner may read) or key_env (an "
                            "environment variable's name): the signing key every gateway of the cluster shares",
                            "key_file")
    if cluster.password_file is not None and cluster.password_env is not None:
        raise section.error("and password_env are both set; keep one", "password_file")
    return cluster


def _permission(path, index, raw):
    section = _Section(path, f"[[permissions]] #{index + 1}", raw, Permission)

    def regex(key, default):
        value = section.get(key, str, default)
        if value is None:
            return None
        try:
            compilePattern(value)
        except ValueError as e:
            raise section.error(f"is not a valid regular expression ({e})", key)
        return value

    permission = Permission(
        group=section.get("group", str),
        access_profile=section.get("access_profile", str),
        vhost=section.get("vhost", str),
        configure=regex("configure", ""),
        write=regex("write", ""),
        read=regex("read", ""),
        topic=regex("topic", None),
        tags=section.strings("tags"))
    section.finish()
    if (permission.group is None) == (permission.access_profile is None):
        raise section.error("needs exactly one of group or access_profile", "group")
    return permission


def _listener(path, index, raw):
    where = f"[[listeners]] #{index + 1}"
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        where = f"[[listeners]] {raw['name']!r}"
    section = _Section(path, where, raw, Listener)
    name = section.get("name", str)
    if not name:
        raise section.error("is required; name each listener", "name")
    protocol = section.get("protocol", str, None, PROTOCOLS)
    if protocol is None:
        raise section.error("is required (\"websocket\" or \"amqp\")", "protocol")
    endpoint = section.get("endpoint", str)
    if not endpoint:
        raise section.error("is required (a Twisted endpoint string, e.g. \"tcp:port=8080:interface=127.0.0.1\")",
                            "endpoint")
    wsOnly = {}
    if protocol == "websocket":
        listenPath = section.get("path", str,
                                 check=lambda p: p.startswith("/") and "?" not in p,
                                 hint="; use an absolute path such as \"/amqp\"")
        webroot = section.path_("webroot")
        if webroot is not None and listenPath.rstrip("/") == "":
            raise section.error("cannot be \"/\" when webroot is set; use e.g. \"/amqp\"", "path")
        origins = section.get("allowed_origins", list)
        if origins is not None:
            origins = section.strings("allowed_origins")
        wsOnly = dict(
            path=listenPath.rstrip("/") or "/", webroot=webroot, allowed_origins=origins, hosts=_hosts(section),
            max_ws_message=section.get("max_ws_message", int, check=_positive),
            session_ttl=section.get("session_ttl", float, check=_nonNegative))
    listener = Listener(
        name=name, protocol=protocol, endpoint=endpoint,
        auth=section.get("auth", str, choices=LISTENER_AUTH),
        require_groups=section.strings("require_groups"),
        handshake_timeout=section.get("handshake_timeout", float, check=_positive),
        max_failed_logins=section.get("max_failed_logins", int, check=_nonNegative),
        max_pending_bytes=section.get("max_pending_bytes", int, check=lambda v: v >= 4096,
                                      hint="; use at least 4096"),
        max_connections=section.get("max_connections", int, check=_nonNegative),
        max_connections_per_source=section.get("max_connections_per_source", int, check=_nonNegative),
        ping_interval=section.get("ping_interval", float, check=_nonNegative),
        max_frame_size=section.get("max_frame_size", int, check=lambda v: v >= 4096,
                                   hint="; use at least 4096 (AMQP's frame-min-size)"),
        trusted_proxies=_trustedProxies(section, endpoint),
        **wsOnly)
    section.finish()
    return listener


def _trustedProxies(section, endpoint):
    """
    A listener's C{trusted_proxies}: the addresses and networks whose PROXY
    header a C{haproxy:} endpoint believes.  Required there (anyone else
    could claim any source address), and nowhere else.
    """
    proxies = section.strings("trusted_proxies", default=None)
    if not endpoint.startswith("haproxy:"):
        if proxies is not None:
            raise section.error("applies only to haproxy: endpoints, which read a PROXY header; remove it",
                                "trusted_proxies")
        return ()
    if not proxies:
        raise section.error(
            "is required with a haproxy: endpoint: a PROXY header says which client a connection is for, and "
            "only the load balancers listed here may send one; list their addresses, e.g. [\"10.0.0.5\"] or "
            "[\"10.0.1.0/24\"]", "trusted_proxies")
    for entry in proxies:
        try:
            ipaddress.ip_network(entry)
        except ValueError as e:
            raise section.error(f"{e}; use an address (\"10.0.0.5\") or a network (\"10.0.1.0/24\")",
                                "trusted_proxies")
    return proxies


def _hosts(section):
    """
    A WebSocket listener's C{hosts}: the C{Host} values it serves, or
    L{None} for any.
    """
    if section.get("hosts", list) is None:
        return None
    hosts = section.strings("hosts")
    if not hosts:
        raise section.error("is empty, which would refuse every request; list the host names clients use, "
                            "or remove the key to serve any Host", "hosts")
    for entry in hosts:
        try:
            splitHost(entry)
        except ValueError as e:
            raise section.error(f"{e}; use e.g. \"gateway.example.com\" or \"127.0.0.1:8080\"", "hosts")
    return hosts


def _promotion(path, raw, listeners):
    section = _Section(path, "[promotion]", raw, Promotion)
    # The modes are plugins: a third-party IPromoterFactory is chosen by name like the built-in ones.
    factories = promoterFactories()
    mode = section.get("mode", str, choices=tuple(sorted(factories)))
    mapping = section.sub("map")
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v for v in mapping.values()):
        raise section.error("must map gateway user names to broker user names (strings)", "map")
    inline = section.sub("secrets") or None
    if inline is not None and not (isinstance(inline, dict) and all(isinstance(v, str) for v in inline.values())):
        raise section.error("must map broker user names to passwords (strings)", "secrets")
    promotion = Promotion(
        mode=mode,
        secrets_file=section.path_("secrets_file"),
        user=section.get("user", str),
        vhost=section.get("vhost", str),
        map=dict(mapping),
        inline_secrets=inline,
        token_ttl=section.get("token_ttl", float, check=_positive))
    section.finish()
    factory = factories[mode]
    problem = factory.validate(promotion)
    if problem is not None:
        key, message = problem
        raise section.error(message, key)
    for listener in listeners:
        if listener.auth == "none" and factory.anonymous == "refused":
            anonymous = sorted(name for name, other in factories.items() if other.anonymous != "refused")
            raise ConfigError(
                f"{path}: [[listeners]] {listener.name!r} has auth = \"none\", which only the "
                f"{' and '.join(anonymous)} promotion modes allow, not {mode!r}; set auth = \"required\"")
        if factory.anonymous == "only" and listener.auth != "none":
            raise ConfigError(
                f"{path}: [promotion] mode = {mode!r} relays the client's own credentials and is "
                f"allowed only on auth = \"none\" listeners; [[listeners]] {listener.name!r} has "
                "auth = \"required\"")
    return promotion
