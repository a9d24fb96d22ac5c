// Internal: upsert a batch of features (idempotent on the unique id).
UNWIND $rows AS row
MERGE (f:Feature {id: row.id})
SET f.sae = row.sae, f.layer = row.layer, f.feature_index = row.feature_index,
    f.description = row.description, f.url = row.url
