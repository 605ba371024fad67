"""NetworkX's order-defining algorithms, reproduced step for step over index lists.

Where an order is part of an answer (which cycle is the witness, which of several equally
long paths), the answer depends on the order an algorithm visits
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
