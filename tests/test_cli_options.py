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


def _commands(group, prefix=()):
    import click as _click

    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, _click.Group):
            yield from _commands(cmd, prefix + (name,))
        else:
            yield " ".join(prefix + (name,)), cmd


def test_every_command_with_an_output_format_takes_the_same_formats_and_the_json_alias():
    """Across the whole command tree: an output ``--format`` is always table|json|jsonl|csv with ``--json``."""
    from voiceguard.cli import cli
    from voiceguard.writers import FORMATS

    with_format = []
    for name, cmd in _commands(cli):
        opts = {o: p for p in cmd.params for o in getattr(p, "opts", [])}
        if "--format" not in opts:
            continue
        with_format.append(name)
        choices = tuple(getattr(opts["--format"].type, "choices", ()))
        assert set(FORMATS) <= set(choices), (name, choices)
        assert "--json" in opts, f"{name}: --format without the --json alias"
    assert {"scan", "eval eer", "watermark detect", "risk reid", "attacks list", "detect list"} <= set(with_format)


def test_the_command_line_starts_without_the_heavy_libraries():
    """Every ``voiceguard`` command imports voiceguard.cli: it must not load torch, scipy.signal (the attacks)
    or gradio; each command imports what it needs when it runs."""
    import subprocess
    import sys

    code = ("import sys, voiceguard.cli; "
            "print(sorted(m for m in ('torch', 'scipy.signal', 'gradio', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
