"""CLI groups of the evaluation package: ``eval`` and ``data`` (the ``attacks`` group: voiceguard.cli.attacks)."""
from __future__ import annotations

from pathlib import Path

import click

from voiceguard import writers
from voiceguard.cli.options import (BOOTSTRAP, SEED, WORKERS, BootstrapCount, echo_result, finite_float, format_option,
                                    legacy_protocol_format, protocol_format_option)
from voiceguard.metrics.cm import BOOTSTRAP_MAX, BOOTSTRAP_MIN, CmMetrics
from voiceguard.metrics.scores import MISSING_POLICIES, cm_columns, cm_rows, evaluate_score_file
from voiceguard.progress import Progress
from voiceguard.protocols import PROTOCOL_FORMATS, ProtocolSummary, check_audio_files, read_protocol, summarize


@click.group("eval")
def eval_group() -> None:
    """Metrics and reports: EER, t-DCF (2019 + 2021), minDCF, Cllr."""


def _ticker(progress: Progress):
    """A ``progress(done, total)`` callback that advances ``progress`` (its total set on the first call)."""
    def tick(done: int, total: int) -> None:
        if progress.total is None:
            progress.set_total(total)
        progress.advance()

    return tick


def _eer_text(scores: Path, m: CmMetrics) -> str:
    """The table output of ``eval eer``."""
    e = m.eer
    ci = (f"  (95% CI {e.ci[0] * 100:.4f}-{e.ci[1] * 100:.4f} %, {m.bootstrap[0]} resamples, seed {m.bootstrap[1]})"
          if e.ci else "")
    lines = [f"{scores}: {e.n_bonafide} bona fide, {e.n_spoof} spoof",
             f"EER          {e.eer * 100:.4f} %   threshold {e.threshold:.6g}{ci}"]
    if m.asv is not None:
        lines.append(f"min t-DCF    {m.min_tdcf_2019:.4f} (2019 legacy)   {m.min_tdcf_2021:.4f} (2021 revised)"
                     f"   ASV EER {m.asv.eer * 100:.4f} % at threshold {m.asv.threshold:.6g}")
    lines.append(f"minDCF       {m.min_dcf:.4f}   minCllr {m.min_cllr:.4f}"
                 f"   (scores read as LLRs: actDCF {m.act_dcf:.4f}, Cllr {m.cllr:.4f})")
    if m.per_attack:
        rows = [{"attack": k, **v.to_dict()} for k, v in m.per_attack.items()]
        lines += ["\nper attack (all bona fide vs the attack's spoofs):",
                  writers.table(rows, ["attack", "n_spoof", "eer"], percent=["eer"], headers={"eer": "EER %"})]
    if m.per_condition:
        rows = [{"condition": k, **v.to_dict()} for k, v in m.per_condition.items()]
        cols = ["condition", "n_bonafide", "n_spoof", "eer"]
        title = "\nper condition:"
        if m.per_condition_fa:
            for r in rows:
                fa = m.per_condition_fa.get(r["condition"])
                r.update(fa_decision=fa.at_decision if fa else None, fa_eer=fa.at_eer if fa else None)
            cols += ["fa_decision", "fa_eer"]
            title = (f"\nper condition (EER of the condition's trials; bona fide false alarms: share called spoof at "
                     f"{m.decision_threshold:g} and at the pooled EER threshold):")
        lines += [title, writers.table(rows, cols, percent=["eer", "fa_decision", "fa_eer"],
                                       headers={"eer": "EER %", "fa_decision": f"FA % at {m.decision_threshold:g}",
                                                "fa_eer": "FA % at EER"})]
    if m.per_source:
        rows = [{"source": k, **v.to_dict()} for k, v in m.per_source.items()]
        lines += [f"\nbona fide false alarms per source (share called spoof; scores read as LLRs at "
                  f"{m.decision_threshold:g}, and at the pooled EER threshold {e.threshold:.6g}):",
                  writers.table(rows, ["source", "n_bonafide", "at_decision", "at_eer"],
                                percent=["at_decision", "at_eer"],
                                headers={"at_decision": f"FA % at {m.decision_threshold:g}", "at_eer": "FA % at EER"})]
    return "\n".join(lines) + "\n"


@eval_group.command("eer")
@click.option("--scores", "scores", required=True, type=click.Path(path_type=Path),
              help="CM score file: 'utt score' (needs --protocol) or 'utt attack key score'. Higher = bona fide.")
@click.option("--protocol", type=click.Path(path_type=Path), default=None,
              help="Protocol with the labels (ASVspoof 2019/2021/5, In-the-Wild meta.csv or CSV).")
@click.option("--asv-scores", type=click.Path(path_type=Path), default=None,
              help="ASV score file 'SOURCE KEY SCORE' (target/nontarget/spoof): adds min t-DCF 2019 and 2021.")
