"""MSP material for the network, made with the ``cryptography`` package (ECDSA P-256).

Per organisation: a CA and a TLS CA, and identities (peer or orderers, an admin, a
client) each with an MSP directory and a TLS key pair::

    ROOT/<org>/ca/{ca.pem,key.pem}          the CA (its key kept to enrol more identities)
    ROOT/<org>/tlsca/{tlsca.pem,key.pem}    the TLS CA
    ROOT/<org>/msp/                         the organisation's MSP, for the channel config
    ROOT/<org>/<identity>/msp/              cacerts/ tlscacerts/ signcerts/ keystore/
                                            config.yaml (NodeOUs)
    ROOT/<org>/<identity>/tls/{ca.pem,cert.pem,key.pem}

EVERY certificate signature is low-S (S <= n/2): Fabric's MSP re-encodes a high-S
signature before checking it, which breaks the chain under recent Go ("certificate signed
by unknown authority"). :func:`first_bad_certificate` re-reads a tree and names the first
file that breaks a rule.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

#: The order of the P-256 group; a signature is low-S when S <= N // 2.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
HALF_N = P256_N // 2
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
VALIDITY = dt.timedelta(days=3650)
#: Node OUs: the roles that policies such as 'DEMSP.peer' name.
OUS = ("client", "peer", "admin", "orderer")

NODE_OUS_YAML = """\
NodeOUs:
  Enable: true
""" + "".join(f"""\
  {ou.capitalize()}OUIdentifier:
    Certificate: cacerts/ca.pem
    OrganizationalUnitIdentifier: {ou}
""" for ou in OUS)


@dataclass(frozen=True)
class Identity:
    """Paths of one identity: its MSP directory, signing cert and key, TLS cert and key."""

    name: str
    msp_dir: Path
    tls_dir: Path

    @property
    def cert(self) -> Path:
        return self.msp_dir / "signcerts" / "cert.pem"

    @property
    def key(self) -> Path:
        return self.msp_dir / "keystore" / "key.pem"

    @property
    def tls_cert(self) -> Path:
        return self.tls_dir / "cert.pem"

    @property
    def tls_key(self) -> Path:
        return self.tls_dir / "key.pem"


@dataclass(frozen=True)
class Org:
    """One organisation's material. ``identities`` maps a name (``peer``, ``admin``,
    ``client``, ``orderer0``...) to its :class:`Identity`."""

    name: str
    msp_id: str
    root: Path
    identities: dict[str, Identity] = field(default_factory=dict)

    @property
    def msp_dir(self) -> Path:
        return self.root / "msp"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca" / "ca.pem"

    @property
    def tls_ca(self) -> Path:
        return self.root / "tlsca" / "tlsca.pem"


@dataclass(frozen=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def generate_org(root: Path, name: str, msp_id: str, members: dict[str, str],
                 country: str | None = None) -> Org:
    """Create an organisation's CAs, MSP and identities under ``root``.

    ``members`` maps an identity name to its node OU (``{"peer": "peer", "admin":
    "admin", "client": "client"}``); ``country`` goes into every subject's C."""
    domain = f"{name.lower()}.custody"
    ca = _new_ca(root / "ca" / "ca.pem", f"ca.{domain}", name, country)
    tlsca = _new_ca(root / "tlsca" / "tlsca.pem", f"tlsca.{domain}", name, country)
    _write_msp(root / "msp", ca.cert, tlsca.cert)
    identities = {}
    for member, ou in members.items():
        cn = f"{member}.{domain}"
        ident = Identity(member, root / member / "msp", root / member / "tls")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(ca, key.public_key(), _name(cn, name, country, ou), tls=False)
        _write_msp(ident.msp_dir, ca.cert, tlsca.cert, cert, key)
        tls_key = ec.generate_private_key(ec.SECP256R1())
        tls_cert = _issue(tlsca, tls_key.public_key(), _name(cn, name, country, None), tls=True)
        _write_cert(ident.tls_dir / "ca.pem", tlsca.cert)
        _write_cert(ident.tls_cert, tls_cert)
        _write_key(ident.tls_key, tls_key)
        identities[member] = ident
    return Org(name, msp_id, root, identities)


