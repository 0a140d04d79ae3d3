"""The registry's domain: digests, records, policy, the audit log and the checkpoint store.

Nothing here talks to a chain or a network, or loads a model: no web3, fastapi or torch import
(a test enforces it), so the rules of the product can be read and tested on their own.
"""
