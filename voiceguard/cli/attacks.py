"""CLI of the attacks: ``attacks list | suite | apply | run-suite``. Thin wrappers over voiceguard.attacks.files."""
from __future__ import annotations

from pathlib import Path

import click

from voiceguard import writers
from voiceguard.cli.options import SEED, echo_result, format_option

# voiceguard.attacks (scipy.signal: about 2 s) is imported when an attacks command runs, not when any
# voiceguard command starts


@click.group("attacks")
def attacks_group() -> None:
    """Robustness attacks: noise, filters, resampling, real codecs, speed/pitch, echo/reverb, edits, RawBoost."""


@attacks_group.command("list")
@format_option
def attacks_list_command(fmt: str) -> None:
    """Every attack: parameters with defaults, contracts, and whether it can run here."""
    from voiceguard.attacks import list_suites
    from voiceguard.attacks.files import CATALOGUE_COLUMNS, attack_catalogue

    rows = attack_catalogue()
    echo_result(fmt, None, rows, CATALOGUE_COLUMNS, lambda: (
        writers.table(rows, CATALOGUE_COLUMNS) + f"\n\nsuites: {', '.join(list_suites())} "
        "(voiceguard attacks suite NAME)\n"))


@attacks_group.command("suite")
@click.argument("name")
@format_option
def attacks_suite_command(name: str, fmt: str) -> None:
    """Show the conditions of a shipped suite (or of a suite YAML file)."""
    from voiceguard.attacks.files import SUITE_COLUMNS, describe_suite

    suite = describe_suite(name)
    echo_result(fmt, suite, suite.rows, SUITE_COLUMNS,
                lambda: f"{suite.name}: {suite.description}\n{writers.table(suite.rows, SUITE_COLUMNS)}\n")


@attacks_group.command("run-suite")
@click.argument("suite")
@click.argument("inp", metavar="IN", type=click.Path(path_type=Path))
@click.argument("out_dir", metavar="OUT_DIR", type=click.Path(path_type=Path))
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@format_option
def attacks_run_suite_command(suite: str, inp: Path, out_dir: Path, seed: int, overwrite: bool, fmt: str) -> None:
    """Apply every condition of SUITE to IN, writing OUT_DIR/<label><ext>; unavailable ones are reported
    (exit code 2 when a condition failed)."""
    from voiceguard.attacks.files import SUITE_OUTPUT_COLUMNS, apply_suite_file

    results = apply_suite_file(suite, inp, out_dir, seed=seed, overwrite=overwrite)
    rows = [r.to_dict() for r in results]
    echo_result(fmt, None, rows, SUITE_OUTPUT_COLUMNS, lambda: writers.table(rows, SUITE_OUTPUT_COLUMNS) + "\n")
    if any(r.status == "error" for r in results):
        raise SystemExit(2)


@attacks_group.command("apply")
@click.argument("attack")
@click.argument("inp", metavar="IN", type=click.Path(path_type=Path))
@click.argument("out", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--param", "-p", "params", multiple=True, help="key=value (repeatable); a range as key=[lo,hi].")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@format_option
def attacks_apply_command(attack: str, inp: Path, out: Path, params: tuple[str, ...], seed: int,
                          overwrite: bool, fmt: str) -> None:
    """Apply ATTACK to the file IN and write OUT (same rate, channels and subtype)."""
    from voiceguard.attacks.files import apply_attack_file, parse_attack_params

    res = apply_attack_file(attack, inp, out, parse_attack_params(params), seed=seed, overwrite=overwrite)
    echo_result(fmt, res, [res.to_dict()], ("output", "attack", "parameters", "in_seconds", "out_seconds"),
                lambda: f"{res.output}: {res.attack} {res.parameters} ({res.in_seconds:.2f} s -> "
                        f"{res.out_seconds:.2f} s)\n")


__all__ = ["attacks_group"]
