"""Parse and validate a genesis document into `stf.params.GenesisConfig`."""

import json
import re
from pathlib import Path
from typing import Any

from stf.constants import ADDRESS_LEN, MAX_CHAIN_ID_LEN
from stf.errors import InvalidGenesis
from stf.params import AssetParams, ChainParams, GenesisConfig, GovernanceParams, PerpMarketParams, SpotMarketParams
from stf.perp_math import HOUR_MS, RATE_LIMIT
from stf.units import BPS_DENOMINATOR, U64_MAX

CHAIN_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")
TOP_FIELDS = (
    "chain_id", "genesis_time_ms", "params", "assets", "spot_markets", "perp_markets", "balances", "validators",
    "governance",
)
PARAM_FIELDS = (
    "nonce_set_size", "nonce_window_past_ms", "nonce_window_future_ms", "max_open_orders_per_account",
    "max_agents_per_account", "faucet_enabled", "faucet_max_atoms", "collateral_asset", "insurance_account",
)
PERP_MARKET_FIELDS = (
    "id", "symbol", "tick_size", "lot_size", "min_size_lots", "maker_fee_bps", "taker_fee_bps", "fee_account",
    "price_band_bps", "oracle_max_age_ms", "margin_tiers", "default_leverage", "funding_interest_rate",
    "funding_clamp_rate", "funding_cap_hourly", "funding_interval_ms", "impact_notional", "mark_ema_ms",
    "max_open_interest_lots", "liquidation_fee_bps", "liquidation_slippage_bps", "liquidation_chunk_notional",
)
GOVERNANCE_FIELDS = ("keys", "threshold")
ASSET_FIELDS = ("id", "symbol", "decimals")
SPOT_MARKET_FIELDS = (
    "id", "symbol", "base_asset", "quote_asset", "tick_size", "lot_size", "min_size_lots", "maker_fee_bps",
    "taker_fee_bps", "fee_account", "price_band_bps", "oracle_max_age_ms",
)
VALIDATOR_FIELDS = ("address", "power")
MAX_VALIDATOR_POWER = 1 << 60
BALANCE_FIELDS = ("address", "asset", "amount")


def _known_fields(doc: dict, allowed: tuple[str, ...], where: str) -> None:
    """Reject unknown fields, so a misspelt parameter never falls back to its default silently."""
    unknown = sorted(str(k) for k in doc if k not in allowed)
    if unknown:
        raise InvalidGenesis(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(allowed)})")


def _int(doc: dict, field: str, where: str, minimum: int = 0, maximum: int = U64_MAX, default: Any = None) -> int:
    value = doc.get(field, default)
    if value is None:
        raise InvalidGenesis(f"{where}.{field}: required")
    if isinstance(value, str) and len(value) <= 21 and re.fullmatch(r"-?[0-9]+", value):
        value = int(value)
    if type(value) is not int:
        raise InvalidGenesis(f"{where}.{field}: must be an integer (or a decimal string), got {value!r}")
    if not minimum <= value <= maximum:
        raise InvalidGenesis(f"{where}.{field}: {value} is outside [{minimum}, {maximum}]")
    return value


def _address(value: Any, where: str) -> bytes:
    digits = value.removeprefix("0x") if isinstance(value, str) else ""
    raw = bytes.fromhex(digits) if re.fullmatch(r"(?:[0-9a-fA-F]{2})*", digits) else b""
    if len(raw) != ADDRESS_LEN:
        raise InvalidGenesis(f"{where}: must be a {ADDRESS_LEN}-byte hex address, got {value!r}")
    return raw


def _text(doc: dict, field: str, where: str) -> str:
    value = doc.get(field)
    if not isinstance(value, str) or not value or not value.isascii() or len(value) > 32:
        raise InvalidGenesis(f"{where}.{field}: must be 1 to 32 ASCII characters")
    return value


