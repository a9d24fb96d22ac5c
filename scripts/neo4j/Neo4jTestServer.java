// A real Neo4j Community 5.26 server (Bolt on 127.0.0.1, auth on) for featgraph's tests.
// Run: NEO4J_PASSWORD=... java -cp '.neo4j/lib/*' scripts/neo4j/Neo4jTestServer.java DATA_DIR [STORE_HOME]
// STORE_HOME: a Neo4j home whose data/ holds a database made offline (`neo4j-admin database import`
// with NEO4J_HOME=STORE_HOME); the server serves a copy of it as its default database.
// NEO4J_PAGECACHE (e.g. 1g): the page cache; unset, the harness's 8 MiB, too small for a benchmark's store.
// Prints the bolt URI on its first line, then serves until stdin closes or it is signalled.
import java.nio.file.Path;
import java.util.Map;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.SettingValueParsers;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.harness.Neo4j;
import org.neo4j.harness.Neo4jBuilder;
import org.neo4j.harness.Neo4jBuilders;

public class Neo4jTestServer {
    public static void main(String[] args) throws Exception {
        String password = System.getenv("NEO4J_PASSWORD");
        if (password == null || password.length() < 8) {
            System.err.println("error: set NEO4J_PASSWORD (8 characters or more) in the environment");
            System.exit(2);
        }
        Neo4jBuilder builder = Neo4jBuilders.newInProcessBuilder(Path.of(args[0]));
        if (args.length > 1) {
            builder = builder.copyFrom(Path.of(args[1]).toAbsolutePath());
        }
        String pagecache = System.getenv("NEO4J_PAGECACHE");
        if (pagecache != null && !pagecache.isEmpty()) {
            builder = builder.withConfig(GraphDatabaseSettings.pagecache_memory, SettingValueParsers.BYTES.parse(pagecache));
        }
        Neo4j neo4j = builder
            .withDisabledServer()
            .withConfig(BoltConnector.enabled, true)
            .withConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", 0))
            .withConfig(GraphDatabaseSettings.auth_enabled, true)
            .build();
        neo4j.databaseManagementService().database("system").executeTransactionally(
            "ALTER USER neo4j SET PASSWORD $p CHANGE NOT REQUIRED", Map.of("p", password));
        Runtime.getRuntime().addShutdownHook(new Thread(neo4j::close));
        System.out.println(neo4j.boltURI());
        System.out.flush();
        while (System.in.read() != -1) { }
        neo4j.close();
        System.exit(0);
    }
}
