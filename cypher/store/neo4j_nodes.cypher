// Internal: upsert a batch of features from column lists (idempotent on the unique id). A run without a
// description for a feature (unlabelled) keeps the one another run sharing the feature wrote. Returns each
// feature's element id, by which the edges find their ends.
UNWIND range(0, size($id) - 1) AS i
MERGE (f:Feature {id: $id[i]})
SET f.sae = $sae[i], f.layer = $layer[i], f.feature_index = $feature_index[i],
    f.description = coalesce($description[i], f.description), f.url = coalesce($url[i], f.url)
RETURN $id[i] AS id, elementId(f) AS element
