"""Typed errors of the consensus engine.

Every rejection of an input raises a subclass of `ConsensusError`, so a driver can catch one type, drop the input
and (for the `InvalidMessage` family) score the peer that sent it. Late or early messages are not misbehaviour:
they raise `StaleHeight` / `FutureHeight`, which a driver simply ignores.
"""


class ConsensusError(Exception):
    """Root of every error raised by `consensus`."""


class InvalidMessage(ConsensusError):
    """A proposal, vote, certificate or evidence that can never be accepted."""


class InvalidSignature(InvalidMessage):
    """The signature does not verify under the signer's key for this chain id (a wrong chain id lands here)."""


class UnknownValidator(InvalidMessage):
    """The signer is not in the validator set of the message's height."""


class WrongProposer(InvalidMessage):
    """A proposal signed by someone other than the proposer of its (height, round)."""


class MalformedMessage(InvalidMessage):
    """Fields out of range, a value that does not match its hash, or undecodable bytes."""


class WrongHeight(ConsensusError):
    """A message for a height the engine is not working on."""


class StaleHeight(WrongHeight):
    """A message for a height that is already decided here."""


class FutureHeight(WrongHeight):
    """A message for a height more than one above the current one (block sync must catch up first)."""


class FutureRound(ConsensusError):
    """A proposal for a round too far above the current one (`EngineConfig.max_rounds_ahead`); dropped unread."""


class InvalidCertificate(InvalidMessage):
    """A commit certificate that does not prove more than 2/3 of the power signed one value."""


class InvalidEvidence(InvalidMessage):
    """Evidence that does not prove a double vote."""


class InvalidValidatorUpdate(ConsensusError):
    """A validator-set change the application returned that cannot be applied."""


class DoubleSignRefused(ConsensusError):
    """The double-sign guard refused to sign a second, different message for one (height, round, step)."""


class WALCorrupted(ConsensusError):
    """A WAL record in the middle of the log fails its checksum (a torn *last* record is not an error)."""


class SimulatedCrash(Exception):
    """Raised by the in-memory WAL to model a process dying in the middle of a write (simulator only).

    Deliberately not a `ConsensusError`: it is not a rejected input, and no handler may swallow it (a process
    that died cannot keep appending after its torn record).
    """
