"""A throwaway certificate authority for tests.

`shared_ca()` returns one `TestCA` per test process (its directory is removed at exit);
`TestCA.issue(names)` writes a leaf certificate whose subjectAltName lists exactly the given
DNS names and IP addresses. Keys are ECDSA P-256: fast to make and accepted by OpenSSL,
GnuTLS (git's libcurl) and mitmproxy alike.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import ipaddress
import shutil
import ssl
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=30)
_BACKDATE = datetime.timedelta(days=1)


def _san(name: str) -> x509.GeneralName:
    """An IPAddress entry for an IP literal, a DNSName entry for anything else."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class TestCA:
    """A CA whose certificate is `ca_path` (PEM); leaf certificates are issued on demand.

    `directory` holds every file; when None a temporary directory is made and removed by
    `cleanup()`. Issued leaves are cached by their name list, so repeated calls are cheap.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, directory: Path | None = None) -> None:
        self._owns_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="gateway-test-ca-")) if directory is None \
            else Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._issued: dict[tuple[str, ...], tuple[Path, Path]] = {}
        self._serial = 1
        now = datetime.datetime.now(datetime.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway test CA"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gateway tests")])
        public = self._key.public_key()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_path = self.directory / "ca.pem"
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.ca_key_path = self.directory / "ca-key.pem"
        _write_key(self.ca_key_path, self._key)

    def issue(self, names: Sequence[str]) -> tuple[Path, Path]:
        """(cert_path, key_path) of a leaf for `names` (DNS names and/or IP literals)."""
        if isinstance(names, str) or not names:
            raise ValueError("names must be a non-empty list of DNS names or IP addresses")
        key_names = tuple(names)
        with self._lock:
            if key_names in self._issued:
                return self._issued[key_names]
            self._serial += 1
            stem = f"leaf-{self._serial}"
            now = datetime.datetime.now(datetime.UTC)
            key = ec.generate_private_key(ec.SECP256R1())
            ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            cert = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                            names[0][:64])]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - _BACKDATE).not_valid_after(now + _VALIDITY)
                .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False,
                                             decipher_only=False),
                               critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    ca_ski.value), critical=False)
                .sign(self._key, hashes.SHA256())
            )
            cert_path = self.directory / f"{stem}.pem"
            key_path = self.directory / f"{stem}-key.pem"
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            _write_key(key_path, key)
            self._issued[key_names] = (cert_path, key_path)
            return cert_path, key_path

    def server_context(self, names: Sequence[str]) -> ssl.SSLContext:
        """A TLS server context presenting a leaf for `names`."""
        cert_path, key_path = self.issue(names)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context that trusts this CA only (hostname checking on)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def cleanup(self) -> None:
        """Remove the directory if this CA made it."""
        if self._owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)


@functools.cache
def shared_ca() -> TestCA:
    """The process-wide CA: made once per test session, removed when the process exits."""
    ca = TestCA()
    atexit.register(ca.cleanup)
    return ca
