"""Spec vectors for the genesis document (genesis/document.py): the presets load, and every rule has a
`test_invalid_*` that breaks exactly that rule of an otherwise valid document and checks that `InvalidGenesis`
names the field."""

import copy
import json

import pytest

from genesis import load_genesis, load_genesis_file, localnet_genesis, minimal_genesis, validate_genesis
from genesis.presets import FEE_ACCOUNT, GENESIS_TIME_MS
from stf.errors import InvalidGenesis
from stf.params import AssetParams, ChainParams, SpotMarketParams
from stf.state import initialize_state
from stf.units import U64_MAX

ALICE = "11" * 20
BOB = "22" * 20


def base_doc() -> dict:
    return minimal_genesis(balances=[(ALICE, 0, 1_000_000), (BOB, 1, 5)])


def assert_invalid(doc, *fragments: str) -> InvalidGenesis:
    with pytest.raises(InvalidGenesis) as info:
        validate_genesis(doc)
    assert info.value.code == "invalid_genesis"
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    # the same document through JSON gives the same verdict
    if isinstance(doc, dict):
        with pytest.raises(InvalidGenesis):
            load_genesis(json.dumps(doc))
    return info.value


def mutate(path: list, value=None, delete: bool = False) -> dict:
    doc = base_doc()
    target = doc
    for step in path[:-1]:
        target = target[step]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


# --- presets and valid documents ---------------------------------------------------------------------------

def test_minimal_preset_loads():
    g = validate_genesis(base_doc())
    assert g.params == ChainParams("kabuto-test", faucet_enabled=False, faucet_max_atoms=10**15)
    assert g.genesis_time_ms == GENESIS_TIME_MS
    assert g.assets == (AssetParams(0, "USD", 6), AssetParams(1, "BTC", 8), AssetParams(2, "ETH", 8))
    assert g.spot_markets[0] == SpotMarketParams(0, "BTC-USD", 1, 0, 1, 1000, 1, -1, 5, bytes.fromhex(FEE_ACCOUNT))
    assert g.spot_markets[1].symbol == "ETH-USD" and g.spot_markets[1].maker_fee_bps == 2
    assert g.balances == ((bytes.fromhex(ALICE), 0, 1_000_000), (bytes.fromhex(BOB), 1, 5))


def test_localnet_preset_loads_with_faucet():
    g = validate_genesis(localnet_genesis())
    assert g.params.chain_id == "kabuto-localnet" and g.params.faucet_enabled
    assert g.balances == ()


def test_presets_load_through_json_and_file(tmp_path):
    doc = base_doc()
    assert load_genesis(json.dumps(doc)) == validate_genesis(doc)
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(localnet_genesis()))
    assert load_genesis_file(path) == load_genesis_file(str(path)) == validate_genesis(localnet_genesis())


def test_presets_initialize_a_state():
    state = initialize_state(validate_genesis(base_doc()))
    assert state.accounts[bytes.fromhex(ALICE)].balances == {0: 1_000_000}
    assert sorted(state.markets) == [0, 1]


def test_params_defaults_and_overrides():
    doc = base_doc()
    doc["params"] = {}
    assert validate_genesis(doc).params == ChainParams("kabuto-test")
    del doc["params"]
    assert validate_genesis(doc).params == ChainParams("kabuto-test")
    doc["params"] = {"nonce_set_size": 3, "nonce_window_past_ms": 5, "nonce_window_future_ms": 6,
                     "max_open_orders_per_account": 7, "max_agents_per_account": 0, "faucet_enabled": True,
                     "faucet_max_atoms": 9}
    assert validate_genesis(doc).params == ChainParams("kabuto-test", 3, 5, 6, 7, 0, True, 9)


def test_decimal_string_amounts_accepted():
    doc = base_doc()
    doc["balances"][0]["amount"] = str(U64_MAX)            # beyond what a JSON double holds exactly
    doc["genesis_time_ms"] = str(GENESIS_TIME_MS)
    doc["spot_markets"][0]["maker_fee_bps"] = "-1"
    doc["params"]["faucet_max_atoms"] = "0"
    g = load_genesis(json.dumps(doc))
    assert g.balances[0][2] == U64_MAX
    assert g.genesis_time_ms == GENESIS_TIME_MS
    assert g.spot_markets[0].maker_fee_bps == -1
    assert g.params.faucet_max_atoms == 0


