// Internal: create a batch of one graph's prompt nodes from a list of property maps (the graph's old nodes were
// deleted first); returns each node's element id, by which its links and OF ties find it.
UNWIND $rows AS row
CREATE (p:PromptNode)
SET p = row
RETURN row.key AS key, elementId(p) AS element
