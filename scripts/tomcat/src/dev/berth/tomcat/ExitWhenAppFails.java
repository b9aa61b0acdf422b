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
 * the platform must see it fail at once, with the reason in the log.
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
                                + app.getState() + "); its error is logged above";
                    }
                }
            }
        }
        if (failure != null) {
            System.err.println("berth: " + failure + "; Tomcat exits with code " + EXIT_CODE);
            // Not from this thread: Tomcat's shutdown hook stops the server, whose start
            // is still running here.
            Thread exit = new Thread(() -> System.exit(EXIT_CODE), "berth-exit");
            exit.start();
        }
    }
}
