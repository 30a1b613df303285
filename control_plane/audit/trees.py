"""Each log's Merkle tree, cached per process and extended from the stored leaf hashes: what
proofs (``reading``) and checkpoints (``worker``) are computed from."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit import repository
from control_plane.audit.merkle import MerkleTree


class LogTrees:
    """This process's cache of each log's Merkle tree, extended from the stored leaf hashes.

    Leaves are append-only, so a cached prefix never goes stale; each process extends its own
    copy from the database when asked for a size it has not seen.
    """

    def __init__(self) -> None:
        self._trees: dict[str, MerkleTree] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def get(self, session: AsyncSession, domain: str, size: int | None = None) -> MerkleTree:
        """The tree of ``domain`` holding at least ``size`` leaves when stored (default: all)."""
        async with self._locks[domain]:
            tree = self._trees.setdefault(domain, MerkleTree())
            if size is not None and tree.size >= size:
                return tree
            while True:
                rows = await repository.leaf_hashes(session, domain, tree.size, 50_000)
                for seq, value in rows:
                    if seq != tree.size:  # a gap: the log is damaged; verify reports it
                        return tree
                    tree.append(value)
                if len(rows) < 50_000:
                    return tree
