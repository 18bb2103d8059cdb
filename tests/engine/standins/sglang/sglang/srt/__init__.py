"""Stand-in: see sglang/__init__.py."""
