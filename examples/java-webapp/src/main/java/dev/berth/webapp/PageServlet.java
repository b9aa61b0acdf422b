package dev.berth.webapp;

import jakarta.servlet.annotation.WebServlet;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;

/**
 * The application's page, at the context root. Its settings come from the environment,
 * as the platform sets them per environment: {@code GREETING} and {@code
 * BERTH_ENVIRONMENT}. {@code ?wait=N} holds the answer N seconds (at most 60), to show
 * that a rolling update lets requests in flight finish.
 */
@WebServlet("")
public final class PageServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;

    @Override
    protected void doGet(HttpServletRequest request, HttpServletResponse response) throws IOException {
        String wait = request.getParameter("wait");
        if (wait != null) {
            try {
                Thread.sleep(Math.min(60, Math.max(0, Integer.parseInt(wait))) * 1000L);
            } catch (NumberFormatException e) {
                response.sendError(400, "wait takes a number of seconds");
                return;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        String greeting = System.getenv().getOrDefault("GREETING", "Hello");
        String environment = System.getenv().getOrDefault("BERTH_ENVIRONMENT", "local");
        response.setContentType("text/html; charset=utf-8");
        response.getWriter().print(Page.render(greeting, environment, request.getContextPath()));
    }
}
