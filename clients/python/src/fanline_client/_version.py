__version__ = "0.2.0"  # keep equal to clients/python/pyproject.toml (a test checks)