def _chain_params(doc: dict) -> ChainParams:
    chain_id = doc.get("chain_id")
    if not isinstance(chain_id, str) or not CHAIN_ID_PATTERN.fullmatch(chain_id) or len(chain_id) > MAX_CHAIN_ID_LEN:
        raise InvalidGenesis(f"chain_id: must be 1 to {MAX_CHAIN_ID_LEN} of [a-z0-9-], got {chain_id!r}")
    p = doc.get("params", {})
    if not isinstance(p, dict):
        raise InvalidGenesis("params: must be an object")
    _known_fields(p, PARAM_FIELDS, "params")
    d = ChainParams(chain_id)
    faucet = p.get("faucet_enabled", False)
    if type(faucet) is not bool:
        raise InvalidGenesis("params.faucet_enabled: must be true or false")
    return ChainParams(
        chain_id=chain_id,
        nonce_set_size=_int(p, "nonce_set_size", "params", 1, 10_000, d.nonce_set_size),
        nonce_window_past_ms=_int(p, "nonce_window_past_ms", "params", 1, default=d.nonce_window_past_ms),
        nonce_window_future_ms=_int(p, "nonce_window_future_ms", "params", 1, default=d.nonce_window_future_ms),
        max_open_orders_per_account=_int(
            p, "max_open_orders_per_account", "params", 1, 1_000_000, d.max_open_orders_per_account),
        max_agents_per_account=_int(p, "max_agents_per_account", "params", 0, 1_000, d.max_agents_per_account),
        faucet_enabled=faucet,
        faucet_max_atoms=_int(p, "faucet_max_atoms", "params", default=d.faucet_max_atoms),
        collateral_asset=_int(p, "collateral_asset", "params", 0, 65_535, d.collateral_asset),
        insurance_account=(_address(p["insurance_account"], "params.insurance_account")
                           if "insurance_account" in p else d.insurance_account),
        governance=_governance(doc),
    )


def _governance(doc: dict) -> GovernanceParams:
    g = doc.get("governance", {})
    if not isinstance(g, dict):
        raise InvalidGenesis("governance: must be an object")
    _known_fields(g, GOVERNANCE_FIELDS, "governance")
    raw = g.get("keys", [])
    if not isinstance(raw, list):
        raise InvalidGenesis("governance.keys: must be a list of addresses")
    keys = [_address(k, f"governance.keys[{i}]") for i, k in enumerate(raw)]
    if len(set(keys)) != len(keys):
        raise InvalidGenesis("governance.keys: an address is listed twice")
    threshold = _int(g, "threshold", "governance", 1, max(1, len(keys)), 1 if not keys else None)
    return GovernanceParams(tuple(keys), threshold)


def _tiers(m: dict, where: str) -> tuple[tuple[int, int], ...]:
    raw = m.get("margin_tiers")
    if not isinstance(raw, list) or not raw:
        raise InvalidGenesis(f"{where}.margin_tiers: must be a non-empty list of [lower_notional_bound, max_leverage]")
    tiers = []
    for i, tier in enumerate(raw):
        here = f"{where}.margin_tiers[{i}]"
        if not isinstance(tier, list) or len(tier) != 2:
            raise InvalidGenesis(f"{here}: must be [lower_notional_bound, max_leverage]")
        bound = _int({"b": tier[0]}, "b", here)
        leverage = _int({"l": tier[1]}, "l", here, 1, 1_000)
        if i == 0 and bound != 0:
            raise InvalidGenesis(f"{here}: the first tier must start at notional 0")
        if i and (bound <= tiers[-1][0] or leverage > tiers[-1][1]):
            raise InvalidGenesis(f"{here}: bounds must ascend and max leverage must not increase")
        tiers.append((bound, leverage))
    return tuple(tiers)


