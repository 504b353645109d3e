"""
A throw-away certificate authority and a site that waits for its
connections to close: for tests that serve HTTPS on 127.0.0.1.
"""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import defer
from twisted.web.server import Site


def _name(commonName):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])


def _pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


class TestPKI:
    """
    A throw-away certificate authority, made in the test's temporary
    directory (no key material is committed).
    """

    def __init__(self, directory):
        self.directory = directory
        directory.makedirs()
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.name = _name("kaazing-promo test CA")
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        self.caFile = directory.child("ca.pem")
        self.caFile.setContent(
            self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, name, subjectAltNames):
        """
        Issue a server certificate.

        @return: C{(key file, certificate file)} L{FilePath}s.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(subjectAltNames), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        keyFile = self.directory.child(name + ".key")
        keyFile.setContent(_pem(key))
        certFile = self.directory.child(name + ".pem")
        certFile.setContent(certificate.public_bytes(serialization.Encoding.PEM))
        return keyFile, certFile


class TrackingSite(Site):
    """
    A Site that can wait for its connections to close, so a test leaves a
    clean reactor.
    """

    def __init__(self, resource):
        Site.__init__(self, resource)
        self.closed = []

    def buildProtocol(self, addr):
        protocol = Site.buildProtocol(self, addr)
        closed = defer.Deferred()
        self.closed.append(closed)
        connectionLost = protocol.connectionLost

        def lost(reason):
            connectionLost(reason)
            closed.callback(None)

        protocol.connectionLost = lost
        return protocol
