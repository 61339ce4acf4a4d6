"""TLS for the API server, and mutual TLS with per-agency client certificates.

* :func:`server_context`: TLS 1.2 or newer only, forward-secret AEAD ciphers
  (ECDHE with AES-GCM or ChaCha20-Poly1305; TLS 1.3's suites are all AEAD), no
  compression, no renegotiation. With a client CA, every client must present a
  certificate issued by it: without one the handshake fails, before any HTTP.
* :func:`check_key_file`: a private key readable by group or others is refused.
* :class:`PeerCertH11Protocol` / :class:`PeerCertHttpToolsProtocol`: uvicorn's HTTP
  protocols, which do not put the client certificate in the ASGI scope, extended to
  put it (DER) in each request's ``scope["state"]`` (``request.state``) of that
  connection. The handshake is complete when ``connection_made`` runs.
* :func:`certificate_identity`: the organisation (subject ``O``) a client certificate
  names, which must be the organisation of the actor who logs in over it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.core.errors import InvalidInput

#: TLS 1.2 suites allowed (TLS 1.3 suites are fixed by OpenSSL and are all AEAD).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!SHA1:!SHA256:!SHA384"
#: The key of ``request.state`` holding the client certificate (DER) of the connection.
PEER_CERT = "custody_tls_peer_der"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None


def check_key_file(path: Path) -> None:
    """Refuse a private key file that is not a regular file or that group/others may read."""
    try:
        st = path.stat()
    except OSError as exc:
        raise InvalidInput(f"cannot read the TLS key {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(f"the TLS key {path} is not a regular file")
    if st.st_mode & 0o077:
        raise InvalidInput(f"the TLS key {path} is readable by group or others (mode "
                           f"{stat.S_IMODE(st.st_mode):04o}); chmod 600 it")


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The server's SSL context, or one sentence (:class:`InvalidInput`) saying why not."""
    check_key_file(files.key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(str(files.cert), str(files.key))
    except FileNotFoundError as exc:
        raise InvalidInput(f"TLS certificate or key not found: {exc.filename}") from None
    except (ssl.SSLError, OSError) as exc:
        raise InvalidInput(f"cannot use the TLS certificate {files.cert} with the key "
                           f"{files.key}: {getattr(exc, 'reason', None) or exc}") from None
    if files.client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(files.client_ca))
        except (ssl.SSLError, OSError) as exc:
            raise InvalidInput(f"cannot read the client CA {files.client_ca}: "
                               f"{getattr(exc, 'reason', None) or exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class CertIdentity:
    org: str
    subject: str
    sha256: str


def certificate_identity(der: bytes) -> CertIdentity:
    """The organisation (subject O; the organisation's id on the ledger), the subject
    (RFC 4514) and the SHA-256 fingerprint of a client certificate."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    org = orgs[0].value if len(orgs) == 1 else ""
    return CertIdentity(org if isinstance(org, str) else "", cert.subject.rfc4514_string(),
                        hashlib.sha256(der).hexdigest())


def _peer_state(transport: Any, app_state: dict[str, Any]) -> dict[str, Any]:
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    # A per-connection copy: uvicorn copies app_state into every request's scope["state"].
    return {**app_state, PEER_CERT: der}


def _protocols() -> tuple[type, type | None]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class PeerCertH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override, unused-ignore]
            super().connection_made(transport)
            self.app_state = _peer_state(transport, self.app_state)

    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools not installed
        return PeerCertH11Protocol, None

    class PeerCertHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override, unused-ignore]
            super().connection_made(transport)
            self.app_state = _peer_state(transport, self.app_state)

    return PeerCertH11Protocol, PeerCertHttpToolsProtocol


def http_protocol() -> type:
    """uvicorn's fastest available HTTP protocol, with the client certificate per request."""
    h11, httptools = _protocols()
    return httptools or h11


def describe(files: TlsFiles | None) -> str:
    if files is None:
        return "TLS off (plain HTTP)"
    mtls = f"client certificates required (CA {files.client_ca})" if files.client_ca \
        else "no client certificates"
    return f"TLS 1.2+ ({files.cert}), {mtls}"
