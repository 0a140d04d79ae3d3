"""The event index on a real anvil node: catch-up, reorganisations, revocations, pages, filters.

The index is right when every page, read one after another, holds exactly the records the
chain's own storage holds (``list_models``: one lookup per record), field for field.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chainkit import TEST_SET, digest, request
from conftest import Backend, anvil_backend

from registry.core.digest import Digest
from registry.core.records import RegisterRequest, RevocationReason, Role
from registry.errors import ChainUnavailable, InvalidInput
from registry.index import ChainIndex, Filters, PageQuery, chain_page
from registry.index.database import IndexDatabase
from registry.index.pages import decode_cursor, encode_cursor

pytestmark = pytest.mark.anvil


def every_record(index: ChainIndex, limit: int = 2, **filters: Any) -> list[dict[str, Any]]:
    """Every record the index holds, read page by page with ``limit`` per page."""
    seen: list[dict[str, Any]] = []
    query = PageQuery(Filters(**filters), limit)
    while True:
        page = index.page(query)
        seen.extend(r.to_dict() for r in page.records)
        if page.next_cursor is None:
            return seen
        query = PageQuery(query.filters, limit, decode_cursor(page.next_cursor))


def chain_truth(backend: Backend) -> list[dict[str, Any]]:
    return [r.to_dict() for r in backend.reader().list_models()]


def make_index(backend: Backend, path: Path, **options: Any) -> ChainIndex:
    reader = backend.reader()
    return ChainIndex(path / "index.sqlite3", lambda: reader, **options)


def reorg(backend: Backend, depth: int, txs: list[tuple[str, int]] | None = None) -> None:
    backend.node.rpc("anvil_reorg", [depth, [[tx, offset] for tx, offset in txs or []]])


def signed_register(backend: Backend, label: str, nonce: int) -> str:
    """A register transaction of ``label`` by the admin, signed at ``nonce``, not sent."""
    client = backend.client
    req = request(label)
    data = client.abi.encode_call(
        "register",
        req.digest.raw,
        req.accuracy_bps,
        req.test_set_digest.raw,
        req.card_digest.raw,
        bytes(32),
    )
    tx = {"to": client.address, "data": "0x" + data.hex(), "gas": 400_000}
    return "0x" + client.transactions.sign(tx, nonce).hex()


@pytest.fixture
def own_chain(make_anvil_node: Callable[..., Any]) -> Backend:
    """A node of this test's own, for reorganisations."""
    return anvil_backend(make_anvil_node())


def test_catch_up_is_incremental_and_reflects_revocations(anvil: Backend, tmp_path: Path) -> None:
    index = make_index(anvil, tmp_path)
    assert index.indexed_to is None
    for label in ("a", "b", "c"):
        anvil.client.register(request(label))
    first = index.catch_up(budget_s=30)
    assert first == anvil.client.head()
    assert every_record(index) == chain_truth(anvil)

    anvil.client.register(request("d"))
    anvil.client.revoke(digest("b"), RevocationReason.SAFETY_ISSUE, digest("d"))
    assert index.catch_up(budget_s=30) == anvil.client.head()
    records = every_record(index)
    assert records == chain_truth(anvil) and len(records) == 4
    revoked = [r for r in records if not r["valid"]]
    assert [r["digest"] for r in revoked] == [str(digest("b"))]
    assert revoked[0]["revocation"]["replacement"] == str(digest("d"))


