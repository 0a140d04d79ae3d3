"""Making a proof bundle from a node: one header and the EIP-1186 proofs of one record's slots.

The node is asked for the block (``eth_getBlockByNumber``) and for the proofs (``eth_getProof``) of
the registry's account and of the record's three slots at that block; the header is rebuilt as
RLP from the block's fields, in the order of the hardfork that made them (London's base fee,
Shanghai's withdrawals root, Cancun's blob gas and beacon root, Prague's requests hash), and must
hash to the block's hash, so a node's answer that does not add up is an error here, not a bundle
that fails later at a clinic. A bundle is checked with ``registry.chain.bundles`` before it is
handed out. A node without ``eth_getProof`` (eth-tester, some hosted gateways) raises
``ProofsUnsupported``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import rlp
from eth_hash.auto import keccak

from registry.chain.abi import to_bytes
from registry.chain.bundles import CheckedBundle, check_bundle, record_slots
from registry.chain.client import RegistryClient
from registry.core.bundles import EventClaim, ProofBundle, StorageProof
from registry.core.digest import Digest
from registry.errors import ChainError, InvalidInput, ProofsUnsupported

# The header's fields in RLP order: Frontier's fifteen, then each fork's additions, which are
# present from that fork on and in this order (a later one never without the earlier ones).
HEADER_FIELDS = (
    "parentHash",
    "sha3Uncles",
    "miner",
    "stateRoot",
    "transactionsRoot",
    "receiptsRoot",
    "logsBloom",
    "difficulty",
    "number",
    "gasLimit",
    "gasUsed",
    "timestamp",
    "extraData",
    "mixHash",
    "nonce",
)
FORK_FIELDS = (
    "baseFeePerGas",  # London
    "withdrawalsRoot",  # Shanghai
    "blobGasUsed",  # Cancun
    "excessBlobGas",  # Cancun
    "parentBeaconBlockRoot",  # Cancun
    "requestsHash",  # Prague
)
QUANTITIES = frozenset(
    {"difficulty", "number", "gasLimit", "gasUsed", "timestamp", "baseFeePerGas"}
    | {"blobGasUsed", "excessBlobGas"}
)
# How nodes say "no such method" when they do not use JSON-RPC's -32601 for it.
_UNSUPPORTED = re.compile(
    r"method not found|not implemented|not supported|unsupported|unknown (rpc|method)"
    r"|does not exist",
    re.I,
)


def header_rlp(block: Mapping[str, Any]) -> bytes:
    """The RLP of a block header from ``eth_getBlockByNumber``'s fields (hex strings)."""
    fields: list[Any] = []
    for name in HEADER_FIELDS:
        fields.append(_field(name, block[name]))
    for name in FORK_FIELDS:
        if block.get(name) is None:
            break
        fields.append(_field(name, block[name]))
    return rlp.encode(fields)


def _field(name: str, value: Any) -> Any:
    if name in QUANTITIES:
        return int(value, 16) if isinstance(value, str) else int(value)
    return to_bytes(value)


def _request(client: RegistryClient, method: str, params: Sequence[Any]) -> Any:
    """One raw JSON-RPC request, its ``result``; the node's refusal as the product's error."""
    response = client.rpc.run(lambda: client.w3.provider.make_request(method, params))  # type: ignore[arg-type]
    error = response.get("error") if isinstance(response, Mapping) else None
    if error is not None:
        message = str(error.get("message", error) if isinstance(error, Mapping) else error)
        code = error.get("code") if isinstance(error, Mapping) else None
        if method == "eth_getProof" and (code == -32601 or _UNSUPPORTED.search(message)):
            raise ProofsUnsupported(client.endpoint, message[:200])
        raise ChainError(
            f"the node at {client.endpoint} refused {method}: {message[:200]}",
            method=method,
        )
    return response.get("result") if isinstance(response, Mapping) else None


def latest_confirmed(client: RegistryClient) -> int:
    """The newest block whose registrations count under the client's confirmations."""
    return max(0, client.head() - client.confirmations + 1)


def make_bundle(client: RegistryClient, digest: Digest, block: int | None = None) -> CheckedBundle:
    """A bundle for ``digest`` at ``block`` (default: the latest confirmed one), checked.

    The proofs are asked for first, so a node without them says so before anything else."""
    identity = client.check_identity()
    head = client.head()
    number = latest_confirmed(client) if block is None else block
    if not 0 <= number <= head:
        raise InvalidInput(
            f"block {number} is not on chain {identity.chain_id} (its head is {head}); give a "
            "block from 0 to the head",
            block=number,
        )
    slots = record_slots(digest)
    proof = _request(
        client, "eth_getProof", [client.address, ["0x" + s.hex() for s in slots], hex(number)]
    )
    if not isinstance(proof, Mapping) or len(proof.get("storageProof") or ()) != len(slots):
        raise ChainError(f"the node at {client.endpoint} answered eth_getProof without its proofs")
    fetched = _request(client, "eth_getBlockByNumber", [hex(number), False])
    if not isinstance(fetched, Mapping):
        raise ChainError(f"the node at {client.endpoint} has no block {number}", block=number)
    header = header_rlp(fetched)
    block_hash = to_bytes(fetched["hash"])
    if keccak(header) != block_hash:
        raise ChainError(
            f"block {number}'s header, rebuilt from the node's fields, does not hash to its hash "
            f"0x{block_hash.hex()}: the node's hardfork adds header fields this version does not "
            "know; upgrade the registry",
            block=number,
        )
    storage = tuple(
        StorageProof(
            slot=slot,
            value=int(item["value"], 16) if isinstance(item["value"], str) else int(item["value"]),
            nodes=tuple(to_bytes(n) for n in item["proof"]),
        )
        for slot, item in zip(slots, proof["storageProof"], strict=True)
    )
    record = client.get(digest)
    event = (
        EventClaim(
            record.test_set_digest, record.card_digest, record.parent, record.registration_tx
        )
        if record is not None
        else None
    )
    bundle = ProofBundle(
        digest=digest,
        chain_id=identity.chain_id,
        contract=client.address,
        code_hash=to_bytes(proof["codeHash"]),
        block_number=number,
        block_hash=block_hash,
        header=header,
        account_proof=tuple(to_bytes(n) for n in proof["accountProof"]),
        storage=storage,
        event=event,
    )
    return check_bundle(
        bundle,
        trusted_hash=block_hash,
        contract=client.address,
        runtime_code=client.artifact.deployed_bytecode,
        chain_id=identity.chain_id,
    )
