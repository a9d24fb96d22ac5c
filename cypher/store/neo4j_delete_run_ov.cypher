// Internal: delete one run's OV edges, committing every 10,000 rows.
MATCH ()-[r:OV]->()
WHERE r.run = $run
CALL (r) { DELETE r } IN TRANSACTIONS OF 10000 ROWS
