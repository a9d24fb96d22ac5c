"""A run's edges as in-memory adjacency (pure: an edge table in, row positions out), for answers a live explorer
gives many times: a feature's strongest edges each way (the library query `neighbours`) and the strongest
cross-layer 2-step paths (`cross_layer_paths`), with the queries' filters, order and ties. The stores stay the
reference: tests/test_serve.py checks both answers against the embedded store's queries.

Built once (sorting the edges twice, O(E log E)); each answer then reads only the edges it needs:
- `neighbours`: each feature's out- and in-edges lie contiguous (CSR), already in the query's order
  (|weight| descending, then layer, head, circuit, the other end's id), so the answer is the first `limit`
  of a slice that pass the filters.
- `paths`: a path v -OV(layer L)-> o -(any circuit, layer L + 1)-> d is bounded by |w1| · (o's strongest edge out
  of layer L + 1). The first edges are taken in bound order until the `limit`-th best product found exceeds
  every bound left (those paths cannot place), then the candidates are ordered as the query orders them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CIRCUIT_ORDER = ("OV", "QK")  # as strings sort: the queries' ORDER BY circuit


class Adjacency:
    """Adjacency over `edges` (columns layer, head, circuit, src, dst, weight; E rows). Answers are positions
    into `edges` (int64 arrays), so the caller reads whatever columns it needs from its own table."""

    def __init__(self, edges: pd.DataFrame):
        n = len(edges)
        self.n = n
        codes, ids = pd.factorize(pd.concat([edges["src"], edges["dst"]], ignore_index=True), sort=True)
        self.ids = pd.Index(ids)  # feature ids in string order: a code's order is its id's order
        self.ids.get_indexer(self.ids[:1])  # its hash table, built now
        codes = codes.astype("int64")
        self.src = codes[:n]
        self.dst = codes[n:]
        self.weight = edges["weight"].to_numpy(dtype="float64")
        self.absw = np.abs(self.weight)
        self.layer = edges["layer"].to_numpy(dtype="int64")
        self.head = edges["head"].to_numpy(dtype="int64")
        circuit = edges["circuit"].astype(str).to_numpy()
        self.circuit = np.full(n, len(CIRCUIT_ORDER), dtype="int64")
        for i, c in enumerate(CIRCUIT_ORDER):
            self.circuit[circuit == c] = i
        self.rank = edges["rank"].to_numpy(dtype="int64") if "rank" in edges.columns else None
        m = len(ids)
        # out-edges by src, in the query's order; in-edges by dst likewise
        self.out_order = np.lexsort((self.dst, self.circuit, self.head, self.layer, -self.absw, self.src))
        self.out_ptr = np.searchsorted(self.src[self.out_order], np.arange(m + 1))
        self.in_order = np.lexsort((self.src, self.circuit, self.head, self.layer, -self.absw, self.dst))
        self.in_ptr = np.searchsorted(self.dst[self.in_order], np.arange(m + 1))
        # out-edges by (src, layer): the second steps of paths
        self.lmin = int(self.layer.min()) if n else 0
        self.span = (int(self.layer.max()) - self.lmin + 2) if n else 2
        key = self.src.astype("int64") * self.span + (self.layer - self.lmin)
        self.by_key = np.argsort(key, kind="stable")
        sk = key[self.by_key]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]]) if n else np.zeros(0, dtype="int64")
        self.keys = sk[starts]
        self.key_start = starts
        self.key_end = np.r_[starts[1:], n].astype("int64")
        self.key_max = np.maximum.reduceat(self.absw[self.by_key], starts) if n else np.zeros(0)

    def neighbours(self, feature: str, limit: int, only_layer: int = -1, only_head: int = -1, only_circuit: str = "*",
                   sign: int = 0, min_weight: float = 0.0, max_rank: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(out, in): positions of `feature`'s `limit` strongest out-edges and in-edges passing the filters, in the
        order of the library query `neighbours` (its parameters, the same meaning)."""
        c = self.code(feature)
        if c < 0:
            return np.zeros(0, dtype="int64"), np.zeros(0, dtype="int64")
        parts = []
        for order, ptr in ((self.out_order, self.out_ptr), (self.in_order, self.in_ptr)):
            pos = order[ptr[c]:ptr[c + 1]]
            keep = self.absw[pos] >= float(min_weight)
            if only_layer != -1:
                keep &= self.layer[pos] == int(only_layer)
            if only_head != -1:
                keep &= self.head[pos] == int(only_head)
            if only_circuit != "*":
                keep &= self.circuit[pos] == (CIRCUIT_ORDER.index(only_circuit) if only_circuit in CIRCUIT_ORDER else -1)
            if sign:
                keep &= self.weight[pos] * int(sign) > 0
            if max_rank and self.rank is not None:
                keep &= self.rank[pos] <= int(max_rank)
            parts.append(pos[keep][:limit].astype("int64"))
        return parts[0], parts[1]

    def code(self, feature: str) -> int:
        """`feature`'s code (-1: no edge of this table has it)."""
        return int(self.ids.get_indexer([feature])[0])

    def strongest(self, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(out, in): for each of `features`, the position of its strongest out-edge and in-edge by |weight| (the
        first in the table among equals; -1 where it has none)."""
        codes = self.ids.get_indexer(features) if len(features) else np.zeros(0, dtype="int64")
        found = []
        for order, ptr in ((self.out_order, self.out_ptr), (self.in_order, self.in_ptr)):
            best = np.full(len(codes), -1, dtype="int64")
            for i, c in enumerate(codes):
                if c < 0 or ptr[c] == ptr[c + 1]:
                    continue
                pos = order[ptr[c]:ptr[c + 1]]  # strongest first
                a = self.absw[pos]
                best[i] = int(pos[:int(np.searchsorted(-a, -a[0], side="right"))].min())
            found.append(best)
        return found[0], found[1]

    def heads(self) -> dict[tuple[int, int, str], np.ndarray]:
        """{(layer, head, circuit): the positions of its edges, in table order}."""
        key = (self.layer - self.lmin) * (int(self.head.max(initial=0)) + 1) * 3 + self.head * 3 + self.circuit
        order = np.argsort(key, kind="stable")
        k = key[order]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if self.n else np.zeros(0, dtype="int64")
        ends = np.r_[starts[1:], self.n]
        names = (*CIRCUIT_ORDER, "?")
        return {(int(self.layer[order[a]]), int(self.head[order[a]]), names[int(self.circuit[order[a]])]): order[a:b]
                for a, b in zip(starts, ends)}

    def paths(self, layer: int = -1, limit: int = 20) -> pd.DataFrame:
        """The `limit` strongest cross-layer 2-step paths with the first (OV) step in `layer` (-1: any), as the
        library query `cross_layer_paths` orders them: columns first, second (positions of the two edges) and
        product (w1 · w2), |product| descending, then src, mid, dst, layer, head, circuit, next_head."""
        first = self.circuit == CIRCUIT_ORDER.index("OV")
        if layer != -1:
            first &= self.layer == int(layer)
        first = np.flatnonzero(first)
        g = self._group(self.dst[first], self.layer[first] + 1)
        first, g = first[g >= 0], g[g >= 0]
        empty = pd.DataFrame({"first": np.zeros(0, "int64"), "second": np.zeros(0, "int64"), "product": np.zeros(0)})
        if not len(first) or limit < 1:
            return empty
        bound = self.absw[first] * self.key_max[g]
        order = np.argsort(-bound, kind="stable")
        first, g, bound = first[order], g[order], bound[order]
        take = min(len(first), int(limit))
        while True:  # the first `take` first edges: enough once the limit-th product among them beats the next bound
            f, s = self._expand(first[:take], g[:take])
            a = np.abs(self.weight[f] * self.weight[s])
            if take == len(first):
                break
            if len(a) >= limit:
                kth = np.partition(a, len(a) - limit)[len(a) - limit]
                # every first edge whose bound reaches the kth product may still place (ties included)
                need = int(np.searchsorted(-bound, -kth, side="right"))
                if need <= take:
                    break
                take = need
            else:
                take = min(len(first), take * 4)
        w = self.weight[f] * self.weight[s]
        keys = (self.head[s], self.circuit[s], self.head[f], self.layer[f], self.dst[s], self.dst[f], self.src[f], -np.abs(w))
        o = np.lexsort(keys)[:limit]
        return pd.DataFrame({"first": f[o].astype("int64"), "second": s[o].astype("int64"), "product": w[o]})

    def _group(self, src: np.ndarray, layer: np.ndarray) -> np.ndarray:
        """The (src, layer) group of each pair (its index in keys), -1 where the feature has no edge out of that layer."""
        key = src.astype("int64") * self.span + (layer - self.lmin)
        i = np.searchsorted(self.keys, key)
        ok = (i < len(self.keys)) & (layer - self.lmin < self.span)
        ok[ok] &= self.keys[i[ok]] == key[ok]
        return np.where(ok, i, -1)

    def _expand(self, first: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every path through the first edges `first` (groups `g`): (first edge, second edge) position pairs."""
        starts, counts = self.key_start[g], self.key_end[g] - self.key_start[g]
        total = int(counts.sum())
        f = np.repeat(first, counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        s = self.by_key[np.repeat(starts, counts) + offsets]
        return f, s
