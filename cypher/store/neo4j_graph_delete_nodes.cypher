// Internal: delete one attribution graph's prompt nodes (and their OF ties), committing every 10,000 nodes; its
// links were deleted first.
MATCH (p:PromptNode)
WHERE p.graph = $graph
CALL (p) { DETACH DELETE p } IN TRANSACTIONS OF 10000 ROWS
