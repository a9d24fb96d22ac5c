// Hub features of one head and circuit by degree (in + out; a like-to-like edge counts twice), with their labels.
// @param head int: attention head
// @param layer int = -1: the head's layer (-1: the run's only layer; give it when the run holds several)
// @param circuit str = QK: QK or OV
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (a)-[r:QK|OV]->(b)
WHERE r.circuit = $circuit AND r.layer = $layer AND r.head = $head AND ($run = '*' OR r.run = $run)
UNWIND [a.id, b.id] AS feature
WITH feature, count(*) AS degree
ORDER BY degree DESC, feature
LIMIT $limit
MATCH (f:Feature {id: feature})
RETURN feature, f.description AS feature_description, degree
ORDER BY degree DESC, feature
