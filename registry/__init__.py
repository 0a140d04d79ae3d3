"""A blockchain-anchored registry for medical AI models.

The core (hashing, records, chain client, verification) never imports torch; only the inference
gate does, lazily, so that verifying a checkpoint needs no deep-learning stack.
"""

__version__ = "0.1.0"
