"""graph_runtime's loops in machine code (Numba): Brandes betweenness, closeness, Louvain.

Why these three are written here rather than taken from a library:
- Betweenness and closeness: rustworkx (like NetworkX) sets up O(V) state for every source,
  so on a 50,000-node DAG, where a source reaches few nodes, that set-up is the cost: 6.2 s
  for betweenness on two threads. Here a source resets only what it reached: 0.6 s on one
  (`benchmarks/graph_scaling.py`). Both are NetworkX's unweighted definitions (BFS paths;
  closeness over incoming distances, Wasserman-Faust scaled); floats agree to 1e-12.
- Louvain: `nx.community.louvain_communities(g.to_undirected(), weight="weight", seed=42)`
  is a sequence of local moves whose every tie and float matters to the answer, so no other
  library's Louvain gives NetworkX's partition. `louvain` replays it: the same copies of the
  graph (each fixes the adjacency order later levels visit), the same visiting order (the
  same `random.Random` shuffles), the same float operations in the same order. In CPython
  its inner loop costs ~1.5 us a neighbour visit and a 50,000-node graph makes ~120 million
  of them (284 s, measured); compiled, and skipping the visits that cannot change anything
  (see `_one_level`), it takes ~2 s.

Every function is plain Python that Numba can compile. `kernels(compiled=False)` gives them
as they are, for analyses small enough to run inline on an event loop; `kernels(True)`
compiles them, which costs importing Numba (~0.5 s and ~100 MB of LLVM in the process) and
loading the machine code from its cache (~0.7 s; ~6 s to compile it the first time on this
machine), once per process, so only a pool worker that meets a large graph pays it. The
cache lives in NUMBA_CACHE_DIR, by default a directory of the system's temporary one: the
package may sit on a read-only file system (the images run with a read-only root and a
/tmp tmpfs).

An undirected adjacency for Louvain is CSR: row u lists u's neighbours in NetworkX's order
(first insertion of the edge into u's dict), `weights` the edge weights. Modularity is used
only for the stopping test against a 1e-7 threshold and may differ from NetworkX's in the
last bits (another summation order); everything else is exact.
"""

from __future__ import annotations

import os
import random
import tempfile
from types import SimpleNamespace
from typing import Any

import numpy as np


