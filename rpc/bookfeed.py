"""Per-market L2 book feed: a snapshot, then one diff message per block, each with a checksum.

Server side, `BookFeed` keeps the top `depth` (default `FEED_DEPTH` = 50) aggregated levels of each side of
every market, as they stood after the last block it saw. After each block, `BookFeed.update(state)` compares
the new top levels with the previous ones and returns one message per market, even when nothing changed (so a
client sees every block and can detect a gap). Client side, `LocalBook` applies a snapshot and then the diffs,
and detects gaps and wrong books. Everything here is plain data and pure functions: no I/O, no clock.

Units: `price` is quote atoms per lot and `size` is lots (docs/PROTOCOL.md §2.2), both as decimal strings; a
level's size is the sum of the remaining sizes of the orders resting at that price.

`seq` is the height of the block after which the book is shown, as a decimal string. Every block produces one
message per market, so consecutive messages have `prev_seq == seq - 1`; after a node restart the numbering
continues from the chain, not from zero. A client that holds `seq = s` accepts exactly the message with
`prev_seq = s`; anything else is a gap: resubscribe (or call `book`) and start from the new snapshot.

Messages (notifications of the `book` channel, key param `market`):

    snapshot: {"type": "snapshot", "market": 0, "seq": "41", "height": "41",
               "bids": [["1000000", "5"], ...], "asks": [["1000001", "3"], ...], "checksum": 1322115694}
    diff:     {"type": "diff", "market": 0, "seq": "42", "prev_seq": "41", "height": "42",
               "changes": [["bid", "1000000", "7"], ["ask", "1000001", "0"], ...], "checksum": 123}

Levels are best first (bids descending, asks ascending). A change `[side, price, size]` sets the level at
`price` on `side` ("bid" or "ask") to `size`; size "0" removes the level. Changes list the bids, best first,
then the asks, best first; applying them in any order gives the same book. Both messages describe the top
`depth` levels only: a level that moves below the top `depth` is removed (size "0") and one that moves up into
it is added, so a client that applies the diffs to its snapshot holds exactly the server's top `depth` levels.

Checksum: the CRC-32 (`zlib.crc32`, an unsigned 32-bit integer sent as a JSON integer) of the ASCII string made
of the top `CHECKSUM_LEVELS` = 10 levels of each side, interleaved best first: bid 1, ask 1, bid 2, ask 2, ...,
where a side that has run out of levels is skipped. Each level is written `b:PRICE:SIZE` (a bid) or
`a:PRICE:SIZE` (an ask) with PRICE and SIZE the same decimal strings as in the messages, and the levels are
joined with `|`. The side letter makes the string unambiguous when one side is shorter. An empty book gives
the empty string, whose checksum is 0.

Worked example (checked by tests/rpc/test_rpc_bookfeed.py): bids 1000000 x 5 and 999999 x 2, ask 1000001 x 3:

    string   "b:1000000:5|a:1000001:3|b:999999:2"
    checksum zlib.crc32(b"b:1000000:5|a:1000001:3|b:999999:2") = 1322115694
"""

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stf.book import Book
from stf.state import State

__all__ = [
    "FEED_DEPTH", "CHECKSUM_LEVELS", "BookFeed", "LocalBook", "BookGap", "BookMismatch", "compute_checksum",
    "format_checksum_string", "get_levels",
]

FEED_DEPTH = 50
CHECKSUM_LEVELS = 10

Levels = list[tuple[int, int]]  # (price, size_lots), best first


def get_levels(book: Book, depth: int) -> tuple[Levels, Levels]:
    """The top `depth` aggregated (price, size) levels of each side, best first."""
    return ([(int(p), int(s)) for p, s in book.bids.depth(depth)],
            [(int(p), int(s)) for p, s in book.asks.depth(depth)])


def format_checksum_string(bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]) -> str:
    """The documented checksum input: top 10 of each side, interleaved bid/ask, `b:P:S` / `a:P:S`, joined by `|`."""
    top_bids, top_asks = list(bids)[:CHECKSUM_LEVELS], list(asks)[:CHECKSUM_LEVELS]
    parts = []
    for i in range(CHECKSUM_LEVELS):
        if i < len(top_bids):
            parts.append(f"b:{top_bids[i][0]}:{top_bids[i][1]}")
        if i < len(top_asks):
            parts.append(f"a:{top_asks[i][0]}:{top_asks[i][1]}")
    return "|".join(parts)


def compute_checksum(bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]) -> int:
    return zlib.crc32(format_checksum_string(bids, asks).encode("ascii"))


def _levels_json(levels: Levels) -> list[list[str]]:
    return [[str(price), str(size)] for price, size in levels]


