"""Certificates for the upstream control plane: one CA, serving certificates, client identities.

Kubernetes authenticates components by client certificate (CN = user, O = groups) and trusts
one CA. Generating them here (instead of with openssl or kubeadm) keeps the test bed free of
anything the machine might lack; the keys are EC P-256, quick to make. The certificates
themselves are built by the product's governance/pki.py; this module keeps them as files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from governance import pki
from governance.pki import private_pem as _private_pem


@dataclass(frozen=True)
class KeyPair:
    """Paths of a PEM certificate and its PEM private key."""

    cert: Path
    key: Path


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


class Authority:
    """A CA kept as files in `directory` (ca.crt, ca.key); `issue` signs leaf certificates."""

    def __init__(self, directory: Path, name: str = "qgov-upstream-ca") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.pair = KeyPair(directory / "ca.crt", directory / "ca.key")
        if self.pair.cert.exists() and self.pair.key.exists():
            self._key = pki.load_key(self.pair.key.read_bytes())
            self._cert = x509.load_pem_x509_certificate(self.pair.cert.read_bytes())
            return
        self._cert, self._key = pki.new_ca(name)
        _write(self.pair.key, _private_pem(self._key), private=True)
        _write(self.pair.cert, pki.cert_pem(self._cert))

    def issue(self, stem: str, common_name: str, *, groups: tuple[str, ...] = (), hosts: tuple[str, ...] = (),
              server: bool = False, client: bool = False) -> KeyPair:
        """Sign `<stem>.crt`/`<stem>.key` for `common_name` (a user: CN, groups: O) or, with
        `hosts`, a server reachable by those names and IP addresses."""
        cert, key = pki.issue(self._cert, self._key, common_name, groups=groups, hosts=hosts, server=server,
                              client=client)
        pair = KeyPair(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        _write(pair.key, _private_pem(key), private=True)
        _write(pair.cert, pki.cert_pem(cert))
        return pair


def service_account_keys(directory: Path) -> KeyPair:
    """The RSA key pair that signs ServiceAccount tokens (`sa.key`) and verifies them (`sa.pub`)."""
    pair = KeyPair(directory / "sa.pub", directory / "sa.key")
    if not pair.key.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(pair.key, _private_pem(key), private=True)
        _write(pair.cert, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    return pair
