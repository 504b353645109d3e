"""
Token mode's permission table: what members of a group (or holders of an
access profile) may do at the broker, answered the way RabbitMQ's own
internal backend answers it.

RabbitMQ semantics kept here, so that a table means what the same regexes
would mean in C{rabbitmqctl set_permissions}:

  - A regex is searched, not anchored: RabbitMQ runs
    C{re:run(Name, Regex, [{capture, none}])}, which matches anywhere in the
    name; anchor with C{^}/C{$} in the table.
  - Both are binaries and C{re:run} gets no C{unicode} option, so PCRE
    matches the UTF-8 name byte by byte: C{.} is one byte, and C{\d},
    C{\s}, C{\w}, C{\b}, POSIX classes and C{(?i)} know ASCII only (PCRE2,
    Erlang/OTP 28 on; up to OTP 27 C{\w}, C{\b} and C{(?i)} also counted
    Latin-1 letters, byte by byte).  Here too: patterns and names are
    matched as UTF-8 bytes with the C{regex} package, whose syntax is closer
    to PCRE's than L{re}'s (POSIX classes, C{\z}).  C{$} matches at the end
    or before a final newline in both; C{\Z} does that in PCRE but only at
    the end here (so it grants less).
  - A match that runs away (exponential backtracking) gives up: PCRE at its
    match limit, which C{re:run} answers as nomatch, the gateway after
    L{MATCH_TIMEOUT} seconds on the reactor thread.  Both deny.
  - An empty regex grants nothing: RabbitMQ replaces C{""} with C{"^$"}.
  - There are no implicit grants: the default exchange is C{amq.default},
    a server-named queue is C{amq.gen-...}; a table that wants them says so.
  - An entry without C{topic} puts no limit on routing keys; with one, the
    routing (or binding) key must match it.  C{{username}} and C{{vhost}}
    in a topic pattern are replaced by the (regex-escaped) values the broker
    sends in C{variable_map}; RabbitMQ substitutes them unescaped, which
    lets a user name such as C{a.b} match C{axb}.

Deny by default: a person gets the union of the entries that name one of
their groups or access profiles, and nothing else.
"""

import attr
import regex
from twisted.logger import Logger

from kaazing_promo.ops.logtext import escaped

#: The permissions a resource question may ask about.
RESOURCE_PERMISSIONS = ("configure", "write", "read")
#: The resource kinds C{/auth/resource} answers for (topics have their own path).
RESOURCE_KINDS = ("queue", "exchange")
#: The permissions a topic question may ask about.
TOPIC_PERMISSIONS = ("write", "read")

GROUP = "group"
ACCESS_PROFILE = "access_profile"


#: Seconds one regex may run against one name: a legitimate one on a name of
#: at most 255 bytes takes microseconds.
MATCH_TIMEOUT = 0.02

_log = Logger(namespace="kaazing_promo.broker_auth")
#: How many regexes that ran away a table remembers having logged.
_RAN_AWAY_LIMIT = 1000


def rabbitPattern(pattern):
    """
    @return: the regex RabbitMQ evaluates for C{pattern} (an empty one
        grants nothing: it becomes C{^$}).
    """
    return pattern if pattern else "^$"


def compilePattern(pattern):
    """
    Compile a permission regex as RabbitMQ's C{re:run} reads it: UTF-8
    bytes, ASCII classes.

    @raise ValueError: C{pattern} is not a regex.
    """
    try:
        return regex.compile(rabbitPattern(pattern).encode("utf-8"), regex.ASCII)
    except regex.error as e:
        raise ValueError(str(e)) from None


def searches(pattern, name, ranAway=None):
    """
    RabbitMQ's C{re:run(Name, Regex, [{capture, none}])}: an unanchored
    search of the UTF-8 bytes of C{name}, bounded by L{MATCH_TIMEOUT}.

    @param ranAway: the patterns whose running away was logged already (a
        L{set} this adds to), so that a client asking again and again does
        not fill the log; L{None} logs every time.
    @return: whether C{pattern} matches; L{False} when it ran too long.
    """
    try:
        return compilePattern(pattern).search(name.encode("utf-8"), timeout=MATCH_TIMEOUT) is not None
    except TimeoutError:
        if ranAway is None or (pattern not in ranAway and len(ranAway) < _RAN_AWAY_LIMIT):
            if ranAway is not None:
                ranAway.add(pattern)
            _log.warn("broker_auth: regex {pattern!r} took longer than {timeout} s on the name \"{name}\" and was "
                      "taken as no match (deny); it backtracks without bound on some names: rewrite it",
                      pattern=pattern, timeout=MATCH_TIMEOUT, name=escaped(name))
        return False


