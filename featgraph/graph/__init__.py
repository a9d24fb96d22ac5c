"""Graph stores over a run's tables: the embedded Cypher store, Neo4j, and NetworkX.

Every store holds the same typed property graph (docs/graph.md):
`(:Feature)-[:QK]->(:Feature)` from key to query and `(:Feature)-[:OV]->(:Feature)`
from value to output, with the same property names everywhere.
"""
