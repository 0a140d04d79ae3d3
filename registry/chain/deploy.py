"""Deploying a fresh ModelRegistry and handing back a client for it.

The creation transaction goes through the same ``Transactions`` as every other write (fees, the
key's nonce counter, receipts), with the chain id read once since there is no contract yet whose
identity could be checked. The new client shares that nonce counter, so its first write needs no
round trip to learn the nonce. ``deploy_and_grant_self`` is what a fresh local setup wants: the
deployer as admin, registrar and revoker.
"""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address as checksum
from web3 import Web3

from registry.chain.abi import to_hex
from registry.chain.artifacts import ContractArtifact, load_artifact
from registry.chain.client import RegistryClient
from registry.chain.deployments import Deployment
from registry.chain.reverts import RevertDecoder
from registry.chain.rpc import Rpc
from registry.chain.transactions import DEPLOY_GAS, NonceCounter, Transactions
from registry.core.records import Role
from registry.errors import TransactionFailed


def deploy_contract(
    w3: Web3,
    account: LocalAccount,
    *,
    endpoint: str,
    admin: str | None = None,
    artifact: ContractArtifact | None = None,
    confirmations: int = 1,
    tx_timeout_s: float = 120.0,
) -> tuple[RegistryClient, Deployment]:
    """Deploy a fresh ModelRegistry (``admin`` defaults to the deployer) and return its client.

    The deployer holds no role afterwards; ``deploy_and_grant_self`` also grants it both.
    """
    artifact = artifact or load_artifact()
    admin = checksum(admin or account.address)
    rpc = Rpc(w3, endpoint=endpoint, decoder=RevertDecoder(artifact.abi))
    chain_id = rpc.chain_id()
    nonces = NonceCounter()
    transactions = Transactions(
        rpc,
        account,
        chain_id=lambda: chain_id,
        confirmations=confirmations,
        tx_timeout_s=tx_timeout_s,
        nonces=nonces,
    )
    data = to_hex(artifact.bytecode + abi_encode(["address"], [admin]))
    tx_hash = transactions.send({"to": None, "data": data, "gas": DEPLOY_GAS}).tx_hash
    receipt = transactions.wait_for_receipt(tx_hash)
    if int(receipt["status"]) != 1 or not receipt.get("contractAddress"):
        # Replay the creation as a call to report the constructor's own error (e.g. ZeroAddress).
        creation = {"from": account.address, "data": data, "gas": DEPLOY_GAS}
        rpc.eth_call(creation, int(receipt["blockNumber"]) - 1)
        raise TransactionFailed(tx_hash, "deploying the registry failed (status 0)")
    deployment = Deployment(
        chain_id=chain_id,
        address=checksum(receipt["contractAddress"]),
        tx_hash=tx_hash,
        block_number=int(receipt["blockNumber"]),
        deployer=account.address,
        artifact_digest=artifact.digest,
        solc_version=artifact.solc_version,
        source_digest=artifact.source_digest,
    )
    client = RegistryClient(
        w3,
        address=deployment.address,
        deployment_block=deployment.block_number,
        expected_chain_id=chain_id,
        account=account,
        confirmations=confirmations,
        tx_timeout_s=tx_timeout_s,
        endpoint=endpoint,
        artifact=artifact,
        nonces=nonces,
    )
    client.check_identity(force=True)
    return client, deployment


def deploy_and_grant_self(
    w3: Web3,
    account: LocalAccount,
    *,
    endpoint: str,
    artifact: ContractArtifact | None = None,
    confirmations: int = 1,
    tx_timeout_s: float = 120.0,
) -> tuple[RegistryClient, Deployment]:
    """Deploy a fresh ModelRegistry whose deployer is admin, registrar and revoker."""
    client, deployment = deploy_contract(
        w3,
        account,
        endpoint=endpoint,
        artifact=artifact,
        confirmations=confirmations,
        tx_timeout_s=tx_timeout_s,
    )
    client.grant_role(Role.REGISTRAR, account.address)
    client.grant_role(Role.REVOKER, account.address)
    return client, deployment