def principalsOf(avatar):
    """
    @param avatar: an L{kaazing_promo.interfaces.IGatewayUser}.
    @return: the avatar's groups and access profiles as a L{frozenset} of
        C{(kind, name)} pairs, C{kind} being L{GROUP} or L{ACCESS_PROFILE}.
    """
    return frozenset(
        [(GROUP, name) for name in avatar.groups] + [(ACCESS_PROFILE, name) for name in avatar.access_profiles])


@attr.s(frozen=True)
class Grant:
    """
    What one promoted connection may do: the principals (groups and access
    profiles) that matched the table when its token was minted, and the
    virtual host it is pinned to (L{None}: any the table allows).
    """

    principals = attr.ib(converter=frozenset)
    vhost = attr.ib(default=None)


@attr.s(frozen=True)
class _Entry:
    principal = attr.ib()
    vhost = attr.ib()
    configure = attr.ib()
    write = attr.ib()
    read = attr.ib()
    topic = attr.ib()
    tags = attr.ib()

    @classmethod
    def fromPermission(cls, permission):
        if permission.group is not None:
            principal = (GROUP, permission.group)
        else:
            principal = (ACCESS_PROFILE, permission.access_profile)
        return cls(principal, permission.vhost, permission.configure, permission.write, permission.read,
                   permission.topic, tuple(tag.lower() for tag in permission.tags))


class PermissionTable:
    """
    The C{[[permissions]]} entries, evaluated for a L{Grant}.

    @param permissions: L{kaazing_promo.config.Permission} entries.
    """

    def __init__(self, permissions=()):
        self._entries = tuple(_Entry.fromPermission(permission) for permission in permissions)
        self._named = frozenset(entry.principal for entry in self._entries)
        self._ranAway = set()

    def __len__(self):
        return len(self._entries)

    def relevantPrincipals(self, avatar):
        """
        @return: those of C{avatar}'s groups and access profiles that some
            entry names (the only ones a token needs to carry); empty when
            no entry applies to the avatar.
        """
        return principalsOf(avatar) & self._named

    def _entriesFor(self, grant, vhost=None):
        if vhost is None:
            vhost = grant.vhost
        elif grant.vhost is not None and vhost != grant.vhost:
            return []
        return [entry for entry in self._entries
                if entry.principal in grant.principals and (vhost is None or entry.vhost == vhost)]

    def applies(self, grant):
        """
        @return: whether any entry matches C{grant} at all (on its pinned
            vhost, if it has one).
        """
        return bool(self._entriesFor(grant))

    def tags(self, grant):
        """
        @return: the sorted RabbitMQ user tags of every entry C{grant} matches.
        """
        return sorted({tag for entry in self._entriesFor(grant) for tag in entry.tags})

    def allowsVhost(self, grant, vhost):
        """
        C{/auth/vhost}: some matching entry is for C{vhost} (and the grant
        is pinned to it, if pinned).
        """
        return bool(self._entriesFor(grant, vhost))

    def allowsResource(self, grant, vhost, kind, name, permission):
        """
        C{/auth/resource}: some matching entry for C{vhost} has a
        C{permission} regex that C{name} matches.
        """
        if kind not in RESOURCE_KINDS or permission not in RESOURCE_PERMISSIONS:
            return False
        return any(searches(getattr(entry, permission), name, self._ranAway)
                   for entry in self._entriesFor(grant, vhost))

    def allowsTopic(self, grant, vhost, exchange, permission, routingKey, variables=None):
        """
        C{/auth/topic}: some matching entry for C{vhost} grants C{permission}
        on C{exchange} and either has no C{topic} or one that C{routingKey}
        matches.

        @param variables: C{{"username": ..., "vhost": ...}} from the
            broker's C{variable_map}, substituted (escaped) for
            C{{username}} and C{{vhost}} in topic patterns.
        """
        if permission not in TOPIC_PERMISSIONS:
            return False
        for entry in self._entriesFor(grant, vhost):
            if not searches(getattr(entry, permission), exchange, self._ranAway):
                continue
            if entry.topic is None or searches(_expand(entry.topic, variables or {}), routingKey, self._ranAway):
                return True
        return False


def _expand(pattern, variables):
    for name, value in variables.items():
        pattern = pattern.replace("{" + name + "}", regex.escape(value))
    return pattern
