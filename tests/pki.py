"""A throwaway PKI for the TLS tests, made with ``cryptography``: one CA, a server
certificate for localhost/127.0.0.1, and client certificates whose subject O names an
agency (``bka``, ``nfi``; ``rogue`` claims ``bka`` but is issued by another CA)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = dt.datetime.now(dt.UTC)


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]]  # name -> (cert, key)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _issue(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
           issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
           san: list[x509.GeneralName] | None = None, client: bool = False) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(hours=1))
         .not_valid_after(NOW + dt.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                          False, False), critical=True)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if not ca:
        usage = x509.oid.ExtendedKeyUsageOID
        b = b.add_extension(x509.ExtendedKeyUsage(
            [usage.CLIENT_AUTH if client else usage.SERVER_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(root: Path) -> Pki:
    root.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Custody test CA", "ops")
    ca = _issue(ca_name, ca_key, ca_name, ca_key, ca=True)
    (root / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _issue(_name("localhost"), srv_key, ca_name, ca_key,
                 san=[x509.DNSName("localhost"),
                      x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    (root / "server.pem").write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    _write_key(root / "server.key", srv_key)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue_name = _name("Rogue CA", "bka")
    clients = {}
    for name, org, (issuer, issuer_key) in (("bka", "bka", (ca_name, ca_key)),
                                            ("nfi", "nfi", (ca_name, ca_key)),
                                            ("rogue", "bka", (rogue_name, rogue_key))):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(_name(f"{name} client", org), key, issuer, issuer_key, client=True)
        (root / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(root / f"{name}.key", key)
        clients[name] = (root / f"{name}.pem", root / f"{name}.key")
    return Pki(root / "ca.pem", root / "server.pem", root / "server.key", clients)
