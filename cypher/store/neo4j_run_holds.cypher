// Internal: does the store still hold run $run as a load with $fingerprint left it? Its node says so, and the
// relationship and Degree counts (the count store's, O(1)) equal the sums every finished run recorded, so no
// edge of any run was removed or added since.
MATCH (r:FeatgraphRun {id: $run})
WITH r.status = 'complete' AND r.fingerprint = $fingerprint AS same
MATCH (x:FeatgraphRun)
WITH same, sum(x.QK) AS qk, sum(x.OV) AS ov, sum(x.degrees) AS degrees, count(x) AS runs,
     count(x.degrees) AS counted
RETURN same AND runs = counted AND qk = COUNT { ()-[:QK]->() } AND ov = COUNT { ()-[:OV]->() }
       AND degrees = COUNT { (:Degree) } AS holds
