// Reads a GraphML file whole with JGraphT's GraphMLImporter (jgrapht-io, Maven Central) and parses every typed
// attribute value with Java's own number parsers, as JVM tools such as Gephi do. Prints, one per line,
// "vertices N", "edges M" and "attr WHERE NAME COUNT SUM" (SUM of the parsed numbers, 0 for text); exits 1 on
// the first value Java cannot parse. Run through scripts/graphml-check FILE.graphml (fetches, compiles, runs).
import java.io.File;
import java.util.Map;
import java.util.TreeMap;
import org.jgrapht.graph.DefaultEdge;
import org.jgrapht.graph.DirectedPseudograph;
import org.jgrapht.nio.Attribute;
import org.jgrapht.nio.graphml.GraphMLImporter;

public class GraphMLCheck {
    static final Map<String, double[]> seen = new TreeMap<>();

    static void take(String where, String name, Attribute a) {
        String v = a.getValue();
        double x;
        switch (a.getType()) {
            case INT: x = Integer.parseInt(v); break;
            case LONG: x = Long.parseLong(v); break;
            case FLOAT: x = Float.parseFloat(v); break;
            case DOUBLE: x = Double.parseDouble(v); break;
            case BOOLEAN:
                if (!v.equals("true") && !v.equals("false")) throw new IllegalArgumentException("not a boolean: " + v);
                x = v.equals("true") ? 1 : 0; break;
            default: x = 0;
        }
        if (Double.isNaN(x) || Double.isInfinite(x)) throw new IllegalArgumentException(where + " " + name + ": " + v);
        double[] s = seen.computeIfAbsent(where + " " + name, k -> new double[2]);
        s[0] += 1;
        s[1] += x;
    }

    public static void main(String[] args) throws Exception {
        DirectedPseudograph<String, DefaultEdge> g = new DirectedPseudograph<>(DefaultEdge.class);
        GraphMLImporter<String, DefaultEdge> in = new GraphMLImporter<>();
        in.setSchemaValidation(false);  // feature ids hold "/", which the GraphML schema's NMTOKEN ids do not allow; Gephi does not validate either
        in.setVertexFactory(id -> id);
        in.addVertexAttributeConsumer((p, a) -> take("node", p.getSecond(), a));
        in.addEdgeAttributeConsumer((p, a) -> take("edge", p.getSecond(), a));
        try {
            in.importGraph(g, new File(args[0]));
        } catch (RuntimeException e) {
            Throwable c = e;
            while (c.getCause() != null) c = c.getCause();
            System.err.println("error: " + c);
            System.exit(1);
        }
        System.out.println("vertices " + g.vertexSet().size());
        System.out.println("edges " + g.edgeSet().size());
        for (Map.Entry<String, double[]> s : seen.entrySet())
            System.out.println("attr " + s.getKey() + " " + (long) s.getValue()[0] + " " + s.getValue()[1]);
    }
}
