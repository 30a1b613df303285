"""RFC 9162 hashing and proofs against the vectors of github.com/transparency-dev/merkle
(testonly/constants.go and proof/verify_test.go at v0.0.2; their leaf indexes are 1-based)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    ProofError,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex
LEAF_INPUTS = [
    h(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    EMPTY_ROOT,
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
INCLUSION = [  # (1-based leaf, size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


@pytest.fixture
def tree() -> MerkleTree:
    return MerkleTree(leaf_hash(x) for x in LEAF_INPUTS)


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert MerkleTree().root() == hashlib.sha256(b"").digest() == ROOTS[0]


def test_roots_at_every_size(tree: MerkleTree) -> None:
    for size, expected in enumerate(ROOTS):
        assert tree.root(size) == expected
        assert root_of(tree.leaf(i) for i in range(size)) == expected


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION)
def test_inclusion_vectors(tree: MerkleTree, leaf: int, size: int, proof: list[str]) -> None:
    expected = [h(p) for p in proof]
    assert tree.inclusion_proof(leaf - 1, size) == expected
    assert verify_inclusion(leaf - 1, size, tree.leaf(leaf - 1), expected, ROOTS[size])
    assert not verify_inclusion(leaf, size, tree.leaf(leaf - 1), expected, ROOTS[size])
    if expected:
        bad = [*expected[:-1], bytes(32)]
        assert not verify_inclusion(leaf - 1, size, tree.leaf(leaf - 1), bad, ROOTS[size])


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_consistency_vectors(tree: MerkleTree, first: int, second: int, proof: list[str]) -> None:
    expected = [h(p) for p in proof]
    assert tree.consistency_proof(first, second) == expected
    assert verify_consistency(first, second, ROOTS[first], ROOTS[second], expected)
    assert not verify_consistency(first, second, ROOTS[first], ROOTS[second - 1], expected)


def test_out_of_range_proofs_are_refused(tree: MerkleTree) -> None:
    with pytest.raises(ProofError):
        tree.inclusion_proof(8, 8)
    with pytest.raises(ProofError):
        tree.consistency_proof(0, 4)
    with pytest.raises(ProofError):
        tree.consistency_proof(3, 9)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_every_proof_verifies(n: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    tree = MerkleTree(leaves)
    compact = CompactRange()
    for leaf in leaves:
        compact.append(leaf)
    assert compact.root() == tree.root()
    size = data.draw(st.integers(min_value=1, max_value=n))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    root = tree.root(size)
    assert verify_inclusion(index, size, leaves[index], tree.inclusion_proof(index, size), root)
    first = data.draw(st.integers(min_value=1, max_value=size))
    proof = tree.consistency_proof(first, size)
    assert verify_consistency(first, size, tree.root(first), root, proof)