def _name(cn: str, org: str, country: str | None, ou: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, country)] if country else []
    attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _new_ca(path: Path, cn: str, org: str, country: str | None) -> _Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(cn, org, country, None)
    builder = _base(subject, subject, key.public_key()).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True,
    ).add_extension(x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False), critical=True)
    cert = sign_low_s(builder, key)
    _write_cert(path, cert)
    _write_key(path.parent / "key.pem", key)
    return _Issuer(cert, key)


def _issue(issuer: _Issuer, public: ec.EllipticCurvePublicKey, subject: x509.Name,
           tls: bool) -> x509.Certificate:
    cn = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    builder = _base(subject, issuer.cert.subject, public).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True,
    ).add_extension(x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=tls,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False), critical=True,
    ).add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
        issuer.key.public_key()), critical=False,
    ).add_extension(x509.SubjectAlternativeName([
        x509.DNSName(str(cn)), x509.DNSName("localhost"), x509.IPAddress(LOOPBACK)]),
        critical=False)
    if tls:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
    return sign_low_s(builder, issuer.key)


def _base(subject: x509.Name, issuer: x509.Name,
          public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))


def sign_low_s(builder: x509.CertificateBuilder,
               key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """Sign with ECDSA P-256/SHA-256, again and again until S <= n/2 (each signature
    uses a fresh nonce, so about half of them are low-S)."""
    for _ in range(128):
        cert = builder.sign(key, hashes.SHA256())
        if signature_s(cert) <= HALF_N:
            return cert
    raise RuntimeError("no low-S signature in 128 tries")  # pragma: no cover - p = 2**-128


def signature_s(cert: x509.Certificate) -> int:
    return int(decode_dss_signature(cert.signature)[1])


def _write_msp(msp: Path, ca: x509.Certificate, tlsca: x509.Certificate,
               cert: x509.Certificate | None = None,
               key: ec.EllipticCurvePrivateKey | None = None) -> None:
    _write_cert(msp / "cacerts" / "ca.pem", ca)
    _write_cert(msp / "tlscacerts" / "tlsca.pem", tlsca)
    (msp / "config.yaml").write_text(NODE_OUS_YAML)
    if cert is not None and key is not None:
        _write_cert(msp / "signcerts" / "cert.pem", cert)
        _write_key(msp / "keystore" / "key.pem", key)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


# ---- the checker ---------------------------------------------------------------------


@dataclass(frozen=True)
class BadCertificate:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def first_bad_certificate(root: Path) -> BadCertificate | None:
    """Re-read every certificate under ``root`` (files ``*.pem`` holding a certificate,
    in sorted path order) and return the first one that is wrong, or None.

    Wrong means: not ECDSA P-256 with SHA-256; a high-S signature (S > n/2); a signature
    that does not verify with an issuer found in the tree; a non-CA certificate without
    the SAN 127.0.0.1; or expired."""
    files = [p for p in sorted(root.rglob("*.pem")) if b"CERTIFICATE" in p.read_bytes()]
    certs: list[tuple[Path, x509.Certificate]] = []
    for path in files:
        try:
            certs.extend((path, c) for c in x509.load_pem_x509_certificates(path.read_bytes()))
        except ValueError:
            return BadCertificate(path, "not a readable PEM certificate")
    issuers = {c.subject.public_bytes(): c for _p, c in certs if _is_ca(c)}
    for path, cert in certs:
        reason = certificate_fault(cert, issuers.get(cert.issuer.public_bytes()))
        if reason:
            return BadCertificate(path, reason)
    return None


def certificate_fault(cert: x509.Certificate, issuer: x509.Certificate | None) -> str | None:
    """Why ``cert`` is wrong for this network, or None."""
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        return "the signature is not ECDSA with SHA-256"
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        return "the key is not ECDSA P-256"
    if signature_s(cert) > HALF_N:
        return "the certificate signature is high-S (S > n/2)"
    if issuer is None:
        return "its issuer is not in the tree"
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return "the signature does not verify with its issuer's key"
    if not _is_ca(cert) and LOOPBACK not in _ips(cert):
        return "no subject alternative name 127.0.0.1"
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
        return "expired"
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _ips(cert: x509.Certificate) -> list[object]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.IPAddress))
