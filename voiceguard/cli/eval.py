"""CLI groups of the evaluation package: ``eval``, ``data``, ``attacks``, ``risk``."""
from __future__ import annotations

from pathlib import Path

import click

from voiceguard import writers
from voiceguard.attacks import list_suites, load_suite
from voiceguard.cli.options import SEED, WORKERS, protocol_format_option
from voiceguard.progress import Progress
from voiceguard.protocols import PROTOCOL_FORMATS, check_audio_files, read_protocol, summarize

from voiceguard.attacks.files import apply_attack_file, apply_suite_file, attack_catalogue, parse_attack_params
from voiceguard.metrics.cm import BOOTSTRAP_MAX, BOOTSTRAP_MIN
from voiceguard.metrics.scores import evaluate_score_file


class BootstrapCount(click.ParamType):
    """Bootstrap resamples: 0 (off) or ``BOOTSTRAP_MIN``..``BOOTSTRAP_MAX`` (eval.metrics)."""

    name = "N"

    def convert(self, value, param, ctx):
        n = click.INT.convert(value, param, ctx)
        if n == 0 or BOOTSTRAP_MIN <= n <= BOOTSTRAP_MAX:
            return n
        if n < 0:
            self.fail(f"{n} is negative: use 0 (no interval) or {BOOTSTRAP_MIN}..{BOOTSTRAP_MAX}.", param, ctx)
        if n < BOOTSTRAP_MIN:
            self.fail(f"{n} resamples are too few for a 95 % interval: use 0 (no interval) or at least "
                      f"{BOOTSTRAP_MIN}.", param, ctx)
        self.fail(f"{n} resamples is above the cap of {BOOTSTRAP_MAX} (more does not make a 95 % interval any "
                  f"more exact; 1000-10000 is usual).", param, ctx)


#: ``--bootstrap`` of every command with a bootstrap interval
BOOTSTRAP = BootstrapCount()


@click.group("eval")
def eval_group() -> None:
    """Metrics and reports: EER, t-DCF (2019 + 2021), minDCF, Cllr."""


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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (rates as fractions).")
def eer_command(scores: Path, protocol: Path | None, asv_scores: Path | None, protocol_format: str, bootstrap: int,
                seed: int, as_json: bool) -> None:
    """EER (official DET method), min t-DCF, ASVspoof 5 metrics and per-attack EERs of a score file."""
    progress = Progress("bootstrap", unit="resamples", enabled=bootstrap > 0)

    def tick(done: int, total: int) -> None:
        if progress.total is None:
            progress.set_total(total)
        progress.advance()

    try:
        m = evaluate_score_file(scores, protocol, asv_scores, bootstrap=bootstrap, seed=seed,
                                protocol_format=protocol_format, progress=tick)
    finally:
        progress.close()
    for w in m.warnings:
        click.echo(f"voiceguard: warning: {w}", err=True)
    if as_json:
        click.echo(writers.to_json(m.to_dict()))
        return
    e = m.eer
    ci = f"  (95% CI {e.ci[0] * 100:.4f}-{e.ci[1] * 100:.4f} %, {bootstrap} resamples, seed {seed})" if e.ci else ""
    click.echo(f"{scores}: {e.n_bonafide} bona fide, {e.n_spoof} spoof")
    click.echo(f"EER          {e.eer * 100:.4f} %   threshold {e.threshold:.6g}{ci}")
    if m.asv is not None:
        click.echo(f"min t-DCF    {m.min_tdcf_2019:.4f} (2019 legacy)   {m.min_tdcf_2021:.4f} (2021 revised)"
                   f"   ASV EER {m.asv.eer * 100:.4f} % at threshold {m.asv.threshold:.6g}")
    click.echo(f"minDCF       {m.min_dcf:.4f}   minCllr {m.min_cllr:.4f}"
               f"   (scores read as LLRs: actDCF {m.act_dcf:.4f}, Cllr {m.cllr:.4f})")
    rows = [{"attack": k, **v.to_dict()} for k, v in m.per_attack.items()]
    if rows:
        click.echo("\nper attack (all bona fide vs the attack's spoofs):")
        click.echo(writers.table(rows, ["attack", "n_spoof", "eer"], percent=["eer"], headers={"eer": "EER %"}))
    if m.per_condition:
        rows = [{"condition": k, **v.to_dict()} for k, v in m.per_condition.items()]
        click.echo("\nper condition:")
        click.echo(writers.table(rows, ["condition", "n_bonafide", "n_spoof", "eer"], percent=["eer"],
                                 headers={"eer": "EER %"}))


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

    from voiceguard.eval.report import headline_markdown, load_report_config, run_report, update_readme
    from voiceguard.eval.report.render import check_readme

    cfg = load_report_config(config)
    out = out if out is not None else Path("reports") / cfg.name
    if readme is not None:
        check_readme(readme)  # before the long run, not after
    report = run_report(cfg, out, work, force=force, progress=sys.stderr.isatty() if progress is None else progress)
    command = f"voiceguard eval report --config {config} --out {out}"
    block = headline_markdown(report, command)
    click.echo(block)
    if readme is not None:
        update_readme(readme, block)
        click.echo(f"{readme}: headline block updated")
    click.echo(f"{out}: report.md, report.html, report.json, {len(report['figures'])} figures "
               f"({report['wall_seconds']:.0f} s)")


@click.group("data")
def data_group() -> None:
    """Protocols and corpora: build an ASVspoof 2019 LA-style corpus, inspect and validate protocol files."""


