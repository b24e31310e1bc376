"""Nearest neighbours, the one home for them: exact and cell (IVF) search, the kNN graph, neighbour pairs.
Above the primitives (core), below the stages that search."""
