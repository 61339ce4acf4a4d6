"""Witnesses: partner agencies cosign the log's checkpoints (C2SP tlog-cosignature).

A witness holds no account here: it checks consistency on its own machine from the
public log endpoints, then posts its cosignature. These endpoints are public too. A
posted line is stored only if it verifies, with the witness key it names, over the text
of the server's own checkpoint of that size (:func:`ledger.core.witness.check_cosignature`);
at most :data:`ledger.core.witness.MAX_WITNESSES` witnesses are kept per checkpoint.
Verifiers fetch a checkpoint with its cosignatures and demand a quorum of the witness
keys THEY trust; the server's list of who cosigned is informative only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query, Response

from api import deps
from api.deps import RuntimeDep, StoreDep
from api.models import (
    CosignatureIn,
    CosignatureItem,
    CosignatureOut,
    WitnessedCheckpoint,
)
from api.routes import PUBLIC, problems
from ledger.core.errors import Forbidden, NotFound
from ledger.core.witness import MAX_WITNESSES
from ledger.store.base import LedgerStore

router = deps.router(tags=["witness"])
#: A decimal tree size as the path segment itself (``int`` would also take "1.0", "+1"
#: and "1_0", which a schema-valid client never sends).
SizePath = Annotated[str, Path(pattern=r"^[1-9][0-9]{0,17}$",
                               description="tree size (decimal, no sign or leading zeros)")]

_ALREADY: dict[int | str, dict[str, Any]] = {
    200: {"model": CosignatureOut,
          "description": "this witness had already cosigned this size: the first stored "
          "line is returned"}}


def _witnessed(store: LedgerStore, size: int, note: str) -> WitnessedCheckpoint:
    items = [CosignatureItem(witness_key=key, cosignature=line)
             for key, line in store.cosignatures(size).items()]
    return WitnessedCheckpoint(size=size, note=note, cosignatures=items)


@router.post("/v1/log/cosignatures", operation_id="addCosignature", status_code=201,
             response_model=CosignatureOut,
             responses={**_ALREADY, **problems(403, 404, 413, 422, 502, 503)})
def add_cosignature(body: CosignatureIn, runtime: RuntimeDep,
                    response: Response) -> CosignatureOut:
    """Store a witness's cosignature over the checkpoint of ``size`` (201). The same
    witness and size again answers 200 with the line stored first. 404: no checkpoint of
    that size; 422: malformed key or line, a signature that does not verify over that
    checkpoint, or the checkpoint already has the most witnesses kept; 403: this server
    accepts cosignatures only from its configured witnesses, and this is not one."""
    if runtime.witness_keys and body.witness_key not in runtime.witness_keys:
        raise Forbidden("this server accepts cosignatures only from its configured "
                        "witnesses, and this key is not one of them")
    store = runtime.store
    before = store.cosignatures(body.size).get(body.witness_key)
    stored = store.add_cosignature(body.size, body.witness_key, body.cosignature)
    if before is not None:
        response.status_code = 200
    return CosignatureOut(size=body.size, witness_key=body.witness_key, cosignature=stored,
                          duplicate=before is not None)


@router.get("/v1/log/checkpoints/witnessed", operation_id="getWitnessedCheckpoint",
            response_model=WitnessedCheckpoint, responses=PUBLIC)
def get_witnessed_checkpoint(
    store: StoreDep,
    min_witnesses: Annotated[int, Query(ge=1, le=MAX_WITNESSES, description="least number "
                                        "of cosignatures")] = 1,
) -> WitnessedCheckpoint:
    """The newest checkpoint with at least ``min_witnesses`` cosignatures, as the full
    signed note with every stored cosignature line appended (404 if there is none)."""
    found = store.witnessed_checkpoint(min_witnesses)
    if found is None:
        raise NotFound(f"no checkpoint has {min_witnesses} witness cosignature(s) yet")
    size, note = found
    return _witnessed(store, size, note)


@router.get("/v1/log/checkpoints/{size}/cosigned", operation_id="getCosignedCheckpoint",
            response_model=WitnessedCheckpoint, responses=PUBLIC)
def get_cosigned_checkpoint(store: StoreDep, size: SizePath) -> WitnessedCheckpoint:
    """The checkpoint of ``size`` with every stored cosignature line appended (possibly
    none)."""
    return _witnessed(store, int(size), store.cosigned_note(int(size)))
