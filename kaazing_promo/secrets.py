"""
Secrets: values that must never appear in logs, exceptions or repr()s.
"""

import base64
import hashlib
import hmac
import os
import stat
import tempfile
import tomllib

import attr

from kaazing_promo.errors import ConfigError


@attr.s(frozen=True, repr=False, eq=True, hash=True)
class Secret:
    """
    A secret string.  Its C{repr} and C{str} are C{<redacted>}; the value is
    reached only through L{Secret.reveal}.
    """

    _value = attr.ib(converter=str)

    def reveal(self):
        """
        @return: the secret value (L{str}); pass it on, never log it.
        """
        return self._value

    def __repr__(self):
        return "<redacted>"

    __str__ = __repr__


def readPrivateFile(path, fix):
    """
    Read a file of secrets, refusing one that others may read or that
    anyone but its owner may write.

    @param fix: what the message tells the operator to do when the file
        cannot be read at all.
    @return: its text.
    @raise ConfigError: the file is unusable; the message names it, never its content.
    """
    try:
        info = os.stat(path)
    except OSError as e:
        raise ConfigError(f"{path}: secrets file cannot be read ({e.strerror}); {fix}")
    if info.st_mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP):
        raise ConfigError(
            f"{path}: secrets file is readable by others or writable by more than its owner "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 0640 or 0600 on it")
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: secrets file cannot be read ({e}); fix its permissions or encoding")


def readSecret(where, path=None, variable=None, environ=None):
    """
    One secret kept outside the configuration file: the whole content of a
    file (see L{readPrivateFile}; surrounding white space dropped) or the
    value of an environment variable.

    @param where: the configuration key that named the source, for messages.
    @return: a L{Secret}, or L{None} when neither source is given.
    @raise ConfigError: the source is missing, empty or unusable.
    """
    if path is not None:
        value = readPrivateFile(path, f"create it or fix {where}").strip()
        source = path
    elif variable is not None:
        environ = os.environ if environ is None else environ
        if variable not in environ:
            raise ConfigError(f"{where}: environment variable {variable} is not set; export it before starting "
                              "the gateway (systemd: an EnvironmentFile only root may read)")
        value = environ[variable].strip()
        source = f"${variable}"
    else:
        return None
    if not value:
        raise ConfigError(f"{source}: {where}: the secret is empty; put the value there")
    return Secret(value)


#: The shortest key text accepted, in characters (32 random bytes in base64 are 44).
MIN_KEY_LENGTH = 32


def readSigningKey(where, text, context):
    """
    @param text: a shared key's text, as an operator wrote or the gateway
        generated it.
    @param context: what the key signs (L{bytes}): different uses of one
        text get unrelated keys.
    @return: the 32-byte signing key derived from C{text}.
    @raise ConfigError: C{text} is shorter than L{MIN_KEY_LENGTH}.
    """
    if len(text) < MIN_KEY_LENGTH:
        raise ConfigError(f"{where}: the key is shorter than {MIN_KEY_LENGTH} characters; make one with "
                          "`head -c 32 /dev/urandom | base64`")
    return hmac.new(text.encode("utf-8"), context, hashlib.sha256).digest()


def _linkNewKeyFile(where, path):
    """
    Write a new key (32 random bytes in base64) whole under a temporary
    name in C{path}'s directory, then link it into place: link() fails on
    an existing name, so the first process's key wins and no one ever reads
    it empty or half written.

    @return: whether this call's key is the one at C{path}.
    @raise ConfigError: the directory is not writable.
    """
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=".key-", dir=os.path.dirname(os.path.abspath(path)))
    except OSError as e:
        raise ConfigError(f"{path}: {where}: the key file cannot be created ({e.strerror}); create its directory "
                          "writable by the gateway's user, or make the key yourself: "
                          "`head -c 32 /dev/urandom | base64 > FILE; chmod 0600 FILE`")
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as f:
            f.write(base64.b64encode(os.urandom(32)).decode("ascii") + "\n")
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)
    return True


def readOrCreateKeyFile(where, path):
    """
    The text of the key file at C{path}, which is created first (32 random
    bytes in base64, mode 0600, never overwritten: two processes starting
    at once agree on the first one's, and neither reads it half written)
    when it does not exist.

    @return: C{(text, created)}.
    @raise ConfigError: the file (or its directory) is unusable.
    """
    created = not os.path.exists(path) and _linkNewKeyFile(where, path)
    return readPrivateFile(path, f"fix {where}").strip(), created


class SecretStore:
    """
    Broker passwords by broker user name, from (in order of precedence) the
    C{KAAZING_PROMO_SECRETS} environment variable (TOML text), C{[promotion]
    secrets_file}, or inline C{[promotion.secrets]} (the demo's convenience).

    A secrets file that others may read, or that anyone but its owner may
    write, is refused: the broker passwords are what promotion protects.
    """

    ENVIRONMENT = "KAAZING_PROMO_SECRETS"

    def __init__(self, path=None, inline=None, environ=None):
        self.path = path
        self._inline = inline
        self._environ = os.environ if environ is None else environ
        self._secrets = {}
        self.source = None

    def load(self):
        """
        (Re)read the secrets; on error the previous ones stay.

        @raise ConfigError: the source is unusable; the message names it.
        """
        if self.ENVIRONMENT in self._environ:
            source = f"${self.ENVIRONMENT}"
            secrets = self._parse(self._environ[self.ENVIRONMENT], source)
        elif self.path is not None:
            source = self.path
            secrets = self._parse(self._readFile(self.path), source)
        elif self._inline is not None:
            source = "inline [promotion.secrets]"
            secrets = dict(self._inline)
        else:
            source, secrets = None, {}
        self._secrets = {user: Secret(password) for user, password in secrets.items()}
        self.source = source

    def get(self, user):
        """
        @return: the L{Secret} for broker user C{user}, or L{None}.
        """
        return self._secrets.get(user)

    def __contains__(self, user):
        return user in self._secrets

    def names(self):
        """
        @return: the broker user names that have a secret (never the secrets).
        """
        return set(self._secrets)

    def __repr__(self):
        return f"<SecretStore source={self.source!r} users={sorted(self._secrets)!r}>"

    @staticmethod
    def _readFile(path):
        return readPrivateFile(path, "create it (broker_user = \"password\" lines) or fix [promotion] secrets_file")

    @staticmethod
    def _parse(text, source):
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            # The decoder's message names a position, never the file's content.
            raise ConfigError(f"{source}: secrets are not valid TOML ({e}); write broker_user = \"password\" lines")
        bad = [user for user, value in data.items() if not isinstance(value, str)]
        if bad:
            raise ConfigError(f"{source}: secret for {bad[0]!r} is not a string; write broker_user = \"password\"")
        return data