@data_group.command("build")
@click.option("--source", required=True, type=click.Path(path_type=Path),
              help="Folder of real speech (recursive). Speakers from LibriSpeech names or sub-folder names.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New (or empty) output folder.")
@click.option("--config", "config", default="default", show_default=True,
              help="Shipped config name (default, tiny) or a YAML file.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--workers", type=WORKERS, default=None, help="Parallel processes (default: the config's).")
def build_command(source: Path, out: Path, config: str, seed: int, workers: int | None) -> None:
    """Build an ASVspoof 2019 LA-style corpus (flac/, protocols/, corpus.json, shortcut_check.json)."""
    from voiceguard.eval.corpus import prepare_corpus

    card = prepare_corpus(source, out, config, seed, workers=workers, progress=True)
    rows = [{"split": s, **{k: v for k, v in c.items() if k != "per_attack"},
             "attacks": " ".join(f"{a}:{n}" for a, n in c["per_attack"].items() if a != "-")}
            for s, c in card.counts.items()]
    click.echo(writers.table(rows, ["split", "bonafide", "spoof", "speakers", "hours", "attacks"]))
    verdict = "passed" if card.shortcut_pass else "FAILED (see shortcut_check.json)"
    click.echo(f"{out}: built in {card.seconds:.0f} s; shortcut check {verdict}")


@data_group.command("protocol")
@click.argument("protocol", type=click.Path(path_type=Path))
@click.option("--format", "--protocol-format", "fmt", type=click.Choice(PROTOCOL_FORMATS), default="auto",
              show_default=True, help="protocol format: auto (sniffed from the content) or a reader's name")
@click.option("--audio-dir", type=click.Path(path_type=Path), default=None,
              help="Check that every trial's audio file exists here.")
@click.option("--ext", default=".flac", show_default=True, help="Audio extension for id-only protocols.")
@click.option("--json", "as_json", is_flag=True)
def protocol_command(protocol: Path, fmt: str, audio_dir: Path | None, ext: str, as_json: bool) -> None:
    """Read and validate a protocol; print its counts per class, attack and speaker."""
    trials = read_protocol(protocol, fmt)
    if audio_dir is not None:
        check_audio_files(trials, audio_dir, ext, source=str(protocol))
    s = summarize(trials)
    if as_json:
        click.echo(writers.to_json(s.to_dict()))
        return
    click.echo(f"{protocol}: {s.n_trials} trials, {s.n_bonafide} bona fide, {s.n_spoof} spoof, "
               f"{s.n_speakers} speakers")
    if s.attacks:
        click.echo(writers.table([{"attack": a, "n": n} for a, n in s.attacks.items()], ["attack", "n"]))


@click.group("attacks")
def attacks_group() -> None:
    """Robustness attacks: noise, filters, resampling, real codecs, speed/pitch, echo/reverb, edits, RawBoost."""


@attacks_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def attacks_list_command(as_json: bool) -> None:
    """Every attack: parameters with defaults, contracts, and whether it can run here."""
    rows = attack_catalogue()
    if as_json:
        click.echo(writers.to_json(rows))
        return
    click.echo(writers.table(rows, ["name", "params", "length", "torch", "available", "description"]))
    click.echo(f"\nsuites: {', '.join(list_suites())} (voiceguard attacks suite NAME)")


@attacks_group.command("suite")
@click.argument("name")
def attacks_suite_command(name: str) -> None:
    """Show the conditions of a shipped suite (or of a suite YAML file)."""
    suite = load_suite(name)
    click.echo(f"{suite.name}: {suite.description.strip()}")
    rows = [{"label": r.label, "attack": r.attack, "params": r.params} for r in suite.rows]
    click.echo(writers.table(rows, ["label", "attack", "params"]))


@attacks_group.command("run-suite")
@click.argument("suite")
@click.argument("inp", metavar="IN", type=click.Path(path_type=Path))
@click.argument("out_dir", metavar="OUT_DIR", type=click.Path(path_type=Path))
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def attacks_run_suite_command(suite: str, inp: Path, out_dir: Path, seed: int, overwrite: bool) -> None:
    """Apply every condition of SUITE to IN, writing OUT_DIR/<label><ext>; unavailable ones are reported."""
    results = apply_suite_file(suite, inp, out_dir, seed=seed, overwrite=overwrite)
    click.echo(writers.table([r.__dict__ for r in results], ["label", "status", "output", "detail"]))
    if any(r.status == "error" for r in results):
        raise SystemExit(2)


@attacks_group.command("apply")
@click.argument("attack")
@click.argument("inp", metavar="IN", type=click.Path(path_type=Path))
@click.argument("out", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--param", "-p", "params", multiple=True, help="key=value (repeatable); a range as key=[lo,hi].")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def attacks_apply_command(attack: str, inp: Path, out: Path, params: tuple[str, ...], seed: int,
                          overwrite: bool) -> None:
    """Apply ATTACK to the file IN and write OUT (same rate, channels and subtype)."""
    res = apply_attack_file(attack, inp, out, parse_attack_params(params), seed=seed, overwrite=overwrite)
    click.echo(f"{res.output}: {res.attack} {res.parameters} ({res.in_seconds:.2f} s -> {res.out_seconds:.2f} s)")


__all__ = ["eval_group", "data_group", "attacks_group", "BOOTSTRAP", "BootstrapCount"]
