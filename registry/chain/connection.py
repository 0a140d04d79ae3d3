"""Build a RegistryClient from Settings: which chain, which contract, which key.

``memory`` starts an eth-tester chain in this process and deploys a fresh registry on it (its
first funded account is admin, registrar and revoker). Unset ``rpc_url`` means the managed local
anvil (``registry chain start``). Anything else is a JSON-RPC URL, signed for with a local key.
"""

from __future__ import annotations

from typing import Any

from web3 import EthereumTesterProvider, HTTPProvider, Web3

from registry.chain.client import RegistryClient
from registry.chain.deploy import deploy_and_grant_self
from registry.chain.deployments import load_deployment
from registry.chain.keys import account_from_hex, load_account
from registry.config import Settings
from registry.core.endpoint import MEMORY, redact_endpoint
from registry.core.nodeinfo import running_node_info
from registry.errors import ChainUnavailable, ConfigurationError

LOCAL_NODE = "the managed local node"


def resolve_endpoint(settings: Settings) -> str:
    """The URL to send requests to: a secret (see ``registry.core.endpoint``), shown only redacted."""
    if settings.rpc_url is not None:
        return settings.rpc_url
    # The managed node's info file, not the devnet package: the library never imports the
    # tooling that starts nodes.
    info = running_node_info(settings.data_dir)
    if info is None:
        # Named without the data directory: this message also reaches /health's answer.
        raise ChainUnavailable(
            LOCAL_NODE,
            "not running in REGISTRY_DATA_DIR; start it with `registry chain start` "
            "or set REGISTRY_RPC_URL",
        )
    return str(info["url"])


def make_web3(endpoint: str, timeout_s: float) -> Web3:
    # No middleware: each default one costs Python time or extra requests on every call, and
    # the client signs locally, validates chain id itself and decodes results with eth-abi.
    provider: Any = HTTPProvider(endpoint, request_kwargs={"timeout": timeout_s})
    return Web3(provider, middleware=[])


def memory_client(settings: Settings | None = None) -> RegistryClient:
    """A fresh in-process chain with a deployed registry; its signer holds every role."""
    try:
        from eth_tester import EthereumTester, PyEVMBackend
    except ImportError as exc:
        # The base install verifies against real nodes; the in-process chain is an extra.
        raise ConfigurationError(
            f"REGISTRY_RPC_URL={MEMORY} needs eth-tester with py-evm, which this install lacks "
            f"({exc.name or exc} is missing); install `medical-model-registry[memory]` "
            "(or [dev]), or point REGISTRY_RPC_URL at a JSON-RPC node",
            rpc_url=MEMORY,
            missing=exc.name,
        ) from exc

    tester = EthereumTester(PyEVMBackend())
    w3 = Web3(EthereumTesterProvider(tester), middleware=[])
    account = account_from_hex(tester.backend.account_keys[0].to_hex(), "eth-tester account 0")
    client, _ = deploy_and_grant_self(w3, account, endpoint=MEMORY)
    client.eth_tester = tester
    return client


def connect(settings: Settings, *, need_contract: bool = True) -> RegistryClient:
    """A client for the configured chain and contract, identity checked (fail closed)."""
    if settings.rpc_url == MEMORY:
        return memory_client(settings)
    endpoint = resolve_endpoint(settings)
    w3 = make_web3(endpoint, settings.request_timeout_s)
    account = load_account(settings)
    address = settings.contract_address
    deployment_block = 0
    expected = settings.chain_id
    if address is None:
        try:
            chain_id = int(w3.eth.chain_id)
        except Exception as exc:
            raise ChainUnavailable(redact_endpoint(endpoint), exc.__class__.__name__) from exc
        deployment = load_deployment(settings.data_dir, expected or chain_id)
        if deployment is None:
            raise ConfigurationError(
                f"no registry deployment is recorded for chain id {expected or chain_id} in "
                f"{settings.data_dir}; run `registry deploy` or set REGISTRY_CONTRACT_ADDRESS",
                chain_id=expected or chain_id,
            )
        address, deployment_block = deployment.address, deployment.block_number
        expected = deployment.chain_id
    client = RegistryClient(
        w3,
        address=address,
        deployment_block=deployment_block,
        expected_chain_id=expected,
        account=account,
        confirmations=settings.confirmations,
        tx_timeout_s=settings.tx_timeout_s,
        identity_ttl_s=settings.identity_ttl_s,
        endpoint=endpoint,
    )
    if need_contract:
        client.check_identity(force=True)
    return client
