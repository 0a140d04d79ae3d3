"""The event index: a local, rebuildable copy of the chain's registrations for catalogue pages.

Listing every record from the chain costs one call per record; the index reads the contract's
events once, incrementally and reorg-safely, into SQLite (``<data_dir>/index.sqlite3``), and
answers pages from there. It sits above ``registry.chain`` and below the API and the CLI. It is
never asked for a verdict: verification stays a direct chain read (see ``follow``).
"""

from registry.index.database import Filters
from registry.index.follow import ChainIndex, Poller, index_path
from registry.index.pages import DEFAULT_LIMIT, MAX_LIMIT, Page, PageQuery, chain_page

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ChainIndex",
    "Filters",
    "Page",
    "PageQuery",
    "Poller",
    "chain_page",
    "index_path",
]