def _perp_market(m: Any, where: str, collateral: int) -> PerpMarketParams:
    if not isinstance(m, dict):
        raise InvalidGenesis(f"{where}: must be an object")
    _known_fields(m, PERP_MARKET_FIELDS, where)
    maker = _int(m, "maker_fee_bps", where, -BPS_DENOMINATOR, BPS_DENOMINATOR)
    taker = _int(m, "taker_fee_bps", where, 0, BPS_DENOMINATOR)
    if maker < 0 and -maker > taker:
        raise InvalidGenesis(f"{where}.maker_fee_bps: a rebate of {-maker} bps exceeds the taker fee of {taker} bps")
    tiers = _tiers(m, where)
    interval = _int(m, "funding_interval_ms", where, HOUR_MS, default=HOUR_MS)
    if interval % HOUR_MS:
        raise InvalidGenesis(f"{where}.funding_interval_ms: must be a whole number of hours ({HOUR_MS} ms each)")
    return PerpMarketParams(
        market_id=_int(m, "id", where, 0, 65_535), symbol=_text(m, "symbol", where), quote_asset=collateral,
        tick_size=_int(m, "tick_size", where, 1), lot_size=_int(m, "lot_size", where, 1),
        min_size_lots=_int(m, "min_size_lots", where, 1), maker_fee_bps=maker, taker_fee_bps=taker,
        fee_account=_address(m.get("fee_account"), f"{where}.fee_account"),
        price_band_bps=_int(m, "price_band_bps", where, 0, BPS_DENOMINATOR - 1, 0),
        oracle_max_age_ms=_int(m, "oracle_max_age_ms", where, 1, default=60_000),
        margin_tiers=tiers,
        default_leverage=_int(m, "default_leverage", where, 1, tiers[0][1], min(10, tiers[0][1])),
        funding_interest_rate=_int(m, "funding_interest_rate", where, -RATE_LIMIT, RATE_LIMIT, 100_000),
        funding_clamp_rate=_int(m, "funding_clamp_rate", where, 0, RATE_LIMIT, 500_000),
        funding_cap_hourly=_int(m, "funding_cap_hourly", where, 0, RATE_LIMIT, 40_000_000),
        funding_interval_ms=interval,
        impact_notional=_int(m, "impact_notional", where, 1),
        mark_ema_ms=_int(m, "mark_ema_ms", where, 1, default=150_000),
        max_open_interest_lots=_int(m, "max_open_interest_lots", where, default=0),
        liquidation_fee_bps=_int(m, "liquidation_fee_bps", where, 0, BPS_DENOMINATOR, 50),
        liquidation_slippage_bps=_int(m, "liquidation_slippage_bps", where, 0, BPS_DENOMINATOR - 1, 500),
        liquidation_chunk_notional=_int(m, "liquidation_chunk_notional", where, 1),
    )


def _assets(doc: dict) -> tuple[AssetParams, ...]:
    raw = doc.get("assets")
    if not isinstance(raw, list) or not raw:
        raise InvalidGenesis("assets: must be a non-empty list")
    assets = []
    for i, a in enumerate(raw):
        where = f"assets[{i}]"
        if not isinstance(a, dict):
            raise InvalidGenesis(f"{where}: must be an object")
        _known_fields(a, ASSET_FIELDS, where)
        assets.append(AssetParams(
            _int(a, "id", where, 0, 65_535), _text(a, "symbol", where), _int(a, "decimals", where, 0, 18),
        ))
    ids = [a.asset_id for a in assets]
    if len(set(ids)) != len(ids):
        raise InvalidGenesis("assets: asset ids must be unique")
    return tuple(assets)


def _spot_market(m: Any, where: str, asset_ids: list[int]) -> SpotMarketParams:
    if not isinstance(m, dict):
        raise InvalidGenesis(f"{where}: must be an object")
    _known_fields(m, SPOT_MARKET_FIELDS, where)
    base, quote = _int(m, "base_asset", where), _int(m, "quote_asset", where)
    for field, asset in (("base_asset", base), ("quote_asset", quote)):
        if asset not in asset_ids:
            raise InvalidGenesis(f"{where}.{field}: unknown asset {asset}")
    if base == quote:
        raise InvalidGenesis(f"{where}.quote_asset: must differ from base_asset")
    maker = _int(m, "maker_fee_bps", where, -BPS_DENOMINATOR, BPS_DENOMINATOR)
    taker = _int(m, "taker_fee_bps", where, 0, BPS_DENOMINATOR)
    if maker < 0 and -maker > taker:
        raise InvalidGenesis(f"{where}.maker_fee_bps: a rebate of {-maker} bps exceeds the taker fee of {taker} bps")
    return SpotMarketParams(
        market_id=_int(m, "id", where, 0, 65_535), symbol=_text(m, "symbol", where), base_asset=base,
        quote_asset=quote, tick_size=_int(m, "tick_size", where, 1), lot_size=_int(m, "lot_size", where, 1),
        min_size_lots=_int(m, "min_size_lots", where, 1), maker_fee_bps=maker, taker_fee_bps=taker,
        fee_account=_address(m.get("fee_account"), f"{where}.fee_account"),
        price_band_bps=_int(m, "price_band_bps", where, 0, BPS_DENOMINATOR - 1, 0),
        oracle_max_age_ms=_int(m, "oracle_max_age_ms", where, 1, default=60_000),
    )