def test_big_json_integer_is_exact():
    text = json.dumps(base_doc()).replace('"amount": 1000000', f'"amount": {U64_MAX}')
    assert load_genesis(text).balances[0][2] == U64_MAX


def test_address_forms_accepted():
    doc = base_doc()
    doc["balances"][0]["address"] = "0x" + ALICE
    doc["balances"][1]["address"] = BOB.upper()
    g = validate_genesis(doc)
    assert g.balances[0][0] == bytes.fromhex(ALICE) and g.balances[1][0] == bytes.fromhex(BOB)


def test_range_boundaries_accepted():
    doc = base_doc()
    doc["chain_id"] = "a" * 50
    doc["assets"][0]["decimals"] = 18
    doc["assets"][2]["id"] = 65_535
    doc["spot_markets"][1]["base_asset"] = 65_535
    doc["spot_markets"][1]["id"] = 65_535
    doc["spot_markets"][0]["maker_fee_bps"] = -5                 # rebate equal to the taker fee
    doc["spot_markets"][1]["taker_fee_bps"] = 10_000
    doc["params"]["nonce_set_size"] = 10_000
    doc["balances"][0]["amount"] = 1
    doc["genesis_time_ms"] = 0
    validate_genesis(doc)


# --- invalid documents -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("doc", [[], "genesis", None, 5], ids=repr)
def test_invalid_not_an_object(doc):
    assert_invalid(doc, "genesis: must be a JSON object")


@pytest.mark.parametrize("chain_id", [
    "", "Kabuto", "-kabuto", "kabuto_test", "kabuto test", "kabuto.test", "a" * 51, 5, None, ["kabuto"], "kabütō",
], ids=repr)
def test_invalid_chain_id(chain_id):
    assert_invalid(mutate(["chain_id"], chain_id), "chain_id")


def test_invalid_chain_id_missing():
    assert_invalid(mutate(["chain_id"], delete=True), "chain_id")


def test_invalid_chain_id_trailing_newline():
    assert_invalid(mutate(["chain_id"], "kabuto-test\n"), "chain_id")


@pytest.mark.parametrize("params", [[], "x", 5, None], ids=repr)
def test_invalid_params_not_an_object(params):
    assert_invalid(mutate(["params"], params), "params: must be an object")


@pytest.mark.parametrize("field,value", [
    ("nonce_set_size", 0), ("nonce_set_size", 10_001), ("nonce_set_size", -1), ("nonce_window_past_ms", 0),
    ("nonce_window_future_ms", 0), ("max_open_orders_per_account", 0), ("max_open_orders_per_account", 1_000_001),
    ("max_agents_per_account", -1), ("max_agents_per_account", 1_001), ("faucet_max_atoms", -1),
    ("faucet_max_atoms", U64_MAX + 1), ("nonce_set_size", True), ("nonce_set_size", "3.0"), ("nonce_set_size", " 3"),
    ("nonce_set_size", "0x3"), ("nonce_set_size", [3]), ("nonce_window_past_ms", "-1"),
])
def test_invalid_param_value(field, value):
    assert_invalid(mutate(["params", field], value), f"params.{field}")


@pytest.mark.parametrize("value", ["true", 1, 0, None], ids=repr)
def test_invalid_faucet_enabled_not_bool(value):
    assert_invalid(mutate(["params", "faucet_enabled"], value), "params.faucet_enabled")


@pytest.mark.parametrize("value", [None, [], {}, "USD"], ids=repr)
def test_invalid_assets_not_a_non_empty_list(value):
    assert_invalid(mutate(["assets"], value), "assets: must be a non-empty list")


def test_invalid_assets_missing():
    assert_invalid(mutate(["assets"], delete=True), "assets")


def test_invalid_asset_not_an_object():
    doc = base_doc()
    doc["assets"][1] = [1, "BTC", 8]
    assert_invalid(doc, "assets[1]: must be an object")