def _degrees(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted degrees as NetworkX sums them: in adjacency order, a self-loop twice."""
    k = len(indptr) - 1
    out = np.zeros(k)
    for u in range(k):
        total = 0.0
        loop = 0.0
        for j in range(indptr[u], indptr[u + 1]):
            total += weights[j]
            if indices[j] == u:
                loop = weights[j]
        out[u] = total + loop
    return out


# One function, not several: Numba compiles each function apart, and a compiled caller can
# call only compiled callees, which the plain-Python mode would not have.
def _one_level(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray,  # noqa: C901
               degrees: np.ndarray, order: np.ndarray, m: float) -> tuple[np.ndarray, bool]:
    """One level of moves (`louvain._one_level`); (community of each node, improved).

    `_neighbor_weights` is a dict in first-appearance order of the neighbours' communities,
    and the node's own community, looked up through a defaultdict, is appended last when no
    neighbour is in it: `coms` keeps that order, `stamp` marks who is in it this visit.

    Skipping what cannot change (exact): a node's move depends only on its neighbours'
    communities and the totals (`stot`) of its candidate communities. Whenever a total
    changes, every node that has that community as a candidate (its members and their
    neighbours) is marked dirty; a clean node's inputs are those of its last visit, which
    did not move it, so visiting it again would not either, and only its one float side
    effect is replayed: NetworkX's `Stot[c] -= degree; ...; Stot[c] += degree`, which with
    fractional weights may change the total's last bit (and then marks as any change
    does). NetworkX sweeps all nodes until a sweep moves none (~300 sweeps at 50,000 nodes);
    late sweeps here visit the few dirty nodes only.
    """
    k = len(indptr) - 1
    stot = degrees.copy()
    node2com = np.arange(k)
    acc = np.zeros(k)
    stamp = np.full(k, -1, dtype=np.int64)
    coms = np.zeros(k, dtype=np.int64)
    # Members of each community as linked lists, and their adjacency entries in all: what
    # marking a changed total costs. Past an eighth of the graph, everything is marked.
    head = np.arange(k)
    nxt = np.full(k, -1, dtype=np.int64)
    prv = np.full(k, -1, dtype=np.int64)
    reach = indptr[1:] - indptr[:-1]
    dirty = np.ones(k, dtype=np.bool_)
    mark_all = indptr[k] // 8
    two_m2 = 2 * m**2
    improved = False
    moves = 1
    visit = 0
    while moves > 0:
        moves = 0
        for u in order:
            own = node2com[u]
            degree = degrees[u]
            before = stot[own]
            if not dirty[u]:
                stot[own] = (before - degree) + degree
                changed = stot[own] != before
                best_com = own
            else:
                dirty[u] = False
                visit += 1
                best_com = own
                best_mod = 0.0
                count = 0
                for j in range(indptr[u], indptr[u + 1]):
                    v = indices[j]
                    if v == u:
                        continue
                    c = node2com[v]
                    if stamp[c] != visit:
                        stamp[c] = visit
                        acc[c] = 0.0
                        coms[count] = c
                        count += 1
                    acc[c] += weights[j]
                stot[own] -= degree
                if stamp[own] != visit:
                    stamp[own] = visit
                    acc[own] = 0.0
                    coms[count] = own
                    count += 1
                remove_cost = -acc[own] / m + (stot[own] * degree) / two_m2
                for i in range(count):
                    c = coms[i]
                    gain = remove_cost + acc[c] / m - (stot[c] * degree) / two_m2
                    if gain > best_mod:
                        best_mod = gain
                        best_com = c
                stot[best_com] += degree
                changed = best_com != own or stot[own] != before
            if best_com != own:
                node2com[u] = best_com
                improved = True
                moves += 1
                if prv[u] >= 0:  # unlink u from own's members, link it first in best_com's
                    nxt[prv[u]] = nxt[u]
                else:
                    head[own] = nxt[u]
                if nxt[u] >= 0:
                    prv[nxt[u]] = prv[u]
                prv[u] = -1
                nxt[u] = head[best_com]
                if head[best_com] >= 0:
                    prv[head[best_com]] = u
                head[best_com] = u
                reach[own] -= indptr[u + 1] - indptr[u]
                reach[best_com] += indptr[u + 1] - indptr[u]
            if not changed:
                continue
            if reach[own] + reach[best_com] > mark_all:
                dirty[:] = True
                continue
            for side in range(2):
                c = own if side == 0 else best_com
                if side == 1 and c == own:
                    break
                y = head[c]
                while y >= 0:
                    dirty[y] = True
                    for j in range(indptr[y], indptr[y + 1]):
                        dirty[indices[j]] = True
                    y = nxt[y]
    return node2com, improved


def _modularity(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray,
                degree: np.ndarray, labels: np.ndarray, communities: int) -> float:
    """`nx.community.modularity` of the partition `labels` (community of each node)."""
    deg_sum = 0.0
    for d in degree:
        deg_sum += d
    m = deg_sum / 2
    norm = 1 / deg_sum**2
    inside = np.zeros(communities)
    out = np.zeros(communities)
    for u in range(len(indptr) - 1):
        c = labels[u]
        out[c] += degree[u]
        for j in range(indptr[u], indptr[u + 1]):
            v = indices[j]
            if v >= u and labels[v] == c:
                inside[c] += weights[j]
    total = 0.0
    for c in range(communities):
        total += inside[c] / m - out[c] * out[c] * norm
    return total


def _betweenness(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Brandes' unnormalised betweenness over successor CSR (unweighted shortest paths).

    The dependency of v on one source is accumulated from v's successors one BFS level
    further (the predecessor lists of NetworkX, read the other way round), in reverse BFS
    order, so no per-source lists are built."""
    n = len(indptr) - 1
    total = np.zeros(n)
    dist = np.full(n, -1, dtype=np.int64)
    sigma = np.zeros(n)
    delta = np.zeros(n)
    queue = np.zeros(n, dtype=np.int64)
    for s in range(n):
        dist[s] = 0
        sigma[s] = 1.0
        queue[0] = s
        head = 0
        tail = 1
        while head < tail:
            v = queue[head]
            head += 1
            next_level = dist[v] + 1
            for j in range(indptr[v], indptr[v + 1]):
                w = indices[j]
                if dist[w] < 0:
                    dist[w] = next_level
                    queue[tail] = w
                    tail += 1
                if dist[w] == next_level:
                    sigma[w] += sigma[v]
        for i in range(tail - 1, -1, -1):
            v = queue[i]
            next_level = dist[v] + 1
            share = 0.0
            for j in range(indptr[v], indptr[v + 1]):
                w = indices[j]
                if dist[w] == next_level:
                    share += (1.0 + delta[w]) / sigma[w]
            delta[v] = sigma[v] * share
            if v != s:
                total[v] += delta[v]
        for i in range(tail):  # reset only what this source reached
            v = queue[i]
            dist[v] = -1
            sigma[v] = 0.0
            delta[v] = 0.0
    return total


def _closeness(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """`nx.closeness_centrality` (wf_improved): BFS over predecessor CSR, so distances are
    incoming ones, as NetworkX takes them on a directed graph."""
    n = len(indptr) - 1
    out = np.zeros(n)
    dist = np.full(n, -1, dtype=np.int64)
    queue = np.zeros(n, dtype=np.int64)
    for s in range(n):
        dist[s] = 0
        queue[0] = s
        head = 0
        tail = 1
        total = 0
        while head < tail:
            v = queue[head]
            head += 1
            total += dist[v]
            for j in range(indptr[v], indptr[v + 1]):
                w = indices[j]
                if dist[w] < 0:
                    dist[w] = dist[v] + 1
                    queue[tail] = w
                    tail += 1
        if total > 0 and n > 1:
            value = (tail - 1.0) / total
            out[s] = value * ((tail - 1.0) / (n - 1))
        for i in range(tail):
            dist[queue[i]] = -1
    return out


_FUNCTIONS = {"degrees": _degrees, "one_level": _one_level, "modularity": _modularity,
              "betweenness": _betweenness, "closeness": _closeness}
_KERNELS: dict[bool, SimpleNamespace] = {False: SimpleNamespace(**_FUNCTIONS)}


def kernels(compiled: bool) -> SimpleNamespace:
    """The functions, as plain Python or compiled (on first need in this process)."""
    if compiled not in _KERNELS:
        os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(
            tempfile.gettempdir(), f"bem-numba-{os.getuid()}"))
        import numba  # only in a process that analyses a large graph: see the module doc

        jit = numba.njit(cache=True, nogil=True)
        _KERNELS[True] = SimpleNamespace(**{k: jit(f) for k, f in _FUNCTIONS.items()})
    return _KERNELS[compiled]


