"""
Promoters: which broker identity an authenticated person gets.

Each mode of C{[promotion]} is an L{IIdentityPromoter} built by an
L{IPromoterFactory} plugin; a site adds its own mode by dropping a module
that provides one into C{kaazing_promo/plugins/} (or any
C{kaazing_promo.plugins} package on the path), without editing this file.
"""

import attr
from twisted.plugin import IPlugin, getPlugins
from zope.interface import implementer

from kaazing_promo import plugins
from kaazing_promo.errors import ConfigError, PromotionRefused
from kaazing_promo.interfaces import IAMQPIdentity, IIdentityPromoter, IPromoterFactory

PLAIN = b"PLAIN"
AMQPLAIN = b"AMQPLAIN"


@implementer(IAMQPIdentity)
@attr.s(frozen=True)
class AMQPIdentity:
    """
    The identity a connection presents to the broker.
    """

    username = attr.ib()
    password = attr.ib(repr=lambda _: "<redacted>")


def chooseMechanism(mechanisms):
    """
    PLAIN if the broker offers it, else AMQPLAIN.

    @param mechanisms: L{list} of L{bytes} from the broker's Connection.Start.
    @raise PromotionRefused: the broker offers neither.
    """
    for preferred in (PLAIN, AMQPLAIN):
        if preferred in mechanisms:
            return preferred
    offered = b" ".join(mechanisms).decode("ascii", "replace")
    raise PromotionRefused(f"the broker offers neither PLAIN nor AMQPLAIN (it offers {offered!r})")


def pinVhost(pinned, requested):
    """
    X2: the virtual host a connection opens: C{[promotion] vhost} when it is
    set, whatever the client asked, else what the client asked.
    """
    return requested if pinned is None else pinned


def mappedUser(table, avatar):
    """
    P4: C{avatar}'s broker user in C{[promotion.map]}.

    @raise PromotionRefused: the table has no entry for the user.
    """
    try:
        return table[avatar.user]
    except KeyError:
        raise PromotionRefused(f"gateway user {avatar.user!r} has no entry in [promotion.map]") from None


@implementer(IIdentityPromoter)
class _BrokerAccountPromoter:
    """
    The shared part of the modes that log in with a broker password from
    the L{SecretStore}: subclasses say only which broker user a person is.
    """

    replaces_credentials = True

    def __init__(self, settings, secrets):
        self._pinnedVhost = settings.vhost
        self._secrets = secrets

    def brokerUser(self, avatar):
        raise NotImplementedError()

    def knownBrokerUsers(self):
        """
        @return: the broker users this promoter can name without seeing a
            person (their secrets must exist at start-up); none when it
            cannot tell.
        """
        return frozenset()

    def reconfigure(self, settings):
        return False

    def authorize(self, avatar):
        brokerUser = self.brokerUser(avatar)
        if brokerUser not in self._secrets:
            raise PromotionRefused(f"no broker secret for broker user {brokerUser!r}")
        return brokerUser

    def credentials(self, avatar, mechanisms):
        brokerUser = self.authorize(avatar)
        return AMQPIdentity(brokerUser, self._secrets.get(brokerUser))

    def vhost(self, avatar, requested):
        return pinVhost(self._pinnedVhost, requested)


class IdentityPromoter(_BrokerAccountPromoter):
    """
    P6: the gateway user name is the broker user name.
    """

    def brokerUser(self, avatar):
        return avatar.user


class MappingPromoter(_BrokerAccountPromoter):
    """
    P4: a table maps gateway users to broker users; unmapped users are refused.
    """

    def __init__(self, settings, secrets):
        _BrokerAccountPromoter.__init__(self, settings, secrets)
        self._map = dict(settings.map)

    def reconfigure(self, settings):
        """
        Take a reloaded C{[promotion.map]}.
        """
        self._map = dict(settings.map)
        return True

    def knownBrokerUsers(self):
        return frozenset(self._map.values())

    def brokerUser(self, avatar):
        return mappedUser(self._map, avatar)


class ConsolidatedPromoter(_BrokerAccountPromoter):
    """
    P5: every authenticated (or anonymous) user is one broker account.
    """

    def __init__(self, settings, secrets):
        _BrokerAccountPromoter.__init__(self, settings, secrets)
        self._user = settings.user

    def knownBrokerUsers(self):
        return frozenset({self._user})

    def brokerUser(self, avatar):
        return self._user


@implementer(IIdentityPromoter)
class PassthroughPromoter:
    """
    A plain relay: the client's own Start-Ok reaches the broker.  Allowed
    only on C{auth = "none"} listeners (checked by the configuration).
    """

    replaces_credentials = False

    def __init__(self, settings, secrets):
        self._pinnedVhost = settings.vhost

    def authorize(self, avatar):
        return None

    def credentials(self, avatar, mechanisms):
        return None

    def vhost(self, avatar, requested):
        return pinVhost(self._pinnedVhost, requested)

    def knownBrokerUsers(self):
        return frozenset()

    def reconfigure(self, settings):
        return False


@implementer(IPlugin, IPromoterFactory)
@attr.s(frozen=True)
class PromoterFactory:
    """
    An L{IPromoterFactory} for a promoter class taking C{(settings, secrets)}.
    """

    mode = attr.ib()
    promoterClass = attr.ib()
    anonymous = attr.ib(default="refused")
    #: C{{key: message}}: keys of C{[promotion]} the mode cannot do without.
    required = attr.ib(default=attr.Factory(dict))

    def validate(self, settings):
        for key, message in self.required.items():
            if not getattr(settings, key):
                return key, message
        return None

    def build(self, settings, secrets):
        return self.promoterClass(settings, secrets)


def promoterFactories():
    """
    The promotion modes there are: every L{IPromoterFactory} plugin under
    C{kaazing_promo.plugins} (the built-in modes are plugins too).

    @return: C{{mode: factory}}.
    """
    return {factory.mode: factory for factory in getPlugins(IPromoterFactory, plugins)}


def makePromoter(settings, secrets):
    """
    Build the promoter for C{settings.mode} from whichever plugin serves it.

    @raise ConfigError: no plugin serves that mode.
    """
    factories = promoterFactories()
    try:
        factory = factories[settings.mode]
    except KeyError:
        raise ConfigError(f"[promotion] mode {settings.mode!r} has no promoter plugin; "
                          f"available: {', '.join(sorted(factories))}")
    return factory.build(settings, secrets)
