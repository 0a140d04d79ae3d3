"""``registry receipt verify``: check a prediction's receipt against the chain, without the log.

An auditor (a compliance officer on another machine, with no access to the service's log) holds a
``/predict`` answer's receipt and a proof fetched from ``GET /audit/proof/{index}``; this command
checks that the answer's audit entry is in the log the pinned service anchored on chain
(``registry.core.receipts`` says what is checked). It reads the chain with two JSON-RPC calls
(``registry.chain.audit_anchor.anchored_root``) and hashes ``O(log n)`` nodes. Exit 0 verified,
1 not verified (the reason printed), 2 unusable input (a file that is not a receipt or a proof).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from registry.cli.output import EXIT_FAILED, EXIT_OK, AddCommand, Output, settings_for
from registry.core.address import parse_address
from registry.core.digest import Digest, read_regular_file
from registry.core.receipts import (
    InclusionProof,
    Receipt,
    ReceiptCheck,
    check_entry,
    check_inclusion,
    load_json,
)
from registry.errors import ConfigurationError

if TYPE_CHECKING:
    from registry.chain.abi import ContractAbi
    from registry.chain.rpc import Rpc
    from registry.config import Settings


def verify_receipt(
    receipt: Receipt,
    proof: InclusionProof,
    *,
    service: str,
    model: Digest | None,
    rpc: Rpc,
    abi: ContractAbi,
    contract: str | None,
    expected_chain_id: int | None,
    data_dir: Path | None = None,
) -> ReceiptCheck:
    """The whole check: the entry first (no chain call for a receipt refused outright), then the
    anchored root, with exactly two calls. ``contract`` None: the deployment recorded in
    ``data_dir`` for the chain the node serves."""
    from registry.chain.audit_anchor import anchored_root
    from registry.chain.deployments import load_deployment

    refused = check_entry(receipt, proof, service=service, model=model)
    if refused is not None:
        return refused
    chain_id = expected_chain_id or receipt.chain_id
    if contract is None:
        deployment = load_deployment(data_dir, chain_id) if data_dir is not None else None
        if deployment is None:
            raise ConfigurationError(
                f"no registry deployment is recorded for chain id {chain_id}; pin the contract "
                "with --contract (a verifier never takes it from the receipt)",
                chain_id=chain_id,
            )
        contract = deployment.address
    contract = parse_address(contract, "--contract")
    if receipt.contract != contract or receipt.chain_id != chain_id:
        return ReceiptCheck(
            False,
            "other_registry",
            f"the receipt is from contract {receipt.contract} on chain id {receipt.chain_id}; "
            f"you pinned {contract} on chain id {chain_id}",
        )
    root, _ = anchored_root(rpc, abi, contract, service, proof.size, expected_chain_id=chain_id)
    return check_inclusion(receipt, proof, root, service=service)


def _rpc_for(settings: Settings) -> tuple[Rpc, ContractAbi]:
    """A bare JSON-RPC session (no identity round trips: the two calls are all it makes)."""
    from registry.chain.abi import ContractAbi
    from registry.chain.artifacts import load_artifact
    from registry.chain.connection import make_web3, resolve_endpoint
    from registry.chain.reverts import RevertDecoder
    from registry.chain.rpc import Rpc
    from registry.core.endpoint import MEMORY, redact_endpoint

    if settings.rpc_url == MEMORY:
        raise ConfigurationError(
            "a receipt is checked against the chain its service anchors on; an in-process "
            "'memory' chain exists only inside the service. Give --rpc-url",
        )
    endpoint = resolve_endpoint(settings)
    artifact = load_artifact()
    w3 = make_web3(endpoint, settings.request_timeout_s)
    rpc = Rpc(w3, endpoint=redact_endpoint(endpoint), decoder=RevertDecoder(artifact.abi))
    return rpc, ContractAbi(artifact.abi)


def cmd_receipt(args: argparse.Namespace, out: Output) -> int:
    receipt = Receipt.parse(load_json(read_regular_file(args.receipt), "receipt"))
    proof = InclusionProof.parse(load_json(read_regular_file(args.proof), "proof"))
    service = parse_address(args.service, "--service")
    model = Digest.parse(args.model) if args.model else None
    settings = settings_for(args)
    rpc, abi = _rpc_for(settings)
    result = verify_receipt(
        receipt,
        proof,
        service=service,
        model=model,
        rpc=rpc,
        abi=abi,
        contract=settings.contract_address,
        expected_chain_id=settings.chain_id,
        data_dir=settings.data_dir,
    )
    data = {**result.to_dict(), "log_index": receipt.log_index, "size": proof.size}
    out.result(data, ("verified: " if result.verified else "NOT verified: ") + result.message)
    return EXIT_OK if result.verified else EXIT_FAILED


def add_commands(add: AddCommand) -> None:
    """Add receipt."""
    p = add(
        "receipt",
        cmd_receipt,
        "check a prediction's receipt and its inclusion proof against the audit root the "
        "service anchored on chain (exit 0 verified, 1 not verified, 2 unusable input)",
    )
    p.add_argument("action", choices=["verify"], help="verify: check the receipt")
    p.add_argument(
        "receipt", type=Path, help="the /predict answer (or its receipt object), as JSON"
    )
    p.add_argument(
        "--proof",
        type=Path,
        required=True,
        help="the answer of GET /audit/proof/{log_index} from the service, as JSON",
    )
    p.add_argument(
        "--service",
        required=True,
        help="the address that anchors the service's log (pinned: never taken from the receipt)",
    )
    p.add_argument(
        "--model", help="the model the answer must come from (default: whichever it names)"
    )
