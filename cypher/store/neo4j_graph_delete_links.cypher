// Internal: delete one attribution graph's links, committing every 50,000 (a graph may hold 10^7 of them).
MATCH ()-[l:ATTRIBUTION]->()
WHERE l.graph = $graph
CALL (l) { DELETE l } IN TRANSACTIONS OF 50000 ROWS