@protocol_format_option
@click.option("--bootstrap", type=BOOTSTRAP, default=0, show_default=True,
              help=f"Bootstrap resamples for a 95% percentile interval of the EER: 0 = off, else "
                   f"{BOOTSTRAP_MIN}..{BOOTSTRAP_MAX} (progress on stderr every few seconds).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the bootstrap (0..2**32-1).")
@click.option("--missing", type=click.Choice(MISSING_POLICIES), default="error", show_default=True,
              help="Protocol trials without a score: an error, or left out with a warning (skip: e.g. the "
                   "unreadable files 'detect score' listed).")
@format_option(help="output: a table, one JSON object (rates as fractions), or JSON lines / CSV with one row "
                    "per EER (pooled, each attack, each condition) and per bona fide source (false alarms)")
def eer_command(scores: Path, protocol: Path | None, asv_scores: Path | None, protocol_format: str, bootstrap: int,
                seed: int, missing: str, fmt: str) -> None:
    """EER (official DET method), min t-DCF, ASVspoof 5 metrics and per-attack EERs of a score file."""
    progress = Progress("bootstrap", unit="resamples", enabled=bootstrap > 0)
    try:
        m = evaluate_score_file(scores, protocol, asv_scores, bootstrap=bootstrap, seed=seed,
                                protocol_format=protocol_format, progress=_ticker(progress), missing=missing)
    finally:
        progress.close()
    for w in m.warnings:
        click.echo(f"voiceguard: warning: {w}", err=True)
    echo_result(fmt, m, cm_rows(m), cm_columns(m), lambda: _eer_text(scores, m))


@eval_group.command("report")
@click.option("--config", "config", required=True,
              help="Report config: a shipped name (mini-la, asvspoof2019-la) or a YAML file.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for report.md, report.html, report.json and figures/ (default: reports/NAME).")
@click.option("--work", type=click.Path(path_type=Path), default=None,
              help="Folder for the cached stages, score files and processed audio (default: OUT/work).")
