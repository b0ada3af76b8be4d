"""Node key and validator key files: `node_key.json` and `validator_key.json` in the home directory.

Format: one JSON object, exactly `{"type": "ed25519", "seed": "<64 hex digits>"}` (the 32-byte Ed25519 seed that
`stf.crypto.PrivateKey` takes), file mode 0600.

Contract:

- `generate_key(path)` writes a fresh key from `os.urandom` and returns it. It refuses to overwrite: the file is
  created with O_CREAT|O_EXCL (so two racing generators cannot both win), mode 0600 whatever the umask.
- `load_key(path)` returns the `PrivateKey`, or raises `KeyFileError` naming the file, the field and the reason:
  missing file, unreadable file, bad JSON, not an object, an unknown or missing field, a type other than
  "ed25519", a seed that is not hex or not 32 bytes, and permissions that let group or others read or write it.
- Permissions policy: REFUSE (like ssh with a private key), not warn. A key readable by others is a key an
  operator must assume leaked, and a validator that starts anyway hides the problem. The fix is named in the
  message (`chmod 600`). Checked on POSIX only.
- The node id is `stf.crypto.compute_address(public key)` in lowercase hex (40 digits), the id the P2P handshake
  authenticates; a validator address is computed the same way from the validator key.

Known limits: the seed is stored in the clear (no passphrase, no KMS or remote signer); there is no key rotation.
"""

import json
import os
import re
import stat
from pathlib import Path

from stf.crypto import PrivateKey

KEY_TYPE = "ed25519"
SEED_LEN = 32
KEY_FIELDS = ("type", "seed")
NODE_KEY_FILE = "node_key.json"
VALIDATOR_KEY_FILE = "validator_key.json"


class KeyFileError(ValueError):
    """A key file was refused; `str()` is one line: `path: field: reason`."""

    def __init__(self, path: str | Path, field: str | None, reason: str) -> None:
        super().__init__(str(path), field, reason)
        self.path, self.field, self.reason = str(path), field, reason

    def __str__(self) -> str:
        return ": ".join(part for part in (self.path, self.field, self.reason) if part)


def encode_key(seed: bytes) -> str:
    return json.dumps({"type": KEY_TYPE, "seed": seed.hex()}) + "\n"


def generate_key(path: str | Path) -> PrivateKey:
    """Write a new key to `path` (mode 0600); raise `KeyFileError` if the file exists."""
    seed = os.urandom(SEED_LEN)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(path, None, "already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(path, None, f"cannot create: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(encode_key(seed))
    return PrivateKey(seed)


def _check_permissions(path: Path) -> None:
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(path, "mode", f"permissions {mode:04o} let group or others access the key; "
                                         f"run: chmod 600 {path}")


def _read_document(path: Path) -> object:
    try:
        text = path.read_text()
        _check_permissions(path)
    except FileNotFoundError:
        raise KeyFileError(path, None, "file not found (create it with: kabuto keys generate)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(path, None, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise KeyFileError(path, None, f"not valid JSON: {exc}") from None


def decode_key(doc: object, path: str | Path) -> PrivateKey:
    """Validate a parsed key document; `path` is only used in the error."""
    if not isinstance(doc, dict):
        raise KeyFileError(path, None, "must be a JSON object with \"type\" and \"seed\"")
    for name in sorted(doc):
        if name not in KEY_FIELDS:
            raise KeyFileError(path, str(name), f"unknown field (known: {', '.join(KEY_FIELDS)})")
    if doc.get("type") != KEY_TYPE:
        raise KeyFileError(path, "type", f"must be {KEY_TYPE!r}, got {doc.get('type')!r}")
    seed = doc.get("seed")
    if not isinstance(seed, str) or not re.fullmatch(r"[0-9a-fA-F]*", seed) or len(seed) % 2:
        raise KeyFileError(path, "seed", f"must be a hex string, got {seed!r}")
    if len(seed) != 2 * SEED_LEN:
        raise KeyFileError(path, "seed", f"must be {SEED_LEN} bytes ({2 * SEED_LEN} hex digits), got {len(seed) // 2}")
    return PrivateKey(bytes.fromhex(seed))


def load_key(path: str | Path) -> PrivateKey:
    path = Path(path)
    return decode_key(_read_document(path), path)


def node_id(key: PrivateKey) -> str:
    """The P2P node id (and, for a validator key, the validator address): 40 lowercase hex digits."""
    return key.address.hex()
