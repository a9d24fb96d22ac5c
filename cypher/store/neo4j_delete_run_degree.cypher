// Internal: delete one run's Degree rows, committing every 10,000 rows.
MATCH (d:Degree)
WHERE d.run = $run
CALL (d) { DELETE d } IN TRANSACTIONS OF 10000 ROWS
