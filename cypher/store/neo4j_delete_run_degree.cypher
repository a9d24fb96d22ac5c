// Internal: delete one run's Degree rows, committing every 50,000 rows (measured faster than 10,000).
MATCH (d:Degree)
WHERE d.run = $run
CALL (d) { DELETE d } IN TRANSACTIONS OF 50000 ROWS
