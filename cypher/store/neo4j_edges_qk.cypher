// Internal: create a batch of QK edges (the run's old edges were deleted first, so re-loads never duplicate).
UNWIND $rows AS row
MATCH (a:Feature {id: row.src})
MATCH (b:Feature {id: row.dst})
CREATE (a)-[r:QK]->(b)
SET r.layer = row.layer, r.head = row.head, r.kv_head = row.kv_head, r.circuit = row.circuit,
    r.weight = row.weight, r.rank = row.rank, r.z = row.z, r.run = row.run
