// Internal: delete one run's OV edges, committing every 50,000 rows (measured faster than 10,000).
MATCH ()-[r:OV]->()
WHERE r.run = $run
CALL (r) { DELETE r } IN TRANSACTIONS OF 50000 ROWS
