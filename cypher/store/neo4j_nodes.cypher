// Internal: upsert a batch of features from column lists (idempotent on the unique id).
UNWIND range(0, size($id) - 1) AS i
MERGE (f:Feature {id: $id[i]})
SET f.sae = $sae[i], f.layer = $layer[i], f.feature_index = $feature_index[i],
    f.description = $description[i], f.url = $url[i]
