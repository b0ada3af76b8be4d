"""Hypothesis fuzz of the real route table (every exchange method, the broadcast methods over a submitter and
the subscription methods over a session) with random params: every answer is a well-formed JSON-RPC response
without floats, and no input reaches a handler bug (-32603)."""

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpc.channels import make_channels
from rpc.jsonrpc import INTERNAL_ERROR, CallContext
from rpc.methods import make_router
from rpc.submit import Submission
from rpc.subscriptions import Hub, Session
from stf.tx import TIF_IOC
from test_rpc_live import BTC_USD, LiveNode, order

NODE = LiveNode(accounts=2)
A, B = NODE.keys
NODE.block(NODE.tx(A, order(BTC_USD, True, 999_000, 5, client_id=4)), NODE.tx(B, order(BTC_USD, False, 1_001_000, 3)))
NODE.block(NODE.tx(B, order(BTC_USD, False, 999_000, 2, TIF_IOC)))
SUBMISSION = Submission(NODE.submitter, commit_timeout_seconds=0.001, max_pending=8)
HUB = Hub(make_channels())
ROUTER = make_router(NODE.view).with_routes(SUBMISSION.get_routes()).with_routes(HUB.get_routes())
PARAM_NAMES = ["market", "depth", "address", "order_id", "client_id", "height", "hash", "tx", "encoding",
               "timeout_ms", "limit", "before", "channel", "from_height", "subscription"]

scalars = (
    st.none() | st.booleans() | st.integers(-2, 2**65) | st.text(max_size=6)
    | st.sampled_from(["BTC-USD", "0", "1", "2", "base64", "hex", "book", "blocks", "account", "trades",
                       "block_diffs", "1:0", "2:5", A.address.hex(), "0x" + B.address.hex(), "00" * 32,
                       NODE.tx(A, order(BTC_USD, True, 999_000, 1)).hex()])
)
values = st.recursive(scalars, lambda children: st.lists(children, max_size=3), max_leaves=6)
params = st.dictionaries(st.sampled_from(PARAM_NAMES), values, max_size=4) | st.lists(values, max_size=4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(ROUTER.routes)), params)
def test_fuzz_real_routes_answer_well_formed_without_internal_errors(method: str, given_params: Any) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": given_params})
    session = Session("fuzz", 4096, 64)

    async def answer() -> str | None:
        text = await ROUTER.handle(body, CallContext(NODE.view, "fuzz", session))
        await SUBMISSION.close()
        HUB.detach(session)
        return text

    text = asyncio.run(answer())
    assert text is not None
    response = json.loads(text, parse_float=lambda s: pytest.fail(f"float in response: {s}"))
    assert response["id"] == 7 and ("result" in response) != ("error" in response)
    if "error" in response:
        assert response["error"]["code"] != INTERNAL_ERROR, (method, given_params, response)
    NODE.submitter.pending.clear()
