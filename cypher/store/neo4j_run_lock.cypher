// Internal: take the load lock of run $run. Run in a transaction that stays open for the whole load and is
// rolled back (the node is never stored): under the uniqueness constraint a second MERGE of the same run
// waits until the first transaction ends.
MERGE (:FeatgraphLoadLock {run: $run})
