"""Duplicate handling: exact duplicates by content hash, near-duplicates by a dihedral perceptual hash.

The casting photographs (and verdict images) contain rotated and flipped copies of
the same part. If one copy trains and its twin sits in validation or the golden
set, the held-out figures are flattered. So images are grouped by an average hash
of a small grey version that is made invariant to the 8 rotations/flips: two images
are near-duplicates when some dihedral transform of one hash lies within a Hamming
threshold of the other's canonical hash. Groups (connected components) are then
assigned to splits whole.
"""
from __future__ import annotations

import hashlib

import cv2
import numpy as np

HASH_SIDE = 16  # 256-bit hash: 8x8 is too coarse to tell distinct impeller photos apart
#: Default Hamming threshold in bits (of 256). On the casting photographs, pairs within
#: 6 bits are the same part re-shot or re-augmented; from about 10 bits on they are different parts.
NEAR_BITS = 6


def content_hash(image: np.ndarray) -> str:
    """sha256 over the shape and the pixels (identical files decode to identical pixels)."""
    h = hashlib.sha256(f"{image.shape}|{image.dtype}".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def _dihedral(a: np.ndarray) -> list[np.ndarray]:
    out = []
    for k in range(4):
        r = np.rot90(a, k)
        out.append(r)
        out.append(r[:, ::-1])
    return out


def dihedral_hashes(image: np.ndarray) -> np.ndarray:
    """(8, HASH_SIDE**2 / 8) uint8: the packed average hash of each of the 8 rotations/flips."""
    small = cv2.resize(image, (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    # The median (not the mean) splits the bits evenly, which keeps distances meaningful on
    # images dominated by one grey level (a part on a plain background).
    bits = small > np.median(small)
    return np.stack([np.packbits(t.reshape(-1)) for t in _dihedral(bits)])


def canonical(hashes: np.ndarray) -> np.ndarray:
    """The lexicographically smallest of the 8 variants: equal for exact rotations/flips."""
    order = sorted(range(len(hashes)), key=lambda i: hashes[i].tobytes())
    return hashes[order[0]]


def group_near_duplicates(hashes: list[np.ndarray], max_bits: int = NEAR_BITS) -> list[int]:
    """Group id per image (connected components of "within max_bits under some transform")."""
    n = len(hashes)
    if n == 0:
        return []
    variants = np.stack(hashes)  # (n, 8, B)
    canon = np.stack([canonical(h) for h in hashes])  # (n, B)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n - 1):
        # Distance from every transform of image i to the canonical hash of each later image.
        d = np.bitwise_count(variants[i][:, None, :] ^ canon[None, i + 1:, :]).sum(axis=2, dtype=np.int32)
        for j in np.nonzero(d.min(axis=0) <= max_bits)[0]:
            a, b = find(i), find(i + 1 + int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = [find(i) for i in range(n)]
    ids: dict[int, int] = {}
    return [ids.setdefault(r, len(ids)) for r in roots]
