"""NetworkX's order-defining algorithms, reproduced step for step over index lists.

Where an order is part of an answer (which cycle is the witness, which of several equally
long paths, which Louvain partition), the answer depends on the order an algorithm visits
nodes and edges in, and a compiled kernel visits them in its own. These functions replay
NetworkX 3.x exactly (same visiting order, same float operations in the same order, same
random draws), over the adjacency of `kernels.Prepared`: node i is the i-th node of the
graph, and `succ[u]` lists u's successors in NetworkX's adjacency order (first appearance of
the edge). They are plain Python, linear or near-linear, and skip the NetworkX graph (which
costs more to build at 50,000 nodes than these take to run) and its one quadratic step
(`find_cycle` re-walks explored nodes from every unexplored start: 43 s on a 50,000-node
DAG; here the explored part is skipped, which changes no step that matters, see below).

tests/services/graph_runtime/test_kernels.py checks every function against NetworkX on
seeded graphs of several shapes, including ties.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from heapq import heappop, heappush
from itertools import count


def find_cycle(succ: Sequence[Sequence[int]]) -> list[int] | None:
    """`nx.find_cycle(g, orientation="original")` as a closed node list, or None.

    NetworkX runs `edge_dfs` from each start node in node order and ignores every edge into
    a node explored by an earlier start. Nodes reachable from an explored node are explored
    (an earlier walk covered them and found no cycle), so the walk below such an edge only
    yields further ignored edges: this version does not take it. `edge_dfs` keeps one edge
    iterator per node for the whole walk (a node reached again resumes its iterator), and
    so does this.
    """
    explored: set[int] = set()
    for start in range(len(succ)):
        if start in explored:
            continue
        found = _walk(succ, start, explored)
        if found is not None:
            return found
    return None


def _walk(succ: Sequence[Sequence[int]], start: int, explored: set[int]) -> list[int] | None:
    position: dict[int, int] = {}  # node -> next index into succ[node] (edge_dfs' iterator)
    stack = [start]
    seen = {start}
    path: list[tuple[int, int]] = []  # find_cycle's `edges`: the active path
    active = {start}
    previous_head: int | None = None
    while stack:
        node = stack[-1]
        i = position.get(node, 0)
        if i == len(succ[node]):
            stack.pop()
            continue
        position[node] = i + 1
        head = succ[node][i]
        if head in explored:
            continue  # ignored by find_cycle; see the docstring for why its walk is skipped
        stack.append(head)  # edge_dfs yields (node, head); every edge once per walk
        if previous_head is not None and node != previous_head:
            _backtrack(path, active, node)
        path.append((node, head))
        if head in active:
            first = next(k for k, (tail, _) in enumerate(path) if tail == head)
            return [head, *(h for _, h in path[first:])]
        seen.add(head)
        active.add(head)
        previous_head = head
    explored.update(seen)
    return None


def _backtrack(path: list[tuple[int, int]], active: set[int], tail: int) -> None:
    """Pop the active path back to the edge whose head is `tail` (find_cycle's loop)."""
    while True:
        if not path:
            active.clear()
            active.add(tail)
            return
        active.discard(path.pop()[1])
        if path and path[-1][1] == tail:
            return


def dag_longest_path(pred: Sequence[Sequence[int]], pred_w: Sequence[Sequence[float]],
                     order: Sequence[int]) -> list[int]:
    """`nx.dag_longest_path(g, weight="weight", topo_order=order)`.

    For each node the best predecessor is the first of the heaviest in NetworkX's
    predecessor order (`max` keeps the first maximum); the path ends at the first node of
    `order` with the greatest distance.
    """
    dist = [0.0] * len(pred)
    back = list(range(len(pred)))
    for v in order:
        best, arg = 0.0, v
        first = True
        for u, w in zip(pred[v], pred_w[v], strict=True):
            d = dist[u] + w
            if first or d > best:
                best, arg, first = d, u, False
        if best >= 0:
            dist[v], back[v] = best, arg
    end = max(order, key=dist.__getitem__) if order else None
    path: list[int] = []
    v = end
    while v is not None:
        path.append(v)
        v = None if back[v] == v else back[v]
    path.reverse()
    return path


def dijkstra(succ: Sequence[Sequence[int]], succ_w: Sequence[Sequence[float]], source: int,
             target: int) -> tuple[float, list[int]] | None:
    """`nx.single_source_dijkstra(g, source, target, weight="weight")`, or None (no path).

    The heap orders by (distance, push count); a node's path runs through the predecessor
    that last strictly shortened its tentative distance.
    """
    if source == target:
        return 0.0, [source]
    dist: dict[int, float] = {}
    seen = {source: 0.0}
    back: dict[int, int] = {}
    c = count()
    fringe: list[tuple[float, int, int]] = [(0.0, next(c), source)]
    while fringe:
        d, _, v = heappop(fringe)
        if v in dist:
            continue
        dist[v] = d
        if v == target:
            break
        for u, w in zip(succ[v], succ_w[v], strict=True):
            vu = d + w
            if u not in dist and (u not in seen or vu < seen[u]):
                seen[u] = vu
                heappush(fringe, (vu, next(c), u))
                back[u] = v
    if target not in dist:
        return None
    path = [target]
    while path[-1] != source:
        path.append(back[path[-1]])
    path.reverse()
    return dist[target], path


# --- Louvain ---------------------------------------------------------------------------------
# `nx.community.louvain_communities(g.to_undirected(), weight="weight", seed=42)`. NetworkX
# copies the graph twice before the first level (to_undirected, then louvain_partitions' own
# copy), and each copy fixes the adjacency order the later levels visit; both are replayed.
# An undirected adjacency is a list of {neighbour: weight} dicts: a dict keeps insertion
# order, as NetworkX's adjacency does. Modularity, used only for the stopping test against
# a threshold of 1e-7, may differ from NetworkX's in the last bits (another summation order).
Adjacency = list[dict[int, float]]


def louvain(succ: Sequence[Sequence[int]], succ_w: Sequence[Sequence[float]],
            seed: int = 42, threshold: float = 1e-7) -> list[set[int]]:
    """The partition NetworkX's Louvain finds, as sets of node indices."""
    n = len(succ)
    undirected: Adjacency = [{} for _ in range(n)]
    for u in range(n):  # DiGraph.to_undirected: a reciprocal edge keeps the later weight
        for v, w in zip(succ[u], succ_w[u], strict=True):
            undirected[u][v] = w
            undirected[v][u] = w
    if not any(undirected):
        return [{u} for u in range(n)]
    adj: Adjacency = [{} for _ in range(n)]
    for u, v, w in _edges(undirected):  # louvain_partitions' copy: add_weighted_edges_from
        adj[u][v] = w
        adj[v][u] = w
    rng = random.Random(seed)
    mod = _modularity(undirected, [[u] for u in range(n)])
    m = sum(_degrees(adj)) / 2
    partition, inner, improved = _one_level(adj, [[u] for u in range(n)], m, rng)
    best = partition
    while improved:
        best = partition
        new_mod = _modularity(adj, inner)
        if new_mod - mod <= threshold:
            break
        mod = new_mod
        adj = _gen_graph(adj, inner)
        partition, inner, improved = _one_level(adj, partition, m, rng)
    return [set(p) for p in best]


def _edges(adj: Adjacency) -> list[tuple[int, int, float]]:
    """nx.Graph.edges(data=...): each edge once, from its first node in node order."""
    done = [False] * len(adj)
    out = []
    for u, nbrs in enumerate(adj):
        out.extend((u, v, w) for v, w in nbrs.items() if not done[v])
        done[u] = True
    return out


def _degrees(adj: Adjacency) -> list[float]:
    """Weighted degrees as NetworkX sums them (a self-loop counts twice)."""
    return [sum(nbrs.values()) + nbrs[u] if u in nbrs else sum(nbrs.values())
            for u, nbrs in enumerate(adj)]


def _modularity(adj: Adjacency, communities: Sequence[Sequence[int]]) -> float:
    degree = _degrees(adj)
    deg_sum = sum(degree)
    m, norm = deg_sum / 2, 1 / deg_sum**2
    total = 0.0
    for community in communities:
        members = set(community)
        inside = sum(w for u in community for v, w in adj[u].items()
                     if v in members and v >= u)
        out = sum(degree[u] for u in community)
        total += inside / m - out * out * norm
    return total


def _one_level(adj: Adjacency, partition: Sequence[Sequence[int]], m: float,
               rng: random.Random) -> tuple[list[list[int]], list[list[int]], bool]:
    """One level of moves; (partition of original nodes, of this level's nodes, improved)."""
    k = len(adj)
    node2com = list(range(k))
    degrees = _degrees(adj)
    stot = list(degrees)
    nbrs = [[(v, w) for v, w in adj[u].items() if v != u] for u in range(k)]
    order = list(range(k))
    rng.shuffle(order)  # the same draws as shuffling NetworkX's node list of this length
    two_m2 = 2 * m**2
    improved, moves = False, 1
    while moves:
        moves = 0
        for u in order:
            best_mod, best_com = 0, node2com[u]
            weights: dict[int, float] = {}  # _neighbor_weights: first-appearance order
            for v, w in nbrs[u]:
                c = node2com[v]
                weights[c] = weights.get(c, 0.0) + w
            degree = degrees[u]
            stot[best_com] -= degree
            if best_com not in weights:  # NetworkX's defaultdict lookup appends it last
                weights[best_com] = 0.0
            remove_cost = -weights[best_com] / m + (stot[best_com] * degree) / two_m2
            for c, w in weights.items():
                gain = remove_cost + w / m - (stot[c] * degree) / two_m2
                if gain > best_mod:
                    best_mod, best_com = gain, c
            stot[best_com] += degree
            if best_com != node2com[u]:
                node2com[u] = best_com
                improved = True
                moves += 1
    groups: list[list[int]] = [[] for _ in range(k)]
    for u in range(k):
        groups[node2com[u]].append(u)
    inner = [g for g in groups if g]
    return [[x for u in g for x in partition[u]] for g in inner], inner, improved


def _gen_graph(adj: Adjacency, inner: Sequence[Sequence[int]]) -> Adjacency:
    """The graph of communities: an edge's weight accumulates in NetworkX's edge order."""
    node2com = [0] * len(adj)
    for i, part in enumerate(inner):
        for u in part:
            node2com[u] = i
    out: Adjacency = [{} for _ in inner]
    for u, v, w in _edges(adj):
        a, b = node2com[u], node2com[v]
        total = w + out[a].get(b, 0)
        out[a][b] = total
        out[b][a] = total
    return out
