// Runs a JDBC driver (MariaDB Connector/J, Debian's libmariadb-java)
// against a CometQL test server: server-side prepared statements and the
// driver's own client-side escaping, then reads every value back.
//
// Environment: COMETQL_HOST, COMETQL_PORT, COMETQL_USER, COMETQL_PASSWORD,
// COMETQL_VALUES_B64 (the values, each base64, one per line). Prints "ok"
// and exits 0 when everything came back equal.
import java.nio.charset.StandardCharsets;
import java.sql.*;
import java.util.*;

public class JdbcClient {
    static final List<String> failures = new ArrayList<>();

    static void check(String label, Object got, Object want) {
        if (!Objects.equals(got, want)) failures.add(label + ": got " + got + ", want " + want);
    }

    static List<String> column(PreparedStatement ps) throws SQLException {
        List<String> out = new ArrayList<>();
        try (ResultSet rs = ps.executeQuery()) {
            while (rs.next()) out.add(rs.getString(1));
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        List<String> values = new ArrayList<>();
        for (String line : System.getenv("COMETQL_VALUES_B64").split("\n")) {
            if (!line.isEmpty()) values.add(new String(Base64.getDecoder().decode(line), StandardCharsets.UTF_8));
        }
        String base = "jdbc:mariadb://" + System.getenv("COMETQL_HOST") + ":" + System.getenv("COMETQL_PORT") + "/CometQL_v1";
        Properties p = new Properties();
        p.setProperty("user", System.getenv("COMETQL_USER"));
        p.setProperty("password", System.getenv("COMETQL_PASSWORD"));

        for (String mode : new String[] {"server", "client"}) {
            p.setProperty("useServerPrepStmts", mode.equals("server") ? "true" : "false");
            String pipe = "java_" + mode;
            try (Connection c = DriverManager.getConnection(base, p)) {
                try (Statement st = c.createStatement()) {
                    check(mode + " settings", st.executeUpdate("INSERT INTO pipes_settings (name, length) VALUES ('" + pipe + "', 100)"), 1);
                }
                try (PreparedStatement ins = c.prepareStatement("INSERT INTO pipes_messages (name, event, message) VALUES (?, ?, ?)");
                     PreparedStatement data = c.prepareStatement("INSERT INTO users_data (id, data) VALUES (?, ?)")) {
                    long id = mode.equals("server") ? 5100 : 5200;
                    for (String v : values) {
                        ins.setString(1, pipe);
                        ins.setString(2, "ev");
                        ins.setString(3, v);
                        check(mode + " affected", ins.executeUpdate(), 1);
                        data.setLong(1, id++);
                        data.setString(2, v);
                        data.executeUpdate();
                    }
                }
                try (PreparedStatement sel = c.prepareStatement("SELECT message FROM pipes_messages WHERE name = ? ORDER BY `index`")) {
                    sel.setString(1, pipe);
                    check(mode + " history", column(sel), values);
                }
                try (PreparedStatement sel = c.prepareStatement("SELECT id, data FROM users_data WHERE id >= ? AND id < ? ORDER BY id")) {
                    long from = mode.equals("server") ? 5100 : 5200;
                    sel.setLong(1, from);
                    sel.setLong(2, from + 100);
                    List<String> got = new ArrayList<>();
                    try (ResultSet rs = sel.executeQuery()) {
                        ResultSetMetaData md = rs.getMetaData();
                        check(mode + " id type", md.getColumnType(1), Types.BIGINT);
                        while (rs.next()) {
                            check(mode + " id", rs.getLong(1), from + got.size());
                            got.add(rs.getString(2));
                        }
                    }
                    check(mode + " data", got, values);
                }
                try (Statement st = c.createStatement()) {
                    st.executeQuery("SELECT * FROM no_such_table");
                    failures.add(mode + ": unknown table accepted");
                } catch (SQLException e) {
                    check(mode + " error code", e.getErrorCode(), 1146);
                    check(mode + " sqlstate", e.getSQLState(), "42S02");
                }
                try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT 1")) {
                    rs.next();
                    check(mode + " after error", rs.getInt(1), 1);
                }
            }
        }
        if (!failures.isEmpty()) {
            for (String f : failures) System.err.println(f);
            System.exit(1);
        }
        System.out.println("ok");
    }
}
