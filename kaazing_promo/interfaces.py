"""
The seams of the gateway.

Checkers (L{twisted.cred.checkers.ICredentialsChecker}) verify what a client
presented and return an L{IGatewayUser} as the avatar ID; the realm turns it
into the avatar the transports hold; promoters turn the avatar into the AMQP
identity the broker sees.  Transports talk only to the portal and to an
L{IIdentityPromoter}: nothing else knows which realm or mode is in use.
"""

from zope.interface import Attribute, Interface


class IGatewayUser(Interface):
    """
    A person the gateway has authenticated (or the anonymous user of an
    C{auth = "none"} listener).
    """

    user = Attribute("The gateway user name (L{str}).")
    groups = Attribute("L{frozenset} of group names (L{str}).")
    access_profiles = Attribute("L{frozenset} of API Gateway access profile names (L{str}).")
    expires = Attribute(
        "Wall-clock time (seconds since the epoch, L{float}) at which the "
        "authentication stops being valid, or L{None} for never.")
    realm = Attribute('Which realm vouched for the user: "internal", "delegated" or "anonymous".')


class IAMQPIdentity(Interface):
    """
    The identity a connection presents to the broker.
    """

    username = Attribute("Broker user name (L{str}).")
    password = Attribute("L{kaazing_promo.secrets.Secret} holding the broker password or token.")


class IIdentityPromoter(Interface):
    """
    Decides which broker identity and virtual host an authenticated user gets.

    Both methods either return a value or raise
    L{kaazing_promo.errors.PromotionRefused}; neither talks to the broker.
    """

    replaces_credentials = Attribute(
        "L{bool}: C{False} only for a plain relay that forwards the client's "
        "own Start-Ok (passthrough).")

    def authorize(avatar):
        """
        Check, before any AMQP byte reaches the broker, that C{avatar} may be
        promoted at all (e.g. it is mapped).

        @raise PromotionRefused: it may not.
        """

    def credentials(avatar, mechanisms):
        """
        The broker identity for C{avatar}.

        @param avatar: an L{IGatewayUser}.
        @param mechanisms: L{list} of L{bytes}, the SASL mechanisms the broker offered.
        @return: an L{IAMQPIdentity}.
        @raise PromotionRefused: the user may not be promoted.
        """

    def vhost(avatar, requested):
        """
        The virtual host C{avatar} opens when the client asks for C{requested}.

        @param requested: L{str}, the client's Connection.Open virtual-host.
        @return: L{str}, the virtual host sent to the broker.
        @raise PromotionRefused: the user may not use C{requested}.
        """


class IPromoterFactory(Interface):
    """
    A plugin that builds an L{IIdentityPromoter} for one C{[promotion] mode}.
    Discovered with L{twisted.plugin.getPlugins} under C{kaazing_promo.plugins}.
    """

    mode = Attribute("The C{[promotion] mode} value this factory serves (L{str}).")

    def build(settings, secrets):
        """
        @param settings: the L{kaazing_promo.config.Promotion} settings.
        @param secrets: a L{kaazing_promo.secrets.SecretStore}.
        @return: an L{IIdentityPromoter}.
        """


class ITokenBook(Interface):
    """
    Token mode's single-use broker passwords: minted by the promoter,
    redeemed when the broker asks the C{[broker_auth]} server, and the
    grants (groups, access profiles, pinned vhost) they carry.
    """

    permissions = Attribute("The L{kaazing_promo.permissions.PermissionTable} in force.")

    def setPermissions(permissions):
        """
        Take the C{[[permissions]]} entries (at start-up and on reload).
        """

    def mint(brokerUser, avatar, vhost=None):
        """
        @return: a L{kaazing_promo.secrets.Secret}: a fresh token for
            C{brokerUser}, carrying C{avatar}'s grant.
        """

    def redeem(username, password):
        """
        Spend a token: the first ask of a valid, unexpired token minted for
        C{username} returns its L{kaazing_promo.permissions.Grant}; anything
        else (a second ask included) returns L{None}.
        """

    def grantFor(tags):
        """
        @param tags: the space-separated tags the broker sends with a vhost,
            resource or topic question.
        @return: the grant a redeemed token named in them, or L{None}.
        """

    def tagsFor(grant):
        """
        @return: the tags (L{list} of L{str}) the user answer gives for C{grant}.
        """


class ITokenPromoter(IIdentityPromoter):
    """
    A promoter whose broker passwords are tokens the C{[broker_auth]} server redeems.
    """

    tokenBook = Attribute("The L{ITokenBook} it mints from.")
