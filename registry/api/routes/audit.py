"""``GET /audit/proof/{index}`` and ``GET /audit/consistency``: the proofs behind a receipt.

A prediction's receipt names its audit entry's index and leaf hash; an auditor checks it against
the root this service anchored on chain, without the log, with an inclusion proof fetched here
(``registry receipt verify``). The answer carries the entry's exact line, so the verifier can
read the model digest and verdict block inside the very bytes that were hashed. A consistency
proof between two sizes shows that the log anchored at the smaller one is a prefix of the
larger: it only grew.

What an entry discloses: identifiers only (the writer refuses content, ``registry.core.audit``),
among them who asked (``who``: an API key's id, or the client's address for anonymous callers).
These routes follow the service's read rules: with ``REGISTRY_REQUIRE_KEY_FOR_READS`` only key
holders read entries, which is what a service whose callers must not see each other's addresses
sets. Proofs come from the tree as caught up at the last anchor (``audit.leaves``): an entry
newer than that is answered 404 until the next anchor covers it. Building a proof reads
``O(log n)`` perfect subtrees stored beside the leaves (``audit_nodes``), as checking it costs
``O(log n)`` hashes: an open route, so no request may cost a pass over the log.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from registry.api.anchoring import AuditAnchoring, get_anchoring
from registry.api.deps import KEY_OPTIONAL, Reader
from registry.api.errors import responses
from registry.errors import InvalidInput, NotFound

router = APIRouter(prefix="/audit", tags=["audit"])

AnchoringDep = Annotated[AuditAnchoring, Depends(get_anchoring)]


class AnchorOut(BaseModel):
    service: str
    size: int
    root: str
    anchored_at: int
    anchored_block: int
    tx_hash: str | None


class AuditProofOut(BaseModel):
    log_index: int
    size: int = Field(description="the tree size the proof is for")
    entry: str = Field(description="the entry's line, exactly the bytes its leaf hashes")
    proof: list[str] = Field(description="the audit path, hex, the sibling nearest the leaf first")
    root: str = Field(description="the root of the tree of `size` entries, as this service has it")
    service: str | None = Field(description="the address that anchors this log")
    anchor: AnchorOut | None = Field(description="the latest anchor this service made")


class ConsistencyOut(BaseModel):
    first: int
    second: int
    proof: list[str]
    first_root: str
    second_root: str
    service: str | None


def _anchored(anchoring: AuditAnchoring) -> dict[str, Any] | None:
    state = anchoring.tree.state()
    return state.anchor if state is not None else None


def _count(value: int, what: str) -> int:
    if value < 0:
        raise InvalidInput(f"{what} {value} is negative; give a number of entries", what=what)
    return value


@router.get(
    "/proof/{index}",
    summary="An audit entry, its inclusion proof and the anchored root it leads to",
    response_model=AuditProofOut,
    responses=responses(400, 401, 404),
    openapi_extra=KEY_OPTIONAL,
)
def proof(
    index: int,
    anchoring: AnchoringDep,
    caller: Reader,
    size: Annotated[
        int | None,
        Query(description="tree size to prove against (default: the latest anchored size)"),
    ] = None,
) -> Any:
    """The entry's line (the leaf's exact bytes), its leaf hash, the audit path (hex, nearest
    sibling first, RFC 6962) in the tree of `size` entries, that tree's root, and the latest
    anchor this service made. 404 while no anchor covers the entry yet."""
    _count(index, "index")
    anchor = _anchored(anchoring)
    if size is None:
        if anchor is None or index >= int(anchor["size"]):
            covered = int(anchor["size"]) if anchor else 0
            raise NotFound(
                f"audit entry {index} is not covered by an anchor yet (the latest anchor holds "
                f"{covered} entries); the service anchors its log every "
                f"{anchoring.interval_s:g} s: ask again after the next anchor",
                index=index,
                anchored_size=covered,
            )
        size = int(anchor["size"])
    if _count(size, "size") <= index:
        raise InvalidInput(
            f"entry {index} is not in a tree of {size} entries; give a size above the index",
            index=index,
            size=size,
        )
    line = anchoring.tree.entry(index)
    path, root = anchoring.tree.inclusion(index, size)
    return {
        "log_index": index,
        "size": size,
        "entry": line.decode("ascii"),
        "proof": [node.hex() for node in path],
        "root": root.hex(),
        "service": anchoring.address,
        "anchor": anchor,
    }


@router.get(
    "/consistency",
    summary="A consistency proof between two sizes of the audit log's tree",
    response_model=ConsistencyOut,
    responses=responses(400, 401, 404),
    openapi_extra=KEY_OPTIONAL,
)
def consistency(
    anchoring: AnchoringDep,
    caller: Reader,
    first: Annotated[int, Query(description="the earlier, smaller size")],
    second: Annotated[int, Query(description="the later size")],
) -> Any:
    """The proof (hex, RFC 6962 `PROOF(first, D[second])`) that the tree of `first` entries is a
    prefix of the tree of `second` entries, and both roots."""
    if _count(first, "first") > _count(second, "second"):
        raise InvalidInput(
            f"first {first} is larger than second {second}; a consistency proof goes from an "
            "earlier, smaller size to a later one",
            first=first,
            second=second,
        )
    path, first_root, second_root = anchoring.tree.consistency(first, second)
    return {
        "first": first,
        "second": second,
        "proof": [node.hex() for node in path],
        "first_root": first_root.hex(),
        "second_root": second_root.hex(),
        "service": anchoring.address,
    }