@pytest.mark.parametrize("field", ["id", "symbol", "decimals"])
def test_invalid_asset_missing_field(field):
    assert_invalid(mutate(["assets", 1, field], delete=True), f"assets[1].{field}")


@pytest.mark.parametrize("field,value", [
    ("id", -1), ("id", 65_536), ("id", "one"), ("decimals", 19), ("decimals", -1), ("symbol", ""),
    ("symbol", "X" * 33), ("symbol", "€"), ("symbol", 5),
])
def test_invalid_asset_field(field, value):
    assert_invalid(mutate(["assets", 2, field], value), f"assets[2].{field}")


def test_invalid_duplicate_asset_ids():
    assert_invalid(mutate(["assets", 2, "id"], 1), "assets: asset ids must be unique")


@pytest.mark.parametrize("value", [{}, "BTC-USD", 5], ids=repr)
def test_invalid_spot_markets_not_a_list(value):
    assert_invalid(mutate(["spot_markets"], value), "spot_markets: must be a list")


def test_no_spot_markets_is_valid():
    assert validate_genesis(mutate(["spot_markets"], delete=True)).spot_markets == ()


def test_invalid_spot_market_not_an_object():
    assert_invalid(mutate(["spot_markets", 1], "ETH-USD"), "spot_markets[1]: must be an object")


@pytest.mark.parametrize("field", [
    "id", "symbol", "base_asset", "quote_asset", "tick_size", "lot_size", "min_size_lots", "maker_fee_bps",
    "taker_fee_bps", "fee_account",
])
def test_invalid_spot_market_missing_field(field):
    assert_invalid(mutate(["spot_markets", 1, field], delete=True), f"spot_markets[1].{field}")


@pytest.mark.parametrize("field,value", [
    ("id", -1), ("id", 65_536), ("tick_size", 0), ("lot_size", 0), ("min_size_lots", 0), ("tick_size", -5),
    ("taker_fee_bps", -1), ("taker_fee_bps", 10_001), ("maker_fee_bps", 10_001), ("maker_fee_bps", -10_001),
    ("symbol", ""), ("symbol", "B" * 33),
])
def test_invalid_spot_market_field(field, value):
    assert_invalid(mutate(["spot_markets", 0, field], value), f"spot_markets[0].{field}")


@pytest.mark.parametrize("field", ["base_asset", "quote_asset"])
def test_invalid_spot_market_unknown_asset(field):
    assert_invalid(mutate(["spot_markets", 0, field], 9), f"spot_markets[0].{field}: unknown asset 9")


def test_invalid_spot_market_base_equals_quote():
    assert_invalid(mutate(["spot_markets", 0, "base_asset"], 0), "spot_markets[0].quote_asset: must differ")


def test_invalid_rebate_larger_than_taker_fee():
    assert_invalid(mutate(["spot_markets", 0, "maker_fee_bps"], -6), "spot_markets[0].maker_fee_bps", "rebate of 6")


@pytest.mark.parametrize("address", [
    "zz" * 20, "11" * 19, "11" * 21, "", "0x", 5, None, "11" * 19 + "1", bytes(20).hex() + "00",
], ids=repr)
def test_invalid_fee_account_address(address):
    assert_invalid(mutate(["spot_markets", 0, "fee_account"], address), "spot_markets[0].fee_account")


def test_invalid_duplicate_market_ids():
    assert_invalid(mutate(["spot_markets", 1, "id"], 0), "market ids must be unique across both lists")


def test_invalid_balance_not_an_object():
    assert_invalid(mutate(["balances", 0], [ALICE, 0, 1]), "balances[0]: must be an object")


@pytest.mark.parametrize("field", ["address", "asset", "amount"])
def test_invalid_balance_missing_field(field):
    assert_invalid(mutate(["balances", 1, field], delete=True), f"balances[1].{field}")


