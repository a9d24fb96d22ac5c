"""Graph stores over a run: the embedded Cypher store, Neo4j, and NetworkX.

Every store holds the same typed property graph (SPEC 3):
`(:Feature)-[:QK]->(:Feature)` from key to query and `(:Feature)-[:OV]->(:Feature)`
from value to output, with the same property names everywhere.
"""

from featgraph.graph.nx import to_networkx

__all__ = ["to_networkx"]
