"""Tendermint BFT consensus as a sans-IO state machine (docs/CONSENSUS.md).

Entry points for a driver (the node): `consensus.engine.Engine` (events in, actions out; `Engine.restore` after
a restart), the event and action types in `consensus.events`, the `Application` protocol and the synchronous
`drive` helper in `consensus.app`, `consensus.wal.FileWAL` for the write-ahead log, `ValidatorSet.from_genesis`
in `consensus.validators`, and `verify_certificate` / `verify_evidence` for block sync, light clients and the
application. `consensus.simulator` (with `scripts/sim`) runs many engines through seeded faults.

This package imports only the standard library (no clock, randomness, threads, sockets or logging), msgpack and
pynacl, and never the state machine it orders (`stf`); `tests/test_layering.py` keeps that rule.
"""
