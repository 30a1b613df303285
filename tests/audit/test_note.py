"""Signed notes and checkpoints against the worked example of golang.org/x/mod/sumdb/note."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_plane.audit import jcs
from control_plane.audit.log import leaf_canonical
from control_plane.audit.merkle import leaf_hash
from control_plane.audit.note import (
    Checkpoint,
    NoteError,
    Verifier,
    b64,
    open_checkpoint,
    open_note,
    public_bytes,
    sign_note,
    unb64,
    verifier_key,
)
from control_plane.audit.offline import verify_export

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


def test_an_export_checked_against_another_logs_checkpoint_is_named_so() -> None:
    """A payments export against the claims checkpoint is a mix-up, not tampering: said so,
    rather than 'a leaf was rewritten' or 'truncated'."""
    record = {"id": "r-1", "domain": "payments", "action": "payments.refund"}
    hashed = leaf_hash(leaf_canonical(0, jcs.dumps(record)))
    line = json.dumps({"index": 0, "leaf_hash": b64(hashed), "record": record})
    private = Ed25519PrivateKey.generate()
    for origin, mixed_up in (("cp.test/audit/claims", True), ("cp.test/audit/payments", False)):
        note = sign_note(Checkpoint(origin, 1, hashed).text(), origin, private)
        key = verifier_key(origin, public_bytes(private.public_key()))
        status = verify_export([line], note, key)
        if mixed_up:
            assert status.first_bad_index is None
            assert "not the same log" in (status.reason or "")
        else:
            assert (status.first_bad_index, status.reason) == (None, None), status
