"""The ``voiceguard`` command: a click root that each package plugs its group into.

Commands are thin: parse options, call one pure function, print its result.
A ``VoiceguardError`` becomes one line on stderr and exit code 2; never a traceback.

Exit codes: 0 success; 1 ``scan`` found spoofed audio; 2 bad input / usage;
3 internal error (set ``VOICEGUARD_DEBUG=1`` for the traceback); 130 interrupted.
"""
from __future__ import annotations

import os
import sys
import warnings

import click

from voiceguard.version import __version__
from voiceguard.errors import VoiceguardError, VoiceguardWarning
from voiceguard.writers import printable

EXIT_INTERNAL = 3


class VoiceguardGroup(click.Group):
    """Turns toolkit errors into one-line messages with documented exit codes."""

    def invoke(self, ctx: click.Context):
        with warnings.catch_warnings():  # toolkit warnings as one line each: voiceguard: warning: FILE: what
            warnings.showwarning = _show_warning
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VoiceguardError as e:
            click.echo(printable(f"voiceguard: error: {e}"), err=True)  # names not UTF-8: \xNN
            ctx.exit(e.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:  # e.g. `voiceguard ... | head`: stop quietly, like a SIGPIPE'd tool
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(141)
        except KeyboardInterrupt:
            click.echo("voiceguard: interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # a bug: say so in one line unless debugging
            if os.environ.get("VOICEGUARD_DEBUG"):
                raise
            click.echo(printable(f"voiceguard: internal error: {type(e).__name__}: {e} "
                                 "(set VOICEGUARD_DEBUG=1 for the traceback and report it)"), err=True)
            ctx.exit(EXIT_INTERNAL)


_PY_SHOWWARNING = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, VoiceguardWarning):
        click.echo(printable(f"voiceguard: warning: {message}"), err=True)
    else:
        _PY_SHOWWARNING(message, category, filename, lineno, file, line)


@click.group(cls=VoiceguardGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="voiceguard")
def cli() -> None:
    """voiceguard: defend against audio deepfakes.

    Scan files for spoofed speech, watermark generated audio, and reproduce
    ASVspoof-style EER / t-DCF reports.
    """


def _register() -> None:
    from voiceguard.cli.demo import demo_command
    from voiceguard.cli.detect import detect_group
    from voiceguard.cli.scan import scan_command
    from voiceguard.cli.attacks import attacks_group
    from voiceguard.cli.eval import data_group, eval_group
    from voiceguard.cli.risk import risk_group
    from voiceguard.cli.watermark import watermark_group

    for cmd in (scan_command, data_group, detect_group, watermark_group, attacks_group, eval_group,
                risk_group, demo_command):
        cli.add_command(cmd)


_register()


def main() -> None:
    cli(prog_name="voiceguard")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
