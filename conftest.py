"""Root pytest configuration: modules that must not be imported by doctest collection."""

collect_ignore = ["stream_app/app.py", "stream_app/__main__.py"]
