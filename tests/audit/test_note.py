"""Signed notes and checkpoints against the worked example of golang.org/x/mod/sumdb/note."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_plane.audit.note import (
    Checkpoint,
    NoteError,
    Verifier,
    open_checkpoint,
    open_note,
    public_bytes,
    sign_note,
    unb64,
    verifier_key,
)

# From the package documentation of golang.org/x/mod/sumdb/note.
SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
SIGNED = (
    TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
    "qdngotpRZb6KE6RyyBwJnAM=\n"
)


def _go_example_key() -> Ed25519PrivateKey:
    seed = unb64(SKEY.split("+", 4)[4])[1:]
    return Ed25519PrivateKey.from_private_bytes(seed)


def test_verifier_key_and_signature_match_the_go_reference() -> None:
    key = _go_example_key()
    assert verifier_key("PeterNeumann", public_bytes(key.public_key())) == VKEY
    assert sign_note(TEXT, "PeterNeumann", key) == SIGNED
    assert open_note(SIGNED, Verifier.parse(VKEY)) == TEXT


def test_tampered_or_foreign_notes_are_refused() -> None:
    verifier = Verifier.parse(VKEY)
    with pytest.raises(NoteError) as bad:
        open_note(SIGNED.replace("answer", "answar"), verifier)
    assert bad.value.reason == "bad_signature"
    other = Ed25519PrivateKey.generate()
    with pytest.raises(NoteError) as foreign:
        open_note(sign_note(TEXT, "Someone", other), verifier)
    assert foreign.value.reason == "no_signature"
    with pytest.raises(NoteError):
        Verifier.parse(VKEY.replace("c74f20a3", "c74f20a4"))


def test_checkpoint_round_trip_and_origin_binding() -> None:
    key = Ed25519PrivateKey.generate()
    origin = "example.com/audit/payments"
    cp = Checkpoint(origin=origin, size=20852163, root=bytes(range(32)))
    note = sign_note(cp.text(), origin, key)
    verifier = Verifier.parse(verifier_key(origin, public_bytes(key.public_key())))
    assert open_checkpoint(note, verifier) == cp
    assert note.splitlines()[1] == "20852163"
    with pytest.raises(NoteError):
        Checkpoint.parse("origin\n012\nAAAA\n")
