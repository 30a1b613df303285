"""The web console under /console: approvers and auditors, server-rendered (Jinja2 + htmx)."""
