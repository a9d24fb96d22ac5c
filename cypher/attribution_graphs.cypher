// The attribution graphs imported into the store (`featgraph import GRAPH.json --out RUN`, then `featgraph load RUN`):
// each graph's id (the `graph` parameter of the attribution queries), slug, model, source set, prompt and counts.
MATCH (g:AttributionGraph)
RETURN g.id AS graph, g.slug AS slug, g.model_id AS model, g.source_set AS source_set, g.prompt AS prompt,
       g.nodes AS nodes, g.links AS links
ORDER BY graph
