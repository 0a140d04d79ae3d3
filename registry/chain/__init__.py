"""Everything that talks to an EVM chain: the registry client, transactions, ABI coding, reverts,
signing, the contract artifact, recorded deployments and signing keys.

This is the one place web3 errors are translated into the product's exception tree.
"""