def test_only_confirmed_blocks_are_indexed(anvil: Backend, tmp_path: Path) -> None:
    index = make_index(anvil, tmp_path, confirmations=3)
    anvil.client.register(request("young"))
    head = anvil.client.head()
    assert index.catch_up(budget_s=30) == head - 2
    assert every_record(index) == []
    anvil.mine(2)
    assert index.catch_up(budget_s=30) == head + 2 - 2
    assert [r["digest"] for r in every_record(index)] == [str(digest("young"))]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_reorg_between_catch_ups_leaves_no_phantom_and_misses_nothing(
    own_chain: Backend, tmp_path: Path, depth: int
) -> None:
    index = make_index(own_chain, tmp_path)
    own_chain.client.register(request("kept"))
    nonce = own_chain.client.w3.eth.get_transaction_count(own_chain.admin)  # the reorg's first
    for label in ("gone 1", "gone 2", "gone 3")[:depth]:
        own_chain.client.register(request(label))
    index.catch_up(budget_s=30)
    assert len(every_record(index)) == depth + 1

    replacement = signed_register(own_chain, "arrived in the reorg", nonce)
    reorg(own_chain, depth, [(replacement, depth - 1)])
    own_chain.client.forget_chain_state()
    index.catch_up(budget_s=30)

    records = every_record(index)
    assert records == chain_truth(own_chain)
    assert [r["digest"] for r in records] == [
        str(digest("kept")),
        str(digest("arrived in the reorg")),
    ]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_reorg_while_a_range_is_read_is_read_again(
    own_chain: Backend, tmp_path: Path, depth: int
) -> None:
    for label in ("x", "y", "z"):
        own_chain.client.register(request(label))
    happened: list[int] = []

    def reorganise_once(card: Digest) -> str | None:
        # Called between the range's logs and its last block's second hash: mid-catch-up.
        if not happened:
            happened.append(depth)
            reorg(own_chain, depth)
        return None

    index = make_index(own_chain, tmp_path, card_name=reorganise_once)
    index.catch_up(budget_s=30)
    assert happened == [depth]
    assert every_record(index) == chain_truth(own_chain)
    assert len(every_record(index)) == 3 - depth


def test_a_reorg_that_removes_a_revocation_makes_the_record_valid_again(
    own_chain: Backend, tmp_path: Path
) -> None:
    own_chain.client.register(request("revoked then not"))
    index = make_index(own_chain, tmp_path)
    own_chain.client.revoke(digest("revoked then not"), RevocationReason.OTHER)
    index.catch_up(budget_s=30)
    assert [r["valid"] for r in every_record(index)] == [False]
    reorg(own_chain, 1)
    index.catch_up(budget_s=30)
    assert [r["valid"] for r in every_record(index)] == [True]
    assert every_record(index) == chain_truth(own_chain)


def test_pages_cover_every_record_once_while_registrations_arrive(
    anvil: Backend, tmp_path: Path
) -> None:
    index = make_index(anvil, tmp_path)
    for n in range(5):
        anvil.client.register(request(f"early {n}"))
    index.catch_up(budget_s=30)
    seen: list[str] = []
    query = PageQuery(Filters(), 2)
    n = 0
    while True:
        page = index.page(query)
        seen.extend(str(r.digest) for r in page.records)
        anvil.client.register(request(f"late {n}"))  # between every two pages
        n += 1
        index.catch_up(budget_s=30)
        if page.next_cursor is None:
            break
        query = PageQuery(query.filters, 2, decode_cursor(page.next_cursor))
    assert len(seen) == len(set(seen))
    assert seen == [str(r["digest"]) for r in chain_truth(anvil)][: len(seen)]
    assert len(seen) >= 5


def test_filters_match_the_chains_records(anvil: Backend, tmp_path: Path) -> None:
    other = anvil.other(1, Role.REGISTRAR)
    anvil.client.register(request("root", accuracy=9_000))
    anvil.client.register(request("child", accuracy=9_500, parent=digest("root")))
    other.register(request("theirs", accuracy=8_000))
    anvil.client.revoke(digest("child"), RevocationReason.SUPERSEDED)
    index = make_index(anvil, tmp_path)
    index.catch_up(budget_s=30)

    def digests(**filters: Any) -> list[str]:
        return [r["digest"] for r in every_record(index, **filters)]

    assert digests(registrant=other.account.address) == [str(digest("theirs"))]  # type: ignore[union-attr]
    assert digests(valid=False) == [str(digest("child"))]
    assert digests(valid=True) == [str(digest("root")), str(digest("theirs"))]
    assert digests(parent=digest("root")) == [str(digest("child"))]
    assert digests(min_accuracy_bps=9_000) == [str(digest("root")), str(digest("child"))]
    assert digests(name="lenet") == []  # no card held: no name to match


