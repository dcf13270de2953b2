"""CLI of the risk package: ``risk asv | watermark | reid | compare | backends``. Thin wrappers over checks.py."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from voiceguard import writers
from voiceguard.cli.options import (BOOTSTRAP, SEED, echo_result, finite_float, format_option, protocol_format_option,
                                    registered)

def _backend_options(f):
    f = click.option("--no-cache", is_flag=True, help="do not read or write the embedding cache")(f)
    f = click.option("--model", "model", default=None,
                     help="resemblyzer: a voice-encoder .pt; ecapa: a SpeechBrain model folder or hub id "
                          "[default: the backend's own]")(f)
    return click.option("--backend", metavar="NAME", default="resemblyzer", show_default=True,
                        callback=registered(_embedders),
                        help="speaker-embedding backend (`voiceguard risk backends` lists them)")(f)


def _embedders():
    from voiceguard.eval.risk.embedders import EMBEDDERS

    return EMBEDDERS


def _engines():
    from voiceguard.watermark import WATERMARKERS

    return WATERMARKERS


def _progress(total: int, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr, disable=not sys.stderr.isatty())
    return bar, bar.update


def _warn_skipped(skipped) -> None:
    for p in skipped:
        click.echo(f"voiceguard: warning: {p.path}: {p.reason} (left out)", err=True)


@click.group("risk")
def risk_group() -> None:
    """Voiceprint risk: would an ASV accept a spoof, does a watermark change identity, can speakers be
    re-identified."""


@risk_group.command("backends")
@format_option
def backends_command(fmt: str) -> None:
    """List the speaker-embedding backends."""
    from voiceguard.eval.risk.embedders import CATALOGUE_COLUMNS, embedder_catalogue

    rows = embedder_catalogue()
    echo_result(fmt, None, rows, CATALOGUE_COLUMNS,
                lambda: "".join(f"{r['name']:12s} {r['description']}\n" for r in rows))


def _asv_text(res) -> str:
    """The table output of ``risk asv``."""
    m = res.metrics
    lines = [f"ASV ({res.backend['backend']}, cosine, normalisation: {res.normalisation}): {res.scored} of "
             f"{res.n_trials} trials scored ({m.n_target} target, {m.n_nontarget} non-target, {m.n_spoof} spoof)",
             f"ASV EER      {m.eer * 100:.2f} %   threshold {m.threshold:.4f}",
             f"at the ASV EER threshold: P_miss {m.p_miss * 100:.2f} %   P_fa non-target "
             f"{m.p_fa_nontarget * 100:.2f} %" + (f"   P_fa spoof {m.p_fa_spoof * 100:.2f} %"
                                                  if m.p_fa_spoof is not None else "")]
    if m.spf_eer is not None:
        lines.append(f"SPF-EER      {m.spf_eer * 100:.2f} %   SASV-EER {m.sasv_eer * 100:.2f} %")
    if res.per_attack:
        rows = [{**a.__dict__, "fools_asv": "yes" if a.fools_asv else "no"} for a in res.per_attack]
        lines += ["\nspoof acceptance per attack (share of spoofs the ASV accepts as the claimed speaker):",
                  writers.table(rows, ["attack", "n", "accepted", "mean_score", "fools_asv"], percent=["accepted"],
                                headers={"accepted": "accepted %"})]
    if res.score_file:
        lines.append(f"\nASV scores written to {res.score_file} (t-DCF: voiceguard eval eer --scores CM_SCORES "
                     f"--asv-scores {res.score_file})")
    return "\n".join(lines) + "\n"


@risk_group.command("asv")
@click.option("--corpus", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="a corpus from `voiceguard data build` (its protocols/VG.asv.SPLIT.* lists and flac/)")
@click.option("--split", type=click.Choice(["dev", "eval"]), default="eval", show_default=True)
@click.option("--enroll", "enroll", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="instead of --corpus: enrolment list 'SPEAKER utt1,utt2,...' (ASVspoof 2019 *.trn.txt)")
@click.option("--trials", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="instead of --corpus: trial list 'SPEAKER UTT SOURCE KEY' (KEY target/nontarget/spoof)")
@click.option("--audio-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--ext", default=".flac", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the ASV score file ('SOURCE KEY SCORE') for `voiceguard eval eer --asv-scores`")
@click.option("--overwrite", is_flag=True, help="replace an existing score file")
@click.option("--snorm", is_flag=True, help="s-norm with the corpus train split's bona fide audio as cohort")
@click.option("--cohort", type=click.Path(exists=True, path_type=Path), default=None,
              help="folder of cohort audio for s-norm (other speakers than the trials')")
@click.option("--top-n", type=click.IntRange(1, 1_000_000), default=None, help="adaptive s-norm: the N closest cohort scores")
@_backend_options
@format_option(help="output: a table, one JSON object, or JSON lines / CSV with a row for all trials and one per "
                    "attack")
def asv_command(corpus, split, enroll, trials, audio_dir, ext, out, overwrite, snorm, cohort, top_n, backend, model,
                no_cache, fmt):
    """Score ASV trials (target / non-target / spoof): ASV EER, spoof acceptance per attack, SPF-/SASV-EER."""
    from voiceguard.eval.risk.checks import ASV_COLUMNS, asv_check, asv_inputs
    from voiceguard.eval.risk.embedders import load_embedder

    if corpus is None and (enroll is None or trials is None or audio_dir is None):
        raise click.UsageError("give --corpus DIR, or --enroll, --trials and --audio-dir")
    if snorm and corpus is None and cohort is None:
        raise click.UsageError("--snorm without --corpus needs --cohort DIR")
    inputs = asv_inputs(corpus=corpus, split=split, enroll=enroll, trials=trials, audio_dir=audio_dir, ext=ext,
                        snorm=snorm, cohort=cohort)
    emb = load_embedder(backend, model)
    bar, tick = _progress(inputs.n_files, "asv")
    res = asv_check(inputs.enrollment, list(inputs.trials), inputs.audio_dir, emb, ext=ext,
                    cohort=None if inputs.cohort is None else list(inputs.cohort), top_n=top_n, out=out,
                    overwrite=overwrite, cache=not no_cache, progress=tick)
    bar.close()
    _warn_skipped(res.skipped)
    echo_result(fmt, res, res.rows(), ASV_COLUMNS, lambda: _asv_text(res))


def _watermark_text(res) -> str:
    """The table output of ``risk watermark``."""
    lines = [f"{res.n_files} files, engine {res.engine}, backend {res.backend['backend']}",
             f"cosine original vs watermarked: mean {res.cosine_mean:.4f}   min {res.cosine_min:.4f}   "
             f"5th percentile {res.cosine_p05:.4f}   (goal: mean >= 0.98)"]
    if res.eer_before is not None:
        lines.append(f"ASV EER before {res.eer_before * 100:.2f} %   after {res.eer_after * 100:.2f} %   "
                     f"({res.n_target} target / {res.n_nontarget} non-target pairs; after = test side watermarked)")
    lines.append(f"verdict: {'identity preserved' if res.passed else 'IDENTITY CHANGED'}")
    return "\n".join(lines) + "\n"


@risk_group.command("watermark")
@click.argument("source", type=click.Path(exists=True))
@click.option("--labels", default=None, help="CSV path,speaker (or a protocol) for the speakers of the files")
@click.option("--speaker-from", type=click.Choice(["folder", "prefix", "none"]), default="folder",
              show_default=True, help="speaker of each file: SOURCE/SPEAKER/... sub-folder, SPEAKER-... file "
                                      "name prefix, or none (cosine only, no EER)")
@click.option("--engine", metavar="NAME", default="audioseal", show_default=True, callback=registered(_engines),
              help="watermark engine (`voiceguard watermark list` lists them)")
@click.option("--message", default="0xBEEF", show_default=True)
@protocol_format_option
@_backend_options
@format_option(help="output: a table, one JSON object, or JSON lines / CSV with one row per file")
def watermark_command(source, labels, speaker_from, engine, message, protocol_format, backend, model, no_cache, fmt):
    """Does watermarking change identity? Cosine original vs watermarked, ASV EER before / after."""
    from voiceguard.watermark import load_watermarker

    from voiceguard.eval.risk.checks import WATERMARK_COLUMNS, watermark_check
    from voiceguard.eval.risk.embedders import load_embedder
    from voiceguard.eval.risk.labels import files_to_check

    files = files_to_check(source, labels, speaker_from, protocol_format)
    wm = load_watermarker(engine, need="embed")
    emb = load_embedder(backend, model)
    bar, tick = _progress(len(files), "embed")
    res = watermark_check(files, wm, message=message, embedder=emb, cache=not no_cache, progress=tick)
    bar.close()
    _warn_skipped(res.skipped)
    echo_result(fmt, res, res.rows(), WATERMARK_COLUMNS, lambda: _watermark_text(res))


def _reid_text(res) -> str:
    """The table output of ``risk reid``."""
    rows = [{**r, "eer_ci": (f"{r['eer_ci_low'] * 100:.1f}-{r['eer_ci_high'] * 100:.1f}"
                             if r["eer_ci_low"] is not None else "")} for r in res.rows()]
    table = writers.table(rows, ["attacker", "enrolment", "probes", "speakers", "eer", "eer_ci", "d_sys", "min_cllr",
                                 "rank1", "rank5"], percent=["eer", "rank1", "rank5"],
                          headers={"eer": "EER %", "eer_ci": "95% CI", "rank1": "rank-1 %", "rank5": "rank-5 %"})
    return f"{table}\n\nrisk: {res.explanation}\n"


@risk_group.command("reid")
@click.option("--enroll", "enroll", required=True, type=click.Path(exists=True),
              help="original audio of the speakers (folder SPEAKER/..., or with --enroll-labels)")
@click.option("--probe", required=True, type=click.Path(exists=True),
              help="the audio to assess (processed, synthetic, anonymised, a dataset to release)")
@click.option("--lazy-enroll", type=click.Path(exists=True), default=None,
              help="enrolment audio processed like the probes (lazy-informed attacker) [default: leave-one-out "
                   "within the probe set]")
@click.option("--enroll-labels", default=None, help="CSV path,speaker or a protocol for --enroll")
@click.option("--probe-labels", default=None, help="CSV path,speaker or a protocol for --probe")
@click.option("--speaker-from", type=click.Choice(["folder", "prefix"]), default="folder", show_default=True)
@click.option("--min-enroll", type=click.IntRange(1, 100_000), default=1, show_default=True,
              help="enrolment files every speaker must have")
@click.option("--bootstrap", type=BOOTSTRAP, default=0, show_default=True,
              help="resamples for 95 % intervals: 0 = off, else 200..100000")
@click.option("--seed", type=SEED, default=0, show_default=True)
@protocol_format_option
@_backend_options
@format_option(help="output: a table, one JSON object, or JSON lines / CSV with one row per attacker")
def reid_command(enroll, probe, lazy_enroll, enroll_labels, probe_labels, speaker_from, min_enroll, bootstrap, seed,
                 protocol_format, backend, model, no_cache, fmt):
    """Re-identification risk of PROBE speakers against enrolled originals, for two attackers."""
    from voiceguard.eval.risk.checks import REID_COLUMNS, reid_check
    from voiceguard.eval.risk.embedders import load_embedder
    from voiceguard.eval.risk.labels import labeled_files

    e = labeled_files(enroll, enroll_labels, speaker_from, protocol_format)
    p = labeled_files(probe, probe_labels, speaker_from, protocol_format)
    le = labeled_files(lazy_enroll, None, speaker_from) if lazy_enroll else None
    emb = load_embedder(backend, model)
    bar, tick = _progress(len(e) + len(p) + len(le or []), "embed")
    res = reid_check(e, p, emb, lazy_enroll=le, min_enroll_files=min_enroll, n_boot=bootstrap, seed=seed,
                     cache=not no_cache, progress=tick)
    bar.close()
    _warn_skipped(res.skipped)
    echo_result(fmt, res, res.rows(), REID_COLUMNS, lambda: _reid_text(res))


def _compare_text(res) -> str:
    """The table output of ``risk compare``."""
    verdict = ("no calibrated threshold" if res.same_speaker is None else
               "same speaker" if res.same_speaker else "different speakers")
    thr = "" if res.threshold is None else f" (threshold {res.threshold:.4f})"
    return f"cosine {res.cosine:.4f}: {verdict}{thr}\n"


@risk_group.command("compare")
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("--threshold", type=finite_float(-1, 1), default=None,
              help="same-speaker cosine threshold [default: the backend card's calibrated one]")
@_backend_options
@format_option
def compare_command(a, b, threshold, backend, model, no_cache, fmt):
    """Are clips A and B the same speaker? Cosine of their embeddings and the decision."""
    from voiceguard.eval.risk.checks import COMPARE_COLUMNS, compare_clips
    from voiceguard.eval.risk.embedders import load_embedder

    res = compare_clips(a, b, load_embedder(backend, model), threshold=threshold, cache=not no_cache)
    echo_result(fmt, res, res.rows(), COMPARE_COLUMNS, lambda: _compare_text(res))


__all__ = ["risk_group"]