@click.option("--force", is_flag=True, help="Recompute every stage instead of reusing cached ones.")
@click.option("--update-readme", "readme", type=click.Path(path_type=Path), default=None,
              help="Also replace the headline block between the voiceguard-report markers of this README.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
def report_command(config: str, out: Path | None, work: Path | None, force: bool, readme: Path | None,
                   progress: bool | None) -> None:
    """Evaluate detectors, watermark, attacks and voiceprint risk together; write the report."""
    import sys

    from voiceguard.api import evaluate
    from voiceguard.eval.report import headline_markdown, load_report_config, update_readme
    from voiceguard.eval.report.render import check_readme

    cfg = load_report_config(config)
    out = out if out is not None else Path("reports") / cfg.name
    if readme is not None:
        check_readme(readme)  # before the long run, not after
    report = evaluate(cfg, out, work=work, force=force, progress=sys.stderr.isatty() if progress is None else progress)
    command = f"voiceguard eval report --config {config} --out {out}"
    block = headline_markdown(report, command)
    click.echo(block)
    if readme is not None:
        update_readme(readme, block)
        click.echo(f"{readme}: headline block updated")
    click.echo(f"{out}: report.md, report.html, report.json, {len(report.figures)} figures "
               f"({report.wall_seconds:.0f} s)")


@click.group("data")
def data_group() -> None:
    """Protocols and corpora: build an ASVspoof 2019 LA-style corpus, inspect and validate protocol files."""


@data_group.command("build")
@click.option("--source", required=True, type=click.Path(path_type=Path),
              help="Folder of real speech (recursive). Speakers from LibriSpeech names or sub-folder names.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New (or empty) output folder.")
@click.option("--config", "config", default="default", show_default=True,
              help="Shipped config name (default, tiny, v2, tiny-v2) or a YAML file.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--workers", type=WORKERS, default=None, help="Parallel processes (default: the config's).")
@format_option
def build_command(source: Path, out: Path, config: str, seed: int, workers: int | None, fmt: str) -> None:
    """Build an ASVspoof 2019 LA-style corpus (flac/, protocols/, corpus.json, shortcut_check.json)."""
    from voiceguard.eval.corpus import SPLIT_COLUMNS, prepare_corpus

    card = prepare_corpus(source, out, config, seed, workers=workers, progress=True)
    from voiceguard.eval.corpus.shortcuts import failure_line

    verdict = "passed" if card.shortcut_pass else "FAILED: " + "; ".join(
        failure_line(f) for f in card.shortcut_failures[:3]) + " (see shortcut_check.json)"
    echo_result(fmt, card, card.rows(), SPLIT_COLUMNS, lambda: (
        f"{writers.table(card.rows(), SPLIT_COLUMNS)}\n{out}: built in {card.seconds:.0f} s; shortcut check "
        f"{verdict}\n"))


@data_group.command("card")
@click.argument("corpus", type=click.Path(path_type=Path))
@click.option("--update-readme", "readme", type=click.Path(path_type=Path), default=None,
              help="Also write the card between the README's <!-- voiceguard-corpus:begin/end --> markers.")
def card_command(corpus: Path, readme: Path | None) -> None:
    """Print a built corpus's card as Markdown: splits, systems (family, generator, RTF, weights sha256,
    licence), channel conditions and the shortcut check."""
    from voiceguard.eval.corpus.card import corpus_markdown
    from voiceguard.files import check_marked_block, replace_marked_block

    if readme is not None:
        check_marked_block(readme, "corpus")
    text = corpus_markdown(corpus)
    click.echo(text, nl=False)
    if readme is not None:
        replace_marked_block(readme, "corpus", text)


@data_group.command("check")
@click.argument("corpus", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the full result (per split, system and channel) as JSON here.")
@click.option("--workers", type=WORKERS, default=2, show_default=True, help="Parallel processes.")
@click.option("--pass-eer", type=finite_float(0, 0.5), default=None,
              help="Pooled / per-channel pass threshold (default: the corpus config's, else 0.25).")
@click.option("--system-eer", type=finite_float(0, 0.5), default=None,
              help="Per-system pass threshold (default: the corpus config's, else 0.10).")
def check_command(corpus: Path, out: Path | None, workers: int, pass_eer: float | None,
                  system_eer: float | None) -> None:
    """Run the shortcut check on a built corpus (one-feature classifiers: duration, silence, loudness,
    bandwidth, rate of origin, codec traces); prints the failures, exits 1 when it fails."""
    import json

    from voiceguard.eval.corpus.shortcuts import check_corpus, failure_line
    from voiceguard.files import atomic_write_text

    check = check_corpus(corpus, pass_eer, system_eer, workers)
    if out is not None:
        atomic_write_text(out, json.dumps(check, indent=2) + "\n")
    for f in check["failures"]:
        click.echo(failure_line(f))
    click.echo(f"{corpus}: shortcut check {'passed' if check['pass'] else 'FAILED'} ({len(check['failures'])} "
               f"failure(s); pass: pooled and per channel >= {100 * check['pass_eer']:.0f} %, per system >= "
               f"{100 * check['system_eer']:.0f} %)")
    if not check["pass"]:
        raise SystemExit(1)


#: the columns of ``data protocol --format csv``: one row per class and attack
PROTOCOL_COLUMNS = ("label", "attack", "n")


def _protocol_text(protocol: Path, s: ProtocolSummary) -> str:
    """The table output of ``data protocol``."""
    text = (f"{protocol}: {s.n_trials} trials, {s.n_bonafide} bona fide, {s.n_spoof} spoof, "
            f"{s.n_speakers} speakers\n")
    if s.attacks:
        text += writers.table([{"attack": a, "n": n} for a, n in s.attacks.items()], ["attack", "n"]) + "\n"
    if s.sources:
        text += (f"\n{len(s.sources)} bona fide sources:\n"
                 + writers.table([{"source": k, "n": n} for k, n in s.sources.items()], ["source", "n"]) + "\n")
    return text


@data_group.command("protocol")
@click.argument("protocol", type=click.Path(path_type=Path))
@protocol_format_option
@click.option("--audio-dir", type=click.Path(path_type=Path), default=None,
              help="Check that every trial's audio file exists here.")
@click.option("--ext", default=".flac", show_default=True, help="Audio extension for id-only protocols.")
@format_option(legacy=PROTOCOL_FORMATS,
               help="output: a table, one JSON object, or JSON lines / CSV with one row per class and attack "
                    "(a protocol format name here is the deprecated spelling of --protocol-format)")
def protocol_command(protocol: Path, protocol_format: str, audio_dir: Path | None, ext: str, fmt: str) -> None:
    """Read and validate a protocol; print its counts per class, attack and speaker."""
    fmt, protocol_format = legacy_protocol_format(fmt, protocol_format)
    trials = read_protocol(protocol, protocol_format)
    if audio_dir is not None:
        check_audio_files(trials, audio_dir, ext, source=str(protocol))
    s = summarize(trials)
    rows = [{"label": "bonafide", "attack": "-", "n": s.n_bonafide}]
    rows += [{"label": "spoof", "attack": a, "n": n} for a, n in s.attacks.items()]
    echo_result(fmt, s, rows, PROTOCOL_COLUMNS, lambda: _protocol_text(protocol, s))


__all__ = ["eval_group", "data_group", "BOOTSTRAP", "BootstrapCount"]
