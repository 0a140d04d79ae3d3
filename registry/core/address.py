"""The shape of an Ethereum account address, checked wherever one comes in as text.

Configuration and API queries both take addresses from people; one pattern keeps them agreeing
on what is an address (``0x`` and 40 hex digits, either case: checksums are web3's job).
"""

from __future__ import annotations

import re

__all__ = ["ADDRESS"]

# Use with fullmatch(): "0x" followed by exactly 40 hex digits, upper or lower case.
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
