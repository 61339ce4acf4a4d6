"""The chaincode package of one organisation: "chaincode as a service".

A Fabric v2 package is a ``.tar.gz`` holding ``metadata.json`` (type and label) and
``code.tar.gz``. Here the code is only ``connection.json``, the address of the
organisation's own chaincode service (plain gRPC on loopback); the builder in
``network/builder`` hands it to the peer. The package id is ``LABEL:sha256(package)``,
so each organisation's package (another address) has its own id.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

BUILDER_TYPE = "custody-ccaas"
BUILDER_NAME = "custody-ccaas"
BUILDER_SCRIPTS = ("detect", "build", "release")
DIAL_TIMEOUT = "10s"


def _tar_gz(members: dict[str, bytes]) -> bytes:
    """A reproducible .tar.gz (fixed times and owners) of ``members``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def build(path: Path, label: str, address: str) -> str:
    """Write the package for a chaincode service at ``address``; returns its package id."""
    connection = {"address": address, "dial_timeout": DIAL_TIMEOUT, "tls_required": False}
    code = _tar_gz({"connection.json": json.dumps(connection, indent=2).encode()})
    metadata = {"type": BUILDER_TYPE, "label": label, "path": ""}
    data = _tar_gz({"metadata.json": json.dumps(metadata).encode(), "code.tar.gz": code})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return package_id(label, data)


def package_id(label: str, data: bytes) -> str:
    return f"{label}:{hashlib.sha256(data).hexdigest()}"


def install_builder(dest: Path) -> Path:
    """Copy the builder scripts to ``dest/bin`` (executable); returns ``dest``, the path
    the peer's ``chaincode.externalBuilders`` entry names."""
    source = Path(__file__).parent / "builder"
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    for script in BUILDER_SCRIPTS:
        target = dest / "bin" / script
        shutil.copyfile(source / script, target)
        target.chmod(0o755)
    return dest
