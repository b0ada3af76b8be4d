"""Fixed-point units of the protocol, and the only rounding helpers the STF uses.

Every quantity is a Python int in one of these units. They are `NewType`s for the reader and the type checker;
hot code annotates with them but does not call them (a call costs about 50 ns on CPython 3.11).

| type         | meaning                                                   | scale                                  |
|--------------|-----------------------------------------------------------|----------------------------------------|
| `Atoms`      | an amount of one asset                                    | 10**-decimals of the asset (genesis)   |
| `SizeLots`   | an order or position size                                 | one lot = market `lot_size` base atoms |
| `PriceQuote` | a price: quote-asset atoms paid for one lot of base       | a multiple of market `tick_size`       |
| `Bps`        | a fee rate in basis points (1 bps = 0.01 percent)         | 10_000 bps = 100 percent               |
| `TimeMs`     | a time: milliseconds since the Unix epoch (block header)  |                                        |

So a fill of `size_lots` at `price` costs exactly `price * size_lots` quote atoms and moves
`size_lots * lot_size` base atoms: the notional needs no division at all.

Rounding rule: every division states its direction and rounds in the protocol's favour. Fees charged round up;
payouts (maker rebates) round down. Python's `//` rounds toward minus infinity, so the helpers below are only
defined for the signs they document and check them with `assert` (an internal invariant, not input validation).
"""

from typing import NewType

Atoms = NewType("Atoms", int)
SizeLots = NewType("SizeLots", int)
PriceQuote = NewType("PriceQuote", int)
Bps = NewType("Bps", int)
TimeMs = NewType("TimeMs", int)

BPS_DENOMINATOR = 10_000
U64_MAX = (1 << 64) - 1


def div_floor(numerator: int, denominator: int) -> int:
    """numerator over denominator rounded down (toward zero), for numerator >= 0 and denominator > 0."""
    assert numerator >= 0 and denominator > 0
    return numerator // denominator


def div_ceil(numerator: int, denominator: int) -> int:
    """numerator over denominator rounded up (away from zero), for numerator >= 0 and denominator > 0."""
    assert numerator >= 0 and denominator > 0
    return -((-numerator) // denominator)


def compute_notional(price: PriceQuote, size_lots: SizeLots) -> Atoms:
    """Quote atoms exchanged for `size_lots` at `price`: exact, no rounding."""
    return price * size_lots


def compute_fee_charged(notional: Atoms, fee_bps: Bps) -> Atoms:
    """A fee the account pays, for fee_bps >= 0: notional * fee_bps over 10_000, rounded up."""
    return -((-notional * fee_bps) // BPS_DENOMINATOR)  # rounded up: notional, fee_bps >= 0


def compute_rebate_paid(notional: Atoms, rebate_bps: Bps) -> Atoms:
    """A rebate the protocol pays, for rebate_bps >= 0: notional * rebate_bps over 10_000, rounded down."""
    return (notional * rebate_bps) // BPS_DENOMINATOR  # rounded down: notional, rebate_bps >= 0


def compute_fee(notional: Atoms, fee_bps: Bps) -> Atoms:
    """Signed fee for a fill: positive is charged (rounded up), negative is a rebate paid (rounded down)."""
    if fee_bps >= 0:
        return -((-notional * fee_bps) // BPS_DENOMINATOR)  # charged, rounded up
    return -((notional * -fee_bps) // BPS_DENOMINATOR)      # rebate paid, rounded down


def compute_fee_bound_per_lot(price: PriceQuote, fee_bps: Bps) -> Atoms:
    """The most a one-lot fill at `price` can be charged at fee_bps (0 for a rebate), rounded up.

    A hold of `size_lots * (price + compute_fee_bound_per_lot(price, bps))` always covers the fills of that
    size in any split, because the sum of k rounded-up parts never exceeds k times the rounded-up whole per lot.
    """
    return -((-price * fee_bps) // BPS_DENOMINATOR) if fee_bps > 0 else 0
