// Internal: delete up to $batch edges of one run (called until it returns 0).
MATCH ()-[r:QK|OV]->()
WHERE r.run = $run
WITH r LIMIT $batch
DELETE r
RETURN count(*) AS deleted