@pytest.mark.parametrize("field,value", [
    ("amount", 0), ("amount", -1), ("amount", "-1"), ("amount", U64_MAX + 1), ("amount", str(U64_MAX + 1)),
    ("amount", True), ("amount", "1e6"), ("amount", "1_000"), ("asset", -1), ("address", "zz" * 20),
    ("address", ALICE[:-2]), ("address", 0),
])
def test_invalid_balance_field(field, value):
    assert_invalid(mutate(["balances", 0, field], value), f"balances[0].{field}")


def test_invalid_balance_unknown_asset():
    assert_invalid(mutate(["balances", 1, "asset"], 3), "balances[1].asset: unknown asset 3")


@pytest.mark.parametrize("value", [5, None, True], ids=repr)
def test_invalid_balances_not_a_list(value):
    assert_invalid(mutate(["balances"], value), "balances")


def test_invalid_duplicate_balance_entry():
    doc = base_doc()
    doc["balances"].append({"address": "0x" + ALICE, "asset": 0, "amount": 1})
    assert_invalid(doc, "balances[2]: duplicates balances[0]")


def test_same_address_different_assets_is_not_a_duplicate():
    doc = base_doc()
    doc["balances"].append({"address": ALICE, "asset": 1, "amount": 1})
    assert len(validate_genesis(doc).balances) == 3


def test_invalid_balance_total_above_u64():
    doc = base_doc()
    doc["balances"] = [{"address": ALICE, "asset": 0, "amount": U64_MAX}, {"address": ALICE, "asset": 0, "amount": 1}]
    assert_invalid(doc, "balances[1]")


def test_invalid_asset_supply_above_u64():
    doc = base_doc()
    doc["balances"] = [{"address": ALICE, "asset": 0, "amount": U64_MAX}, {"address": BOB, "asset": 0, "amount": 1}]
    assert_invalid(doc, "balances[1].amount", "total supply")


def test_asset_supply_exactly_u64_accepted_and_recorded():
    doc = base_doc()
    doc["balances"] = [
        {"address": ALICE, "asset": 0, "amount": U64_MAX - 1}, {"address": BOB, "asset": 0, "amount": 1},
        {"address": BOB, "asset": 1, "amount": U64_MAX},
    ]
    state = initialize_state(validate_genesis(doc))
    assert state.supply[0] == U64_MAX and state.supply[1] == U64_MAX


@pytest.mark.parametrize("path", [
    [], ["params"], ["assets", 0], ["spot_markets", 1], ["balances", 0],
], ids=["top", "params", "asset", "market", "balance"])
def test_invalid_unknown_field(path):
    doc = base_doc()
    target = doc
    for step in path:
        target = target[step]
    target["nonce_set_sise"] = 3
    assert_invalid(doc, "unknown field 'nonce_set_sise'")


@pytest.mark.parametrize("address", [" ".join(["1111"] * 10), ALICE[:20] + " " + ALICE[20:], " " + ALICE, ALICE + "\n"],
                         ids=["spaced", "one-space", "leading", "newline"])
def test_invalid_address_with_whitespace(address):
    assert_invalid(mutate(["balances", 0, "address"], address), "balances[0].address")


@pytest.mark.parametrize("value", ["1" * 22, "-" + "1" * 21], ids=["22-digits", "negative-22"])
def test_invalid_overlong_decimal_string(value):
    assert_invalid(mutate(["balances", 0, "amount"], value), "balances[0].amount")


def test_invalid_genesis_time():
    assert_invalid(mutate(["genesis_time_ms"], delete=True), "genesis.genesis_time_ms: required")
    assert_invalid(mutate(["genesis_time_ms"], -1), "genesis.genesis_time_ms")
    assert_invalid(mutate(["genesis_time_ms"], "soon"), "genesis.genesis_time_ms")


@pytest.mark.parametrize("text", [
    '{"chain_id": "kabuto-test", "genesis_time_ms": 1.5}',
    json.dumps(base_doc()).replace('"amount": 1000000', '"amount": 1000000.0'),
    json.dumps(base_doc()).replace('"amount": 1000000', '"amount": 1e6'),
    json.dumps(base_doc()).replace('"taker_fee_bps": 5', '"taker_fee_bps": 5.0'),
], ids=["time", "amount", "exponent", "fee"])
def test_invalid_floats_rejected_in_json(text):
    with pytest.raises(InvalidGenesis) as info:
        load_genesis(text)
    assert "floats are not allowed" in str(info.value)


