"""The Cypher query library (shipped inside featgraph as `featgraph.cypher`; see featgraph.graph.library)."""