def test_the_name_filter_matches_a_substring_of_the_cards_name_in_any_case(
    anvil: Backend, tmp_path: Path
) -> None:
    cards = {"p": "LeNet Pneumonia", "d": "lenet-derma", "x": "resnet"}
    by_card: dict[Digest, str] = {}
    for label, name in cards.items():
        card = digest(f"card {label}")
        by_card[card] = name
        anvil.client.register(RegisterRequest(digest(label), 9_000, TEST_SET, card, None))
    index = make_index(anvil, tmp_path, card_name=by_card.get)
    index.catch_up(budget_s=30)
    found = [r["digest"] for r in every_record(index, name="LENET")]
    assert found == [str(digest("p")), str(digest("d"))]
    assert every_record(index, name="net p") == every_record(index, name="pneumonia")


def test_an_index_of_another_contract_is_rebuilt(anvil: Backend, tmp_path: Path) -> None:
    anvil.client.register(request("ours"))
    index = make_index(anvil, tmp_path)
    index.catch_up(budget_s=30)
    with sqlite3.connect(tmp_path / "index.sqlite3") as conn:
        conn.execute(
            "UPDATE meta SET value = '0x' || substr('1234567890', 1, 10) WHERE key = 'contract'"
        )
        conn.execute("UPDATE models SET accuracy_bps = 1")
    again = make_index(anvil, tmp_path)
    again.catch_up(budget_s=30)
    assert every_record(again) == chain_truth(anvil)


def test_a_file_that_is_no_database_is_replaced(anvil: Backend, tmp_path: Path) -> None:
    (tmp_path / "index.sqlite3").write_bytes(b"not a database at all, and long enough" * 100)
    index = make_index(anvil, tmp_path)
    anvil.client.register(request("after the damage"))
    index.catch_up(budget_s=30)
    assert every_record(index) == chain_truth(anvil)


def test_a_chain_that_is_down_leaves_the_index_readable(anvil: Backend, tmp_path: Path) -> None:
    anvil.client.register(request("indexed before the outage"))
    index = make_index(anvil, tmp_path)
    reached = index.catch_up(budget_s=30)

    def down() -> Any:
        raise ChainUnavailable("http://127.0.0.1:1", "ConnectionRefusedError")

    offline = ChainIndex(tmp_path / "index.sqlite3", down)
    with pytest.raises(ChainUnavailable):
        offline.catch_up(budget_s=1)
    page = offline.page(PageQuery())
    assert page.indexed_to_block == reached
    assert [str(r.digest) for r in page.records] == [str(digest("indexed before the outage"))]


def test_paging_straight_from_the_chain_matches_the_index(anvil: Backend, tmp_path: Path) -> None:
    for n in range(5):
        anvil.client.register(request(f"paged {n}"))
    anvil.client.revoke(digest("paged 1"), RevocationReason.OTHER)
    index = make_index(anvil, tmp_path)
    index.catch_up(budget_s=30)
    reader = anvil.reader()
    for filters in (Filters(), Filters(valid=True), Filters(min_accuracy_bps=1)):
        query = PageQuery(filters, 2)
        from_chain: list[str] = []
        while True:
            page = chain_page(reader, query)
            from_chain.extend(str(r.digest) for r in page.records)
            if page.next_cursor is None:
                break
            query = PageQuery(filters, 2, decode_cursor(page.next_cursor))
        assert from_chain == [r["digest"] for r in every_record(index, **vars(filters))]
    with pytest.raises(InvalidInput):
        chain_page(reader, PageQuery(Filters(name="lenet")))


