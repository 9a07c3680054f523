"""Related documents side by side (In-Context Pretraining, Shi et al. 2023): an order for packing.

Packed rows join documents end to end, so what precedes a document in its row is usually an
unrelated one. In-Context Pretraining orders the corpus so that neighbours are related, and the
model can learn to read across document boundaries: (1) find each document's nearest neighbours,
(2) walk a path through that graph that visits every document exactly once.

(1) Neighbours by BM25 (`bm25s`): each document's distinct words (English stopwords dropped) are
a query against all documents, and the top `k` others are its neighbours. BM25 rather than the
MinHash of `dedup.py`: MinHash of word 5-grams finds copies, while related documents (two scenes
of one play, two chats on one opening question) share rare words (names, topics) more than
5-grams, which is what BM25's IDF weighs. The paper uses dense retrieval; BM25 needs no model.
The cost is one query per document, O(n * postings): fine for the embedded corpora (4,400
documents in ~10 s), not for billions, where one would use approximate neighbours.

(2) Greedy paths: start at a document, step to its best-scoring unvisited neighbour (else a
neighbour's), and when there is none, start a new path at the next unvisited document of a seeded
permutation. Deterministic under the seed. The graph is made symmetric first (a document also
links to those that list it): k-NN lists point at hubs, and without the reverse links most paths
ended after one or two documents.

Copies of a text (a source repeated for several epochs) are ordered once: the first copy of each
text follows the path order, then the second copies in the same order, and so on, so a copy is
never its own neighbour (that would teach copying, not reading).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NEIGHBORS = 10  # k of the k-nearest-neighbour graph


def greedy_paths(neighbors: Sequence[Sequence[int]], seed: int = 0) -> list[list[int]]:
    """Paths that visit each node exactly once, following each node's first unvisited neighbour.

    `neighbors[i]`: node i's neighbours, best first. A path ends when its last node has no
    unvisited neighbour; the next starts at the next unvisited node of a seeded permutation.

    >>> greedy_paths([[1], [2], [0], []], seed=0)  # starts in permutation order 2, 0, 1, 3
    [[2, 0, 1], [3]]
    """
    n = len(neighbors)
    visited = np.zeros(n, dtype=bool)
    paths: list[list[int]] = []
    for start in np.random.default_rng(seed).permutation(n).tolist():
        if visited[start]:
            continue
        path, cur = [], start
        while cur is not None:
            visited[cur] = True
            path.append(cur)
            cur = _next_unvisited(neighbors, cur, visited)
        paths.append(path)
    return paths


def _next_unvisited(neighbors: Sequence[Sequence[int]], cur: int, visited: np.ndarray) -> int | None:
    """cur's first unvisited neighbour, else the first unvisited neighbour of its neighbours (in
    their order), else None. The second hop matters: a k-NN graph has hubs that paths pass early."""
    for j in neighbors[cur]:
        if not visited[j]:
            return j
    for j in neighbors[cur]:
        for i in neighbors[j]:
            if not visited[i]:
                return i
    return None


def symmetric(neighbors: Sequence[Sequence[int]]) -> list[list[int]]:
    """Each node's own neighbours, then the nodes that list it (by the rank they give it).

    A hub (listed by many) can then lead on to the documents that point at it; with k-NN lists
    alone, paths on the embedded corpora averaged 1.7 documents, with both and two hops ~280.

    >>> symmetric([[1], [2], [1]])
    [[1], [2, 0], [1]]
    """
    out = [list(n) for n in neighbors]
    seen = [set(n) for n in neighbors]
    for rank in range(max(map(len, neighbors), default=0)):
        for j, nbrs in enumerate(neighbors):
            if rank < len(nbrs) and j not in seen[nbrs[rank]] and nbrs[rank] != j:
                out[nbrs[rank]].append(j)
                seen[nbrs[rank]].add(j)
    return out


def bm25_neighbors(texts: Sequence[str], k: int = NEIGHBORS) -> list[list[int]]:
    """The `k` most BM25-similar other texts of each text, best first (fewer for wordless texts)."""
    import bm25s  # ~0.4 s (scipy): only when an order is computed

    words = bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)
    has_words = [i for i, w in enumerate(words) if w]
    out: list[list[int]] = [[] for _ in texts]
    if len(has_words) < 2:  # nothing to relate (and bm25s cannot index an empty vocabulary)
        return out
    retriever = bm25s.BM25()
    retriever.index(words, show_progress=False)
    take = min(k + 1, len(texts))  # +1: a text is usually its own best match
    queries = [sorted(set(words[i])) for i in has_words]
    ids, scores = retriever.retrieve(queries, k=take, show_progress=False, n_threads=1)
    for row, i in enumerate(has_words):
        out[i] = [int(j) for j, s in zip(ids[row], scores[row]) if j != i and s > 0][:k]
    return out


def related_paths(texts: Sequence[str], seed: int = 0, k: int = NEIGHBORS) -> list[list[int]]:
    """Indices of `texts` as greedy paths through their BM25 neighbour graph (see the module
    docstring); concatenated, the paths are a permutation of range(len(texts))."""
    first: dict[str, int] = {}  # text -> index of its unique slot
    slot_of = [first.setdefault(t, len(first)) for t in texts]
    unique = list(first)
    copies: list[list[int]] = [[] for _ in unique]  # unique slot -> its indices in `texts`
    for i, s in enumerate(slot_of):
        copies[s].append(i)
    paths = greedy_paths(symmetric(bm25_neighbors(unique, k)), seed)
    out = []
    for rep in range(max(map(len, copies), default=0)):  # each pass: one copy of each text
        for path in paths:
            part = [copies[s][rep] for s in path if rep < len(copies[s])]
            if part:
                out.append(part)
    return out


def related_order(texts: Sequence[str], seed: int = 0, k: int = NEIGHBORS) -> list[int]:
    """`related_paths` flattened: a permutation of range(len(texts))."""
    return [i for path in related_paths(texts, seed, k) for i in path]