def _balances(doc: dict, asset_ids: list[int]) -> tuple[tuple[bytes, int, int], ...]:
    raw = doc.get("balances", [])
    if not isinstance(raw, list):
        raise InvalidGenesis("balances: must be a list")
    balances, seen, supply = [], {}, {}
    for i, b in enumerate(raw):
        where = f"balances[{i}]"
        if not isinstance(b, dict):
            raise InvalidGenesis(f"{where}: must be an object")
        _known_fields(b, BALANCE_FIELDS, where)
        asset = _int(b, "asset", where)
        if asset not in asset_ids:
            raise InvalidGenesis(f"{where}.asset: unknown asset {asset}")
        address = _address(b.get("address"), f"{where}.address")
        if (address, asset) in seen:
            raise InvalidGenesis(f"{where}: duplicates balances[{seen[address, asset]}] (same address and asset)")
        seen[address, asset] = i
        amount = _int(b, "amount", where, 1)
        supply[asset] = supply.get(asset, 0) + amount
        if supply[asset] > U64_MAX:
            raise InvalidGenesis(f"{where}.amount: asset {asset}'s total supply would exceed 2^64-1")
        balances.append((address, asset, amount))
    return tuple(balances)


def _validators(doc: dict) -> tuple[tuple[bytes, int], ...]:
    """The validator set at genesis: consensus voting power, which also weighs oracle submissions."""
    raw = doc.get("validators", [])
    if not isinstance(raw, list):
        raise InvalidGenesis("validators: must be a list")
    validators: dict[bytes, int] = {}
    for i, v in enumerate(raw):
        where = f"validators[{i}]"
        if not isinstance(v, dict):
            raise InvalidGenesis(f"{where}: must be an object")
        _known_fields(v, VALIDATOR_FIELDS, where)
        address = _address(v.get("address"), f"{where}.address")
        if address in validators:
            raise InvalidGenesis(f"{where}.address: listed twice")
        validators[address] = _int(v, "power", where, 1, MAX_VALIDATOR_POWER)
    return tuple(sorted(validators.items()))


def validate_genesis(doc: Any) -> GenesisConfig:
    if not isinstance(doc, dict):
        raise InvalidGenesis("genesis: must be a JSON object")
    _known_fields(doc, TOP_FIELDS, "genesis")
    params = _chain_params(doc)
    assets = _assets(doc)
    asset_ids = [a.asset_id for a in assets]
    markets_raw = doc.get("spot_markets", [])
    if not isinstance(markets_raw, list):
        raise InvalidGenesis("spot_markets: must be a list")
    markets = tuple(_spot_market(m, f"spot_markets[{i}]", asset_ids) for i, m in enumerate(markets_raw))
    perps_raw = doc.get("perp_markets", [])
    if not isinstance(perps_raw, list):
        raise InvalidGenesis("perp_markets: must be a list")
    if perps_raw and params.collateral_asset not in asset_ids:
        raise InvalidGenesis(f"params.collateral_asset: unknown asset {params.collateral_asset}")
    perps = tuple(_perp_market(m, f"perp_markets[{i}]", params.collateral_asset) for i, m in enumerate(perps_raw))
    ids = [m.market_id for m in markets + perps]
    if len(set(ids)) != len(ids):
        raise InvalidGenesis("spot_markets, perp_markets: market ids must be unique across both lists")
    balances = _balances(doc, asset_ids)
    validators = _validators(doc)
    if perps and not validators:
        raise InvalidGenesis("perp_markets: perpetual markets need validators to feed the oracle; none are listed")
    for i, market in enumerate(markets):
        if market.price_band_bps and not validators:
            raise InvalidGenesis(
                f"spot_markets[{i}].price_band_bps: a price band needs validators to feed the oracle; none are listed"
            )
    return GenesisConfig(params, _int(doc, "genesis_time_ms", "genesis"), assets, markets, balances, validators,
                         perps)


def load_genesis(text: str) -> GenesisConfig:
    try:
        doc = json.loads(text, parse_float=_reject_float, object_pairs_hook=_reject_repeated_keys)
    except ValueError as exc:  # JSONDecodeError, and the interpreter's limit on huge integer literals
        raise InvalidGenesis(f"genesis: not valid JSON: {exc}") from None
    return validate_genesis(doc)


def load_genesis_file(path: str | Path) -> GenesisConfig:
    return load_genesis(Path(path).read_text())


def _reject_repeated_keys(pairs: list[tuple[str, Any]]) -> dict:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise InvalidGenesis(f"genesis: field {repeated[0]!r} appears more than once in one object")
    return dict(pairs)


def _reject_float(text: str) -> Any:
    raise InvalidGenesis(f"genesis: floats are not allowed ({text}); use integers in the documented units")
