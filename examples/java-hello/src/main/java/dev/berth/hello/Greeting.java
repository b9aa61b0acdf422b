package dev.berth.hello;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;

/** The page the application serves; its template is a resource of the application. */
final class Greeting {
    private final String template;

    private Greeting(String template) {
        this.template = template;
    }

    static Greeting load() throws IOException {
        try (InputStream in = Greeting.class.getResourceAsStream("greeting.html")) {
            if (in == null) {
                throw new IOException("greeting.html is missing from the class path");
            }
            return new Greeting(new String(in.readAllBytes(), StandardCharsets.UTF_8));
        }
    }

    String page(String environment) {
        return template.replace("{environment}", environment)
                .replace("{java}", System.getProperty("java.version"));
    }
}
