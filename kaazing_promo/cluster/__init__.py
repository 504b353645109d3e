"""
Several gateways acting as one (C{[cluster]}).

Gateways of one cluster share a signing key, so that a ticket or a broker
token one of them signs is good at any other, and keep what must be
counted or spent once in one Redis server: the failed-login counters, the
redeemed tickets and tokens, and the grants the broker's later questions
about a token's connection are answered from.  Without C{[cluster]} this
package is never imported and every process keeps its own.
"""

import hashlib
import hmac

from kaazing_promo.errors import ConfigError
from kaazing_promo.secrets import readSecret

#: The shortest shared key accepted (characters of the key file or variable).
MIN_KEY_LENGTH = 32

_KEY_CONTEXT = b"kaazing-promo cluster signing key v1"


def loadClusterSecrets(config, environ=None):
    """
    Read the cluster's shared key and Redis password from where
    C{[cluster]} says they are.

    @param config: the L{kaazing_promo.config.Config}, which has a C{cluster}.
    @return: C{(signing key (L{bytes}), password (L{kaazing_promo.secrets.Secret} or L{None}))}.
    @raise ConfigError: a source is missing, unreadable by its owner only,
        empty, or the key is too short.
    """
    cluster = config.cluster
    keyKey = "key_file" if cluster.key_file is not None else "key_env"
    where = f"{config.path}: [cluster] key '{keyKey}'"
    key = readSecret(where, cluster.key_file, cluster.key_env, environ)
    if len(key.reveal()) < MIN_KEY_LENGTH:
        raise ConfigError(f"{where}: the shared key is shorter than {MIN_KEY_LENGTH} characters; make one with "
                          "`head -c 32 /dev/urandom | base64` and give every gateway the same")
    passwordKey = "password_file" if cluster.password_file is not None else "password_env"
    password = readSecret(f"{config.path}: [cluster] key '{passwordKey}'",
                          cluster.password_file, cluster.password_env, environ)
    signingKey = hmac.new(key.reveal().encode("utf-8"), _KEY_CONTEXT, hashlib.sha256).digest()
    return signingKey, password
