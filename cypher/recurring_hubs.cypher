// Features that recur as hubs across layers: a feature is a hub of a layer when it is among the layer's
// `top` best-connected features (edge ends over all the layer's heads and circuits, in + out; ties by id).
// One row per (feature, layer it is a hub of), for the features that are hubs of at least `min_layers`
// layers, most hub layers first. Read from the Degree rows a load writes (`d.run IS NOT NULL`, always
// true, lets Neo4j read them from its (layer, rank, run) index); over several runs each run's layers count.
// @param top int = 100: a hub ranks among this many features of its layer (at most 1000)
// @param min_layers int = 2: at least this many layers
// @param limit int = 20: features to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (d:Degree)
WHERE d.layer >= 0 AND d.rank <= $top AND d.run IS NOT NULL AND ($run = '*' OR d.run = $run)
WITH d.feature AS feature, collect(d) AS hubs, count(*) AS hub_layers, sum(d.degree) AS hub_degree
WHERE hub_layers >= $min_layers
WITH feature, hubs, hub_layers, hub_degree
ORDER BY hub_layers DESC, hub_degree DESC, feature
LIMIT $limit
MATCH (f:Feature {id: feature})
UNWIND hubs AS d
RETURN feature, f.description AS feature_description, hub_layers, hub_degree, d.layer AS layer,
       d.degree AS degree, d.rank AS rank
ORDER BY hub_layers DESC, hub_degree DESC, feature, layer, degree DESC
