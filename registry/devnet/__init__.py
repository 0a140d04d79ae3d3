"""The managed local anvil node and service processes for the demo, scripts and tests.

No library module imports this package (a test enforces it); only the CLI's ``chain`` commands,
the endpoint resolution for an unset ``REGISTRY_RPC_URL``, scripts and tests reach it.
"""
