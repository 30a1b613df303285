"""C2SP signed notes with Ed25519 signatures, and C2SP tlog-checkpoint bodies.

Formats, as golang.org/x/mod/sumdb/note implements them (c2sp.org/signed-note,
c2sp.org/tlog-checkpoint):

- key hash: the first 4 bytes (big-endian uint32) of ``SHA-256(name || "\\n" || 0x01 || pub)``;
- verifier key: ``<name>+<8 hex digits of the key hash>+<base64(0x01 || 32-byte public key)>``;
- a signed note: the text (ending in a newline), a blank line, then one line per signature:
  ``U+2014 U+0020 <name> U+0020 <base64(4-byte key hash || 64-byte signature)>`` and a newline;
  the signature covers the text including its final newline;
- a checkpoint text: ``<origin>\\n<tree size, decimal>\\n<base64 root hash>\\n``.

The key name of a log's signature is its origin, as tlog-checkpoint recommends, so the same
Ed25519 key has one verifier key string per log. Base64 is standard (RFC 4648 section 4), padded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "
MAX_SIGNATURES = 100
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,19})$")


class NoteError(ValueError):
    """A note, checkpoint or verifier key that is malformed or does not verify. ``reason`` is a
    short stable token (``malformed``, ``bad_key``, ``no_signature``, ``bad_signature``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Strict standard base64 (padding required, no stray characters)."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError("malformed", "invalid base64") from None


def is_valid_name(name: str) -> bool:
    """Non-empty, no Unicode space, no '+' (sumdb/note isValidName)."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_hash(name: str, public_key: bytes) -> int:
    """The 32-bit key id of an Ed25519 key under ``name``."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    value: int = struct.unpack(">I", digest[:4])[0]
    return value


def verifier_key(name: str, public_key: bytes) -> str:
    """The note verifier key string ``<name>+<hash>+<base64(0x01 || key)>``."""
    if not is_valid_name(name):
        raise ValueError(f"invalid note key name {name!r}")
    return f"{name}+{key_hash(name, public_key):08x}+{b64(bytes([ALG_ED25519]) + public_key)}"


@dataclass(frozen=True)
class Verifier:
    name: str
    hash: int
    key: Ed25519PublicKey

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """Parse a verifier key string; raises ``NoteError('bad_key')``."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8 or not is_valid_name(parts[0]):
            raise NoteError("bad_key", "a verifier key is <name>+<8 hex digits>+<base64 key>")
        name, hash_hex, key_text = parts
        try:
            declared = int(hash_hex, 16)
        except ValueError:
            raise NoteError("bad_key", "the key hash is not hexadecimal") from None
        raw = unb64(key_text)
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("bad_key", "only Ed25519 verifier keys (algorithm 1) are supported")
        if key_hash(name, raw[1:]) != declared:
            raise NoteError("bad_key", "the key hash does not match the key")
        return cls(name=name, hash=declared, key=Ed25519PublicKey.from_public_bytes(raw[1:]))


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note for ``text`` (which must end in a newline) with one signature."""
    if not text.endswith("\n") or "\n\n" in text:
        raise ValueError("note text must end in one newline and hold no blank line")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise ValueError("note text must not hold control characters")
    public = public_bytes(private_key.public_key())
    signature = private_key.sign(text.encode("utf-8"))
    encoded = b64(struct.pack(">I", key_hash(name, public)) + signature)
    return f"{text}\n{SIGNATURE_PREFIX}{name} {encoded}\n"


def open_note(note: str, verifier: Verifier) -> str:
    """Verify ``note`` with ``verifier`` and return its text.

    Like sumdb/note ``Open``: signatures by unknown keys are ignored; a signature line by the
    verifier's name and key hash must verify, and at least one must be present.
    """
    if any(ord(c) < 0x20 and c != "\n" for c in note) or not note.endswith("\n"):
        raise NoteError("malformed", "a signed note ends in a newline and has no control chars")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed", "no blank line before the signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    lines = sig_block.split("\n")[:-1]
    if not lines or len(lines) > MAX_SIGNATURES:
        raise NoteError("malformed", "no signature lines, or too many")
    verified = False
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("malformed", "a signature line starts with an em dash and a space")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not is_valid_name(name) or not encoded or " " in encoded:
            raise NoteError("malformed", "a signature line is '— <name> <base64>'")
        raw = unb64(encoded)
        if len(raw) < 5:
            raise NoteError("malformed", "a signature is too short")
        if name != verifier.name or struct.unpack(">I", raw[:4])[0] != verifier.hash:
            continue
        try:
            verifier.key.verify(raw[4:], text.encode("utf-8"))
        except InvalidSignature:
            raise NoteError("bad_signature", "the note's signature does not verify") from None
        verified = True
    if not verified:
        raise NoteError("no_signature", f"the note carries no signature by {verifier.name}")
    return text


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{b64(self.root)}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body (extension lines are allowed and ignored)."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(line == "" for line in lines[:-1]):
            raise NoteError("malformed", "a checkpoint is origin, size and root hash lines")
        origin, size_text, root_text = lines[0], lines[1], lines[2]
        if not _DECIMAL.match(size_text):
            raise NoteError("malformed", "the tree size is not a decimal number")
        root = unb64(root_text)
        if len(root) != 32:
            raise NoteError("malformed", "the root hash is not 32 bytes")
        return cls(origin=origin, size=int(size_text), root=root)


def note_origin(note: str) -> str:
    """The first line of a checkpoint note (its origin), unverified: for naming a mismatch."""
    return note.split("\n", 1)[0]


def open_checkpoint(note: str, verifier: Verifier) -> Checkpoint:
    """Verify a signed checkpoint and parse it; its origin must be the verifier's name."""
    checkpoint = Checkpoint.parse(open_note(note, verifier))
    if checkpoint.origin != verifier.name:
        raise NoteError("bad_key", "the checkpoint's origin is not the key's name")
    return checkpoint
