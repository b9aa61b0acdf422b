package dev.berth.tomcat;

import java.util.concurrent.atomic.AtomicReference;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;

/**
 * Keeps the root cause of the last SEVERE record that carried one, for
 * {@link ExitWhenAppFails} to repeat on Tomcat's last line. Named in logging.properties:
 * Tomcat's log manager makes one per class loader (the server's, each web application's),
 * and they share what they keep, since this class is loaded once, from lib/.
 */
public final class LastError extends Handler {
    private static final AtomicReference<String> LAST = new AtomicReference<>();

    /** The root cause of the last error logged with one, or null. */
    public static String last() {
        return LAST.get();
    }

    @Override
    public void publish(LogRecord record) {
        Throwable t = record.getThrown();
        if (t == null || record.getLevel().intValue() < Level.SEVERE.intValue()) {
            return;
        }
        while (t.getCause() != null && t.getCause() != t) {
            t = t.getCause();
        }
        LAST.set(t.toString());
    }

    @Override
    public void flush() {}

    @Override
    public void close() {}
}