def adjacency(a: np.ndarray, b: np.ndarray, w: np.ndarray, n: int, summed: bool
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CSR of an undirected graph built by `add_edge(a[t], b[t], weight=...)` in stream
    order t: each row lists its neighbours in first-insertion order (row a gets b, then
    row b gets a); a pair's weight is its last `w` (`summed=False`, as `to_undirected`
    overwrites) or the sum of its `w` in stream order (`summed=True`, as `_gen_graph`
    accumulates; `np.bincount` adds sequentially, in input order)."""
    t = np.arange(len(a), dtype=np.int64)
    apart = a != b
    rows = np.concatenate((a, b[apart]))
    cols = np.concatenate((b, a[apart]))
    seq = np.concatenate((2 * t, 2 * t[apart] + 1))
    by_key = np.lexsort((seq, rows * n + cols))
    key = (rows * n + cols)[by_key]
    first = by_key[np.r_[True, key[1:] != key[:-1]]]
    first = first[np.lexsort((seq[first], rows[first]))]
    rows, cols = rows[first], cols[first]
    pair = np.minimum(a, b) * n + np.maximum(a, b)
    pairs, inverse = np.unique(pair, return_inverse=True)
    if summed:
        pair_w = np.bincount(inverse, weights=w, minlength=len(pairs))
    else:
        last = np.zeros(len(pairs), dtype=np.int64)
        last[inverse] = t  # fancy assignment keeps the last write of each index
        pair_w = w[last]
    weights = pair_w[np.searchsorted(pairs, np.minimum(rows, cols) * n + np.maximum(rows, cols))]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols.astype(np.int64), weights.astype(np.float64)


def _edges(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`nx.Graph.edges(data=...)`: each edge once, from its first node in node order (the
    entries of row u whose neighbour is not an earlier row)."""
    rows = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    keep = indices >= rows
    return rows[keep], indices[keep], weights[keep]


def louvain(succ: Any, compiled: bool, seed: int = 42, threshold: float = 1e-7
            ) -> list[np.ndarray]:
    """The partition NetworkX's Louvain finds, as arrays of node indices. `succ`: the
    directed adjacency as CSR (`kernels.CSR`: indptr, indices, weights), rows in
    NetworkX's adjacency order."""
    n = len(succ.indptr) - 1
    if len(succ.indices) == 0:
        return [np.array([u]) for u in range(n)]
    a = np.repeat(np.arange(n, dtype=np.int64), np.diff(succ.indptr))
    b, w = succ.indices.astype(np.int64), succ.weights.astype(np.float64)
    # DiGraph.to_undirected, then louvain_partitions' own copy (add_weighted_edges_from).
    undirected = adjacency(a, b, w, n, summed=False)
    adj = adjacency(*_edges(*undirected), n, summed=False)
    k = kernels(compiled)
    degrees, one_level, modularity = k.degrees, k.one_level, k.modularity
    rng = random.Random(seed)
    mod = modularity(*undirected, degrees(*undirected), np.arange(n), n)
    m = float(sum(degrees(*adj).tolist())) / 2  # graph.size(): summed in node order
    member = np.arange(n)  # original node -> node of the current level's graph

    def level(graph: tuple[np.ndarray, ...]) -> tuple[np.ndarray, int, bool]:
        order = list(range(len(graph[0]) - 1))
        rng.shuffle(order)  # the same draws as shuffling NetworkX's node list of this length
        node2com, improved = one_level(*graph, degrees(*graph),
                                       np.array(order, dtype=np.int64), m)
        # Communities keep their index order (`filter(len, partition)`): relabel 0..c-1.
        used, labels = np.unique(node2com, return_inverse=True)
        return labels.ravel().astype(np.int64), len(used), improved

    labels, communities, improved = level(adj)
    best = labels[member]
    while improved:
        best = labels[member]
        new_mod = modularity(*adj, degrees(*adj), labels, communities)
        if new_mod - mod <= threshold:
            break
        mod = new_mod
        u, v, x = _edges(*adj)  # _gen_graph: the community graph, weights summed in order
        adj = adjacency(labels[u], labels[v], x, communities, summed=True)
        member = labels[member]
        labels, communities, improved = level(adj)
    order = np.argsort(best, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(best[order])) + 1)