@pytest.mark.parametrize("value", [1.0, 1e6, float("nan"), float("inf")], ids=repr)
def test_invalid_floats_rejected_in_a_document(value):
    assert_invalid(mutate(["balances", 0, "amount"], value), "balances[0].amount: must be an integer")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_invalid_json_nan_and_infinity(constant):
    text = json.dumps(base_doc()).replace('"amount": 1000000', f'"amount": {constant}')
    with pytest.raises(InvalidGenesis):
        load_genesis(text)


@pytest.mark.parametrize("text", ["", "{", "not json", '{"chain_id": }'], ids=repr)
def test_invalid_not_json(text):
    with pytest.raises(InvalidGenesis) as info:
        load_genesis(text)
    assert "not valid JSON" in str(info.value)


def test_invalid_huge_decimal_string():
    assert_invalid(mutate(["balances", 0, "amount"], "1" * 5_000), "balances[0].amount")


def test_invalid_huge_json_integer():
    text = json.dumps(base_doc()).replace('"amount": 1000000', '"amount": ' + "1" * 5_000)
    with pytest.raises(InvalidGenesis):
        load_genesis(text)


def test_validate_does_not_mutate_the_document():
    doc = base_doc()
    doc["balances"][0]["amount"] = "123"
    copy_before = copy.deepcopy(doc)
    validate_genesis(doc)
    assert doc == copy_before


def test_invalid_repeated_json_key():
    text = json.dumps(base_doc())
    text = text.replace('"chain_id": "kabuto-test"', '"chain_id": "kabuto-test", "chain_id": "kabuto-other"', 1)
    with pytest.raises(InvalidGenesis) as info:
        load_genesis(text)
    assert "'chain_id' appears more than once" in str(info.value)


def with_validators(validators) -> dict:
    doc = base_doc()
    doc["validators"] = validators
    return doc


def test_validators_and_oracle_fields_load():
    doc = with_validators([{"address": BOB, "power": 3}, {"address": ALICE, "power": "7"}])
    doc["spot_markets"][0].update({"price_band_bps": 500, "oracle_max_age_ms": 5000})
    g = validate_genesis(doc)
    assert g.validators == ((bytes.fromhex(ALICE), 7), (bytes.fromhex(BOB), 3))
    assert (g.spot_markets[0].price_band_bps, g.spot_markets[0].oracle_max_age_ms) == (500, 5000)
    assert (g.spot_markets[1].price_band_bps, g.spot_markets[1].oracle_max_age_ms) == (0, 60_000)


@pytest.mark.parametrize("validators, fragment", [
    ({"address": ALICE}, "validators: must be a list"),
    (["x"], "validators[0]: must be an object"),
    ([{"address": ALICE, "power": 0}], "validators[0].power"),
    ([{"address": ALICE, "power": 2**60 + 1}], "validators[0].power"),
    ([{"address": "zz", "power": 1}], "validators[0].address"),
    ([{"address": ALICE, "power": 1}, {"address": ALICE, "power": 2}], "validators[1].address: listed twice"),
    ([{"address": ALICE, "power": 1, "stake": 5}], "validators[0]: unknown field 'stake'"),
], ids=["not-list", "not-object", "zero-power", "huge-power", "bad-address", "duplicate", "unknown-field"])
def test_invalid_validators(validators, fragment):
    assert_invalid(with_validators(validators), fragment)


@pytest.mark.parametrize("field, value", [("price_band_bps", -1), ("price_band_bps", 10_000), ("oracle_max_age_ms", 0)])
def test_invalid_oracle_market_fields(field, value):
    assert_invalid(mutate(["spot_markets", 0, field], value), f"spot_markets[0].{field}")


def test_invalid_price_band_without_validators():
    assert_invalid(mutate(["spot_markets", 0, "price_band_bps"], 100), "spot_markets[0].price_band_bps", "needs validators")
