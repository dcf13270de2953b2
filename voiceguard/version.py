"""The package version (foundation layer: imported by the package root and by whatever records it)."""
__version__ = "0.1.0"
