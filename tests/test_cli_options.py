"""Shared click options: ``--format`` with its ``--json`` alias."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from voiceguard.cli.options import format_option


@click.command()
@format_option(default="table")
def _show(fmt):
    click.echo(fmt)


@pytest.mark.parametrize("args, want", [([], "table"), (["--json"], "json"), (["--format", "csv"], "csv"),
                                        (["--format", "jsonl"], "jsonl"), (["--json", "--format", "csv"], "json"),
                                        (["--format", "csv", "--json"], "json")])
def test_format_option_and_its_json_alias(args, want):
    r = CliRunner().invoke(_show, args)
    assert r.exit_code == 0 and r.output.strip() == want


def test_an_unknown_format_is_a_usage_error_listing_the_formats():
    r = CliRunner().invoke(_show, ["--format", "xml"])
    assert r.exit_code == 2 and "table" in r.output and "jsonl" in r.output
