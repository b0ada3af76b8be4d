"""The exchange state transition function: pure, deterministic, integers only.

Nothing in this package reads a clock, the environment, randomness or the network; the only time is the block
header's. See docs/PROTOCOL.md for the wire format and the units.
"""
