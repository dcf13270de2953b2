"""pytest fixtures live in helpers.py (importable by the tests as a plain module)."""
from helpers import la19, runner  # noqa: F401
