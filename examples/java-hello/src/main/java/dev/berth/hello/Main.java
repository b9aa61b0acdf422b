package dev.berth.hello;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executors;

/**
 * A small web application on the JDK's built-in HTTP server: {@code /} greets, {@code
 * /healthz} answers the platform's health checks. It listens on {@code $PORT} (8080) and
 * stops cleanly on SIGTERM, so rolling updates never cut a request.
 */
public final class Main {
    private Main() {}

    public static void main(String[] args) throws IOException {
        int port = Integer.parseInt(System.getenv().getOrDefault("PORT", "8080"));
        String environment = System.getenv().getOrDefault("BERTH_ENVIRONMENT", "local");
        Greeting greeting = Greeting.load();
        HttpServer server = HttpServer.create(new InetSocketAddress(port), 64);
        server.setExecutor(Executors.newFixedThreadPool(4));
        server.createContext("/healthz", exchange -> send(exchange, 200, "ok\n"));
        server.createContext("/", exchange -> {
            if (!exchange.getRequestURI().getPath().equals("/")) {
                send(exchange, 404, "not found\n");
                return;
            }
            send(exchange, 200, greeting.page(environment));
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> server.stop(1)));
        server.start();
        System.out.println("java-hello listening on :" + port + " in " + environment);
    }

    private static void send(HttpExchange exchange, int status, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        String type = body.startsWith("<") ? "text/html; charset=utf-8" : "text/plain; charset=utf-8";
        exchange.getResponseHeaders().set("Content-Type", type);
        exchange.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(bytes);
        }
    }
}
