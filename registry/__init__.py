"""A blockchain-anchored registry for medical AI models.

Verifying and registering need no deep-learning stack: ``registry.core`` and ``registry.chain``
never import torch or FastAPI (``tests/test_import_rules.py``), only the inference gate loads
torch, lazily, and the base install has neither (the ``serve`` and ``train`` extras add them).
"""

__version__ = "0.1.0"
