"""The 12-bit task of Shwartz-Ziv & Tishby (2017), regenerated from its description.

"12 binary inputs that represent 12 uniformly distributed points on a 2-sphere", the label
"Θ(f(X) − θ) with f a spherically symmetric real-valued function", θ set so the classes are
(about) balanced; all 4,096 patterns are used. The 12 points are the vertices of an
icosahedron; a function is invariant under the icosahedron's 60 rotations (indeed its 120
symmetries) when it depends only on how many inputs are on and on how many active pairs sit
at each of the three vertex distances (neighbours, second neighbours, antipodes). We use

    f(x) = n(x) - 0.2·A(x) + 0.35·P(x) + 0.05·S(x)

with n the number of active vertices, A/S/P the numbers of active neighbour/second-neighbour/
antipodal pairs. The weights are our own choice (the original f was not published); like the
original data the label rises with n, but not as a function of n alone.
"""

from __future__ import annotations

import itertools

import numpy as np

PHI = (1.0 + 5.0**0.5) / 2.0


def icosahedron_vertices() -> np.ndarray:
    """[12, 3] unit vectors: cyclic permutations of (0, ±1, ±φ)."""
    v = []
    for a, b in itertools.product((-1.0, 1.0), repeat=2):
        v += [(0.0, a, b * PHI), (a, b * PHI, 0.0), (b * PHI, 0.0, a)]
    v = np.array(v)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def rotation_permutations(vertices: np.ndarray | None = None) -> np.ndarray:
    """[60, 12] vertex permutations of the icosahedral rotation group (closure of two
    72° rotations about neighbouring vertices)."""
    v = icosahedron_vertices() if vertices is None else vertices
    nbr = int(np.argsort(-(v @ v[0]))[1])
    gens = []
    for axis in (v[0], v[nbr]):
        r = _rotation(axis, 2 * np.pi / 5)
        moved = v @ r.T
        gens.append(np.argmin(((moved[:, None, :] - v[None]) ** 2).sum(-1), axis=1))
    group = {tuple(range(len(v)))}
    frontier = list(group)
    while frontier:
        new = []
        for p in frontier:
            for g in gens:
                q = tuple(np.asarray(g)[list(p)])
                if q not in group:
                    group.add(q)
                    new.append(q)
        frontier = new
    return np.array(sorted(group))


def pair_counts(x: np.ndarray, vertices: np.ndarray | None = None) -> np.ndarray:
    """[n, 3] numbers of active (neighbour, second-neighbour, antipodal) pairs."""
    v = icosahedron_vertices() if vertices is None else vertices
    dots = np.round(v @ v.T, 6)
    out = []
    for level in (1 / 5**0.5, -1 / 5**0.5, -1.0):
        adj = np.isclose(dots, level).astype(float)
        out.append(np.einsum("ni,ij,nj->n", x, adj, x) / 2)
    return np.stack(out, axis=1)


def szt_12bit_task(weights=(1.0, -0.2, 0.05, 0.35)) -> tuple[np.ndarray, np.ndarray]:
    """All 4,096 patterns ``x`` [4096, 12] (float 0/1) and balanced labels ``y`` [4096] int.

    weights = (on-count, neighbour pairs, second-neighbour pairs, antipodal pairs).
    """
    x = np.array(list(itertools.product((0.0, 1.0), repeat=12)))
    feats = np.column_stack([x.sum(1), pair_counts(x)])
    f = np.round(feats @ np.asarray(weights, dtype=float), 9)
    # threshold between distinct values of f so the classes are as balanced as possible
    vals = np.unique(f)
    fracs = np.array([(f > t).mean() for t in vals])
    theta = vals[int(np.argmin(np.abs(fracs - 0.5)))]
    return x, (f > theta).astype(np.int64)
