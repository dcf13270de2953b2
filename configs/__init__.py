"""Shipped report configs (YAML): `voiceguard eval report --config NAME` finds them here."""
