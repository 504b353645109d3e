"""
Token mode's permission table: what members of a group (or holders of an
access profile) may do at the broker, answered the way RabbitMQ's own
internal backend answers it.

RabbitMQ semantics kept here, so that a table means what the same regexes
would mean in C{rabbitmqctl set_permissions}:

  - A regex is searched, not anchored: RabbitMQ runs
    C{re:run(Name, Regex, [{capture, none}])}, which matches anywhere in the
    name (L{re.search}); anchor with C{^}/C{$} in the table.
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

import re

import attr

#: The permissions a resource question may ask about.
RESOURCE_PERMISSIONS = ("configure", "write", "read")
#: The resource kinds C{/auth/resource} answers for (topics have their own path).
RESOURCE_KINDS = ("queue", "exchange")
#: The permissions a topic question may ask about.
TOPIC_PERMISSIONS = ("write", "read")

GROUP = "group"
ACCESS_PROFILE = "access_profile"


def rabbitPattern(pattern):
    """
    @return: the regex RabbitMQ evaluates for C{pattern} (an empty one
        grants nothing: it becomes C{^$}).
    """
    return pattern if pattern else "^$"


def searches(pattern, name):
    """
    RabbitMQ's C{re:run(Name, Regex, [{capture, none}])}: an unanchored search.
    """
    return re.search(rabbitPattern(pattern), name) is not None


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
        return any(searches(getattr(entry, permission), name) for entry in self._entriesFor(grant, vhost))

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
            if not searches(getattr(entry, permission), exchange):
                continue
            if entry.topic is None or searches(_expand(entry.topic, variables or {}), routingKey):
                return True
        return False


def _expand(pattern, variables):
    for name, value in variables.items():
        pattern = pattern.replace("{" + name + "}", re.escape(value))
    return pattern
