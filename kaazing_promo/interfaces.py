"""
The seams of the gateway.

Checkers (L{twisted.cred.checkers.ICredentialsChecker}) verify what a client
presented and return an L{IGatewayUser} as the avatar ID; the realm turns it
into the avatar the transports hold; promoters turn the avatar into the AMQP
identity the broker sees.  Transports talk only to the portal and to an
L{IIdentityPromoter}: nothing else knows which realm or mode is in use.
"""

import attr
from twisted.cred.checkers import ICredentialsChecker
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

    def knownBrokerUsers():
        """
        @return: the broker accounts this promoter will certainly use (a
            L{frozenset} of L{str}): each must have a secret at start-up.
        """

    def reconfigure(settings):
        """
        Take a reloaded C{[promotion]} section (its C{map} and C{token_ttl}
        may change on a live gateway).

        @return: L{True} if the promoter uses what changed, L{False} if it
            ignores it (the reload says so).
        """


class IPromoterFactory(Interface):
    """
    A plugin that builds an L{IIdentityPromoter} for one C{[promotion] mode}.
    Discovered with L{twisted.plugin.getPlugins} under C{kaazing_promo.plugins}.
    """

    mode = Attribute("The C{[promotion] mode} value this factory serves (L{str}).")
    anonymous = Attribute(
        'Whether the mode serves C{auth = "none"} listeners: C{"refused"}, C{"allowed"}, or C{"only"} '
        '(a relay of the client\'s own credentials).')

    def validate(settings):
        """
        Check the mode's own keys of C{[promotion]}.

        @param settings: the L{kaazing_promo.config.Promotion} settings.
        @return: L{None}, or C{(key, what is wrong and what to do)}.
        """

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

    permissions = Attribute("The L{kaazing_promo.token.permissions.PermissionTable} in force.")

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
        C{username} gets its L{kaazing_promo.token.permissions.Grant}; anything
        else (a second ask included, or one whose single use cannot be
        made sure of) gets L{None}.

        @return: a L{Deferred} firing with the grant or L{None}.
        """

    def grantFor(tags):
        """
        @param tags: the space-separated tags the broker sends with a vhost,
            resource or topic question.
        @return: a L{Deferred} firing with the grant a redeemed token named
            in them, or L{None}.
        """

    def tagsFor(grant):
        """
        @return: the tags (L{list} of L{str}) the user answer gives for C{grant}.
        """

    def keep(grants):
        """
        Keep C{grants} (of connections open now) known to every gateway of
        a cluster for a while longer; a no-op outside a cluster.

        @return: a L{Deferred} that fires when done and never fails.
        """


class ITokenPromoter(IIdentityPromoter):
    """
    A promoter whose broker passwords are tokens the C{[broker_auth]} server redeems.
    """

    tokenBook = Attribute("The L{ITokenBook} it mints from.")

    def grant(avatar):
        """
        @return: the L{kaazing_promo.token.permissions.Grant} the tokens it mints
            for C{avatar} carry now.
        """


def _alwaysThere():
    return True


@attr.s(frozen=True, slots=True, repr=False)
class LoginAttempt:
    """
    What a listener knows of one client asking to log in.

    @ivar listener: the listener's L{kaazing_promo.config.Listener} settings.
    @ivar host: the client's host (behind C{haproxy:}, the PROXY protocol's),
        what the limits count.
    @ivar source: C{host:port}, for the audit trail.
    @ivar username: L{str}, or L{None} when the client sent no usable credentials.
    @ivar password: L{str} or L{bytes}; never logged, never in C{repr}.
    @ivar stillThere: a callable telling whether the client is still
        connected and waiting: work for a client that has gone is dropped.
    @ivar unusable: why the credentials could not be read, when C{username}
        is L{None} (for the audit trail).
    """

    listener = attr.ib()
    host = attr.ib()
    source = attr.ib()
    username = attr.ib(default=None)
    password = attr.ib(default=None)
    stillThere = attr.ib(default=_alwaysThere)
    unusable = attr.ib(default="no credentials")

    def __repr__(self):
        return f"<LoginAttempt {self.username!r} from {self.source} on {self.listener.name}>"


class IAuthenticator(Interface):
    """
    The one way every listener and endpoint logs a person in (the AMQP
    listener's Start-Ok and update-secret, the WebSocket upgrade, the ticket
    and whoami endpoints).  The failed-login limits, the fair queue of
    password checks, the listener's authorization rules and the audit trail
    of login decisions live behind it, once.
    """

    anonymous = Attribute("The L{IGatewayUser} of C{auth = \"none\"} listeners.")
    ticketTTL = Attribute("Seconds a ticket lives (L{float}).")

    def authenticate(attempt, audit=True):
        """
        @param attempt: a L{LoginAttempt}.
        @param audit: whether a success is a login decision for the audit
            trail (a refusal always is).
        @return: a L{Deferred} firing with the L{IGatewayUser}, or failing
            with L{kaazing_promo.errors.LoginDenied}.
        """

    def issueTicket(avatar, listener, source, credentials=None):
        """
        @return: a single-use ticket (L{str}) for C{avatar} to open one
            WebSocket on C{listener} from the host of C{source}.
        """

    def stillAllowed(avatar, listener):
        """
        Whether the person behind C{avatar} may still be connected to
        C{listener} (after a reload): the realm's current view of them,
        C{require_groups}, the promoter.

        @return: L{None}, or C{(reason for the operator, reason for the client)}.
        """

    def openSession(avatar, listener):
        """
        @return: the value of a session cookie for C{avatar} on C{listener}
            (issued after a password login), or L{None} when the listener
            keeps no sessions.
        """

    def resumeSession(cookie, listener, source):
        """
        Log in with a session cookie instead of a password, checking again
        that its person may still log in on C{listener}.

        @return: a L{Deferred} firing with the L{IGatewayUser}, or failing
            with L{kaazing_promo.errors.LoginDenied}.
        """

    def redeemTicket(ticket, listener, source):
        """
        Spend a ticket, checking again that its user may still log in on
        C{listener}.

        @return: a L{Deferred} firing with C{(avatar, credentials)}, or
            failing with L{kaazing_promo.errors.LoginDenied}.
        """


class IUserStatus(Interface):
    """
    What a realm says of a user it vouched for earlier (a ticket's, a live
    connection's after a reload).
    """

    def current(avatar):
        """
        @param avatar: an L{IGatewayUser} this realm vouched for.
        @return: the user as the realm knows them now (groups may have
            changed), or L{None} if they may no longer log in.
        """

    def generation(user):
        """
        @return: an opaque L{str} that changes when C{user}'s credentials
            change in the realm (a session cookie issued before no longer
            stands), or C{""} when the realm cannot tell.
        """


class IRealmChecker(ICredentialsChecker, IUserStatus):
    """
    A checker of the gateway's realms (internal, delegated).
    """

    concurrency = Attribute("How many password checks it runs at once (L{int}): the login queue's slots.")
    metrics = Attribute("An L{kaazing_promo.ops.metrics.IRealmMetrics} it reports to, or L{None}.")


class IReloadableUsers(IRealmChecker):
    """
    A realm reading its users from files (users.cnf and an overlay) that
    can change on a live gateway.
    """

    path = Attribute("The users.cnf read (L{str}).")
    userCount = Attribute("How many users the last successful read holds (L{int}).")
    unsupportedHashes = Attribute("C{{passHash format: number of users}} that cannot log in.")

    def reload():
        """
        Read the users again, off the reactor thread.

        @return: a L{Deferred} firing L{True} (reloaded) or L{False} (kept the
            old users, the log says why); it never fails.
        """

    def mtimeChanged():
        """
        @return: whether the files changed since they were last read.
        """


class IRevalidating(IRealmChecker):
    """
    A realm whose results expire (X3), asked again with the credentials a
    live connection kept.
    """

    def revalidate(credentials):
        """
        @return: as L{ICredentialsChecker.requestAvatarId}, ignoring any cache.
        """


class IClientLink(Interface):
    """
    What a L{kaazing_promo.amqp.session.GatewaySession} writes to: the
    client's side of one connection, whatever the listener (the AMQP
    listener's TCP protocol, the WebSocket protocol).
    """

    transport = Attribute("The client's transport (paused while a new secret is checked).")

    def write(data):
        """
        Send C{data} (a piece of the AMQP stream) to the client.
        """

    def close(failed):
        """
        End the connection; C{failed} when the client saw no AMQP yet and
        should learn that the gateway failed it (WebSocket close 1011).
        """

    def couple(brokerTransport, maxPendingBytes):
        """
        Wire backpressure both ways between the client's transport and
        C{brokerTransport}: each side's write buffer holds at most
        C{maxPendingBytes} before the other side stops being read.
        """

    def uncouple(brokerTransport):
        """
        Undo L{couple} (the broker side is going while the client may still
        send its Close-Ok), and read the client again.
        """


class IConnectionObserver(Interface):
    """
    Follows the connections of a listener: the audit trail, the X3
    lifetime and the listener's live set subscribe here, so that the
    session itself only speaks AMQP.
    """

    def opened(session):
        """
        The broker's Open-Ok reached the client (C{session.avatar},
        C{brokerUser}, C{vhost}, C{startedAt} are set).
        """

    def renewed(session):
        """
        The person re-authenticated (update-secret): C{session.avatar} and
        its kept credentials are new.
        """

    def finished(session):
        """
        Both sides are closed (C{session.outcome}, C{reason}, C{bytesIn},
        C{bytesOut} are final).
        """


class INonceLedger(Interface):
    """
    Which single-use nonces (of tickets, of broker tokens) are spent: in
    one process, or across the gateways of a cluster.
    """

    def spend(nonce, ttl):
        """
        Spend C{nonce}, remembering it for C{ttl} seconds (until what it
        names expires anyway).

        @return: a L{Deferred} firing with C{True} the first time, C{False}
            after; failing with L{kaazing_promo.errors.SharedStateUnavailable}
            when it cannot be known.
        """


#: How an attempt ended, for L{IFailureStore.end}.
SUCCEEDED = "succeeded"
FAILED = "failed"
ABANDONED = "abandoned"


@attr.s(frozen=True, slots=True)
class Standing:
    """
    What the failed-login record says of a source host and a user name as
    an attempt from one at the other begins (see L{IFailureStore.begin}).

    @ivar failed: failed logins from C{host} in the window.
    @ivar failedWait: seconds until the oldest of them leaves the window.
    @ivar inFlight: other attempts from C{host} still being checked.
    @ivar userHosts: distinct hosts that failed on C{user} in the window.
    @ivar userWait: seconds until the oldest of them leaves the window.
    @ivar known: whether C{user} logged in from C{host} successfully before.
    @ivar shared: whether these counts are the cluster's (not this process's).
    @ivar handle: the store's own name for the attempt, for L{IFailureStore.end}.
    """

    host = attr.ib()
    user = attr.ib()
    failed = attr.ib(default=0)
    failedWait = attr.ib(default=0.0)
    inFlight = attr.ib(default=0)
    userHosts = attr.ib(default=0)
    userWait = attr.ib(default=0.0)
    known = attr.ib(default=False)
    shared = attr.ib(default=False)
    handle = attr.ib(default=None, repr=False)


class IFailureStore(Interface):
    """
    The login protection's memory: failed logins per source host and, per
    user name, the distinct hosts that failed on it, in a sliding window;
    attempts in flight per host; the hosts each user logged in from.  Kept
    by one process, or shared by the gateways of a cluster.
    """

    def begin(host, user):
        """
        An attempt from C{host} to log in as C{user} begins: it counts as in
        flight until L{end}.

        @return: a L{Deferred} firing with the L{Standing} before it (at
            once for a store in memory).
        """

    def end(standing, outcome=None):
        """
        The attempt of C{standing} is over: it leaves the flight and is
        recorded as C{outcome}: L{FAILED} (a wrong password: counts against
        the host and the user), L{ABANDONED} (the client left before it was
        checked: counts against the host), L{SUCCEEDED} (the user is known
        at the host from now on), or L{None} (not the client's doing).
        """


class IGrantStore(Interface):
    """
    Token mode across a cluster: the grants of redeemed tokens by grant
    tag, for whichever gateway the broker asks next about the connection.
    """

    def keep(tag, grant, ttl):
        """
        Keep C{grant} under C{tag} for C{ttl} seconds from now.

        @return: a L{Deferred} firing once it is kept; failing with
            L{kaazing_promo.errors.SharedStateUnavailable}.
        """

    def find(tag):
        """
        @return: a L{Deferred} firing with the grant kept under C{tag} or
            L{None}; failing with L{kaazing_promo.errors.SharedStateUnavailable}.
        """
