package dev.berth.tomcat;

import org.apache.catalina.Container;
import org.apache.catalina.Lifecycle;
import org.apache.catalina.LifecycleEvent;
import org.apache.catalina.LifecycleListener;
import org.apache.catalina.Server;
import org.apache.catalina.Service;

/**
 * Ends Tomcat when its web application did not start (a listener that throws, a missing
 * class, an empty webapps directory). Tomcat alone keeps running and answers 404 for
 * ever; an image holds one application, so a server without it is a failed replica, and
 * the platform must see it fail at once, with the reason in the log: the root cause of
 * the last error Tomcat logged is repeated on the last line, where the platform's exit
 * reason (the instance's last log lines) finds it below the stack traces.
 */
public final class ExitWhenAppFails implements LifecycleListener {
    /** The exit code of a Tomcat whose application did not start. */
    static final int EXIT_CODE = 3;

    @Override
    public void lifecycleEvent(LifecycleEvent event) {
        if (!Lifecycle.AFTER_START_EVENT.equals(event.getType())
                || !(event.getLifecycle() instanceof Server server)) {
            return;
        }
        String failure = null;
        for (Service service : server.findServices()) {
            Container engine = service.getContainer();
            if (engine == null) {
                continue;
            }
            for (Container host : engine.findChildren()) {
                Container[] apps = host.findChildren();
                if (apps.length == 0) {
                    failure = "no web application was deployed (webapps/ is empty)";
                }
                for (Container app : apps) {
                    if (!app.getState().isAvailable()) {
                        String path = app.getName().isEmpty() ? "/" : app.getName();
                        failure = "the web application at " + path + " failed to start ("
                                + app.getState() + ")";
                    }
                }
            }
        }
        if (failure != null) {
            String cause = LastError.last();
            System.err.println("berth: " + failure + (cause == null ? "; its error is logged above" : ": " + cause)
                    + "; Tomcat exits with code " + EXIT_CODE);
            System.out.flush();
            System.err.flush();
            // halt, not exit: the start still running on this thread would race Tomcat's
            // shutdown hook and print a stack trace of its own below the reason.
            Runtime.getRuntime().halt(EXIT_CODE);
        }
    }
}