def _changes(side: str, old: Levels, new: Levels) -> list[list[str]]:
    before, after = dict(old), dict(new)
    changes = [[side, str(price), str(size)] for price, size in new if before.get(price) != size]
    changes += [[side, str(price), "0"] for price, _ in old if price not in after]
    return changes


@dataclass(slots=True)
class _MarketBook:
    bids: Levels
    asks: Levels


class BookFeed:
    """The feed state of every market: the top `depth` levels after the last block seen, and its seq (height).

    Call `update(state)` once after every applied block (the state between blocks), in height order; it returns
    the diff message of every market, to be published on the `book` channel keyed by the market id.
    `snapshot(market)` is the first notification of a new subscription: consistent with the next diff as long
    as both are taken on the event loop's thread between blocks.
    """

    def __init__(self, state: State, depth: int = FEED_DEPTH) -> None:
        if depth < CHECKSUM_LEVELS:
            raise ValueError(f"depth must be at least {CHECKSUM_LEVELS}")
        self.depth = depth
        self.seq = state.height
        self.books: dict[int, _MarketBook] = {}
        for market_id in sorted(state.markets):
            self.books[market_id] = _MarketBook(*get_levels(state.markets[market_id].book, depth))

    def update(self, state: State) -> dict[int, dict[str, Any]]:
        """One diff message per market for the block that brought `state` to its height."""
        if state.height != self.seq + 1:
            raise ValueError(f"the feed is at height {self.seq}; it cannot take height {state.height}")
        prev_seq, self.seq = self.seq, state.height
        messages = {}
        for market_id in sorted(state.markets):
            bids, asks = get_levels(state.markets[market_id].book, self.depth)
            old = self.books.get(market_id) or _MarketBook([], [])
            self.books[market_id] = _MarketBook(bids, asks)
            messages[market_id] = {
                "type": "diff", "market": market_id, "seq": str(self.seq), "prev_seq": str(prev_seq),
                "height": str(self.seq),
                "changes": _changes("bid", old.bids, bids) + _changes("ask", old.asks, asks),
                "checksum": compute_checksum(bids, asks),
            }
        return messages

    def snapshot(self, market_id: int) -> dict[str, Any] | None:
        """The snapshot message of `market_id` at the feed's seq, or None for an unknown market."""
        book = self.books.get(market_id)
        if book is None:
            return None
        return {
            "type": "snapshot", "market": market_id, "seq": str(self.seq), "height": str(self.seq),
            "bids": _levels_json(book.bids), "asks": _levels_json(book.asks),
            "checksum": compute_checksum(book.bids, book.asks),
        }


# --- client side ----------------------------------------------------------------------------------------------


class BookGap(Exception):
    """A diff does not follow the book held (`prev_seq` differs from the local `seq`): resync from a snapshot."""


class BookMismatch(Exception):
    """The local book's checksum differs from the message's: the local book is wrong; resync from a snapshot."""


class LocalBook:
    """A client's copy of one market's book, kept from a snapshot plus diffs (part of the client SDK to come).

    `apply(message)` takes a snapshot or a diff message. A diff whose `prev_seq` is not the local `seq` raises
    `BookGap` and leaves the book untouched; a book whose checksum after a message differs from the message's
    raises `BookMismatch`. After either, `is_synced` is False until the next snapshot is applied, and diffs are
    refused with `BookGap`.
    """

    def __init__(self) -> None:
        self.seq: int | None = None
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.is_synced = False

    def apply(self, message: Mapping[str, Any]) -> None:
        if message["type"] == "snapshot":
            self.bids = {int(p): int(s) for p, s in message["bids"]}
            self.asks = {int(p): int(s) for p, s in message["asks"]}
            self.seq = int(message["seq"])
            self.is_synced = True
        else:
            if not self.is_synced or self.seq is None or int(message["prev_seq"]) != self.seq:
                self.is_synced = False
                raise BookGap(f"diff with prev_seq {message['prev_seq']} does not follow local seq {self.seq}")
            for side, price, size in message["changes"]:
                levels = self.bids if side == "bid" else self.asks
                if size == "0":
                    levels.pop(int(price), None)
                else:
                    levels[int(price)] = int(size)
            self.seq = int(message["seq"])
        if self.checksum() != message["checksum"]:
            self.is_synced = False
            raise BookMismatch(f"checksum {self.checksum()} != {message['checksum']} at seq {self.seq}")

    def get_bids(self) -> Levels:
        return sorted(self.bids.items(), reverse=True)

    def get_asks(self) -> Levels:
        return sorted(self.asks.items())

    def checksum(self) -> int:
        return compute_checksum(self.get_bids(), self.get_asks())
