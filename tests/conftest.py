"""pytest fixtures live in helpers.py (importable by the tests as a plain module)."""
from helpers import la19, runner  # noqa: F401

import sys

import pytest
from hypothesis import settings

# Property tests draw their examples from a seed derived from each test's name, so a rerun (CI included)
# reproduces the same cases; print_blob gives the reproduction line of any failure.
settings.register_profile("voiceguard", derandomize=True, print_blob=True)
settings.load_profile("voiceguard")


@pytest.fixture(autouse=True)
def _drop_unimportable_lazy_modules():
    """speechbrain registers lazy placeholder modules (e.g. ``speechbrain.integrations.k2_fsa``) in
    ``sys.modules`` whose attribute access imports an optional package (k2) that is not installed and
    raises ImportError instead of AttributeError. Hypothesis scans ``sys.modules`` for constants with
    ``getattr(module, "__file__", None)`` and would crash on them, as would anything else that walks
    ``sys.modules``; such placeholders can never be used here, so they are removed before each test."""
    for name, module in list(sys.modules.items()):
        try:
            getattr(module, "__file__", None)
        except ImportError:
            sys.modules.pop(name, None)
    yield
