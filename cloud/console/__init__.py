"""The head-office console: server-rendered pages, live updates over SSE, accounts, alerts.

`cloud.console.app.setup_console(app)` mounts it under /console; this package root stays
import-light so `cloud.config` can use `ConsoleSettings` without pulling in Jinja.
"""