@pytest.mark.parametrize(
    "cursor", ["", "!!!", "bm90IGEga2V5", encode_cursor((1, 2)) + "x", "MS4y" * 40, "LTEuMg"]
)
def test_a_malformed_cursor_is_refused_naming_it(cursor: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_cursor(cursor)
    assert refused.value.details["cursor"] == cursor[:64]


def test_a_cursor_round_trips_its_sort_key() -> None:
    assert decode_cursor(encode_cursor((123_456, 7))) == (123_456, 7)


def test_a_second_writer_waits_or_gives_up_without_reading(anvil: Backend, tmp_path: Path) -> None:
    index = make_index(anvil, tmp_path)
    anvil.client.register(request("one writer"))
    other = IndexDatabase(tmp_path / "index.sqlite3")
    holder = sqlite3.connect(tmp_path / "index.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        assert index.catch_up(budget_s=0.05) is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert index.catch_up(budget_s=30) == anvil.client.head()
    assert len(other.page(Filters(), None, 10)) == 1


def test_registry_list_pages_from_the_index_or_the_chain_alike(
    anvil: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from registry.cli.main import main

    monkeypatch.setenv("REGISTRY_RPC_URL", anvil.endpoint)
    monkeypatch.setenv("REGISTRY_CONTRACT_ADDRESS", anvil.client.address)
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path))
    for n in range(5):
        anvil.client.register(request(f"listed {n}"))
    anvil.client.revoke(digest("listed 3"), RevocationReason.OTHER)

    def pages(*extra: str) -> list[str]:
        seen: list[str] = []
        cursor: list[str] = []
        while True:
            assert main(["--json", "list", "--limit", "2", *cursor, *extra]) == 0
            page = json.loads(capsys.readouterr().out)
            assert len(page["models"]) <= 2
            seen.extend(m["digest"] for m in page["models"])
            if page["next_cursor"] is None:
                return seen
            cursor = ["--cursor", page["next_cursor"]]

    def everything(*extra: str) -> list[str]:
        assert main(["--json", "list", *extra]) == 0
        return [m["digest"] for m in json.loads(capsys.readouterr().out)]

    truth = [r["digest"] for r in chain_truth(anvil)]
    valid = [d for d in truth if d != str(digest("listed 3"))]
    from_chain = (pages(), pages("--valid"), everything(), everything("--revoked"))
    assert from_chain == (truth, valid, truth, [str(digest("listed 3"))])
    assert not (tmp_path / "index.sqlite3").exists()  # the chain path creates no index

    make_index(anvil, tmp_path).catch_up(budget_s=30)  # what a service on this data dir does
    anvil.client.register(request("after the service stopped"))
    truth.append(str(digest("after the service stopped")))
    valid.append(truth[-1])
    from_index = (pages(), pages("--valid"), everything(), everything("--revoked"))
    assert from_index == (truth, valid, truth, [str(digest("listed 3"))])
    assert main(["list", "--limit", "501"]) == 2
    assert "501" in capsys.readouterr().err


def test_the_fast_decoder_gives_what_the_abi_decoder_gives(anvil: Backend) -> None:
    from registry.index.logs import Decoder, read_logs

    anvil.client.register(request("decoded"))
    anvil.client.register(request("decoded child", parent=digest("decoded")))
    anvil.client.revoke(digest("decoded"), RevocationReason.SUPERSEDED, digest("decoded child"))
    reader = anvil.reader()
    raw = read_logs(reader, 0, reader.head())
    formatted = reader.events.logs([[reader.abi.registered_topic, reader.abi.revoked_topic]], 0)
    fast = [Decoder(reader).decode(entry) for entry in raw]
    assert len(fast) == len(formatted) >= 3
    assert fast == [reader.abi.decode_event(entry) for entry in formatted]
