"""CLI of the risk package: ``risk asv | watermark | reid | compare | backends``. Thin wrappers over checks.py."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from voiceguard import writers
from voiceguard.cli.options import SEED, finite_float, protocol_format_option
from voiceguard.errors import RiskError

from voiceguard.cli.eval import BOOTSTRAP

PCT = ["eer", "p_miss", "p_fa_nontarget", "p_fa_spoof", "spf_eer", "sasv_eer", "accepted", "rank1", "rank5"]


def _backend_options(f):
    f = click.option("--no-cache", is_flag=True, help="do not read or write the embedding cache")(f)
    f = click.option("--model", "model", default=None,
                     help="resemblyzer: a voice-encoder .pt; ecapa: a SpeechBrain model folder or hub id "
                          "[default: the backend's own]")(f)
    return click.option("--backend", type=click.Choice(["resemblyzer", "ecapa"]), default="resemblyzer",
                        show_default=True, help="speaker-embedding backend")(f)


def _embedder(backend: str, model: str | None):
    from voiceguard.eval.risk.embedders import get_embedder

    if model is None:
        return get_embedder(backend)
    return get_embedder(backend, **({"weights": model} if backend == "resemblyzer" else {"source": model}))


def _progress(total: int, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr, disable=not sys.stderr.isatty())
    return bar, bar.update


def _warn_skipped(skipped) -> None:
    for p in skipped:
        click.echo(f"voiceguard: warning: {p.path}: {p.reason} (left out)", err=True)


def _files(source: str, labels: str | None, speaker_from: str, protocol_format: str = "auto"):
    """Labelled files of SOURCE: from a label CSV (path,speaker[,key]) or a protocol (paths relative to SOURCE;
    told apart by content) or from the folder layout."""
    from voiceguard.eval.risk.labels import is_label_csv, labels_from_csv, labels_from_folder, labels_from_protocol

    if labels:
        if protocol_format == "auto" and is_label_csv(labels):
            return labels_from_csv(labels, root=source if Path(source).is_dir() else None)
        return labels_from_protocol(labels, source, fmt=protocol_format)
    return labels_from_folder(source, speaker_from)


@click.group("risk")
def risk_group() -> None:
    """Voiceprint risk: would an ASV accept a spoof, does a watermark change identity, can speakers be
    re-identified."""


@risk_group.command("backends")
def backends_command() -> None:
    """List the speaker-embedding backends."""
    from voiceguard.eval.risk.embedders import EMBEDDERS

    for name, cls in sorted(EMBEDDERS.items()):
        click.echo(f"{name:12s} {(cls.__doc__ or '').strip().splitlines()[0]}")


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
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def asv_command(corpus, split, enroll, trials, audio_dir, ext, out, overwrite, snorm, cohort, top_n, backend, model,
                no_cache, fmt):
    """Score ASV trials (target / non-target / spoof): ASV EER, spoof acceptance per attack, SPF-/SASV-EER."""
    from voiceguard.audio import find_audio_files
    from voiceguard.protocols import read_protocol

    from voiceguard.eval.risk.checks import asv_check, corpus_asv_paths, read_asv_enrollment, read_asv_trials

    cohort_files = None
    if corpus is not None:
        enroll, trials, audio_dir, train = corpus_asv_paths(corpus, split)
        if snorm:
            cohort_files = [str(t.audio_path(audio_dir, ext)) for t in read_protocol(train) if t.is_bonafide]
    elif enroll is None or trials is None or audio_dir is None:
        raise click.UsageError("give --corpus DIR, or --enroll, --trials and --audio-dir")
    if cohort is not None:
        cohort_files = [str(p) for p in find_audio_files([cohort])[0]]
    elif snorm and cohort_files is None:
        raise click.UsageError("--snorm without --corpus needs --cohort DIR")
    emb = _embedder(backend, model)
    enrollment, trial_list = read_asv_enrollment(enroll), read_asv_trials(trials)
    bar, tick = _progress(len({t.utt_id for t in trial_list} | {u for us in enrollment.values() for u in us}), "asv")
    res = asv_check(enrollment, trial_list, audio_dir, emb, ext=ext, cohort=cohort_files, top_n=top_n, out=out,
                    overwrite=overwrite, cache=not no_cache, progress=tick)
    bar.close()
    _warn_skipped(res.skipped)
    if fmt == "json":
        click.echo(writers.to_json(res.to_dict()))
        return
    m = res.metrics
    click.echo(f"ASV ({res.backend['backend']}, cosine, normalisation: {res.normalisation}): {res.scored} of "
               f"{res.n_trials} trials scored ({m.n_target} target, {m.n_nontarget} non-target, {m.n_spoof} spoof)")
    click.echo(f"ASV EER      {m.eer * 100:.2f} %   threshold {m.threshold:.4f}")
    click.echo(f"at the ASV EER threshold: P_miss {m.p_miss * 100:.2f} %   P_fa non-target "
               f"{m.p_fa_nontarget * 100:.2f} %" + (f"   P_fa spoof {m.p_fa_spoof * 100:.2f} %"
                                                     if m.p_fa_spoof is not None else ""))
    if m.spf_eer is not None:
        click.echo(f"SPF-EER      {m.spf_eer * 100:.2f} %   SASV-EER {m.sasv_eer * 100:.2f} %")
    if res.per_attack:
        rows = [{**a.__dict__, "fools_asv": "yes" if a.fools_asv else "no"} for a in res.per_attack]
        click.echo("\nspoof acceptance per attack (share of spoofs the ASV accepts as the claimed speaker):")
        click.echo(writers.table(rows, ["attack", "n", "accepted", "mean_score", "fools_asv"], percent=["accepted"],
                                 headers={"accepted": "accepted %"}))
    if res.score_file:
        click.echo(f"\nASV scores written to {res.score_file} (t-DCF: voiceguard eval eer --scores CM_SCORES "
                   f"--asv-scores {res.score_file})")


@risk_group.command("watermark")
@click.argument("source", type=click.Path(exists=True))
@click.option("--labels", default=None, help="CSV path,speaker (or a protocol) for the speakers of the files")
@click.option("--speaker-from", type=click.Choice(["folder", "prefix", "none"]), default="folder",
              show_default=True, help="speaker of each file: SOURCE/SPEAKER/... sub-folder, SPEAKER-... file "
                                      "name prefix, or none (cosine only, no EER)")
@click.option("--engine", type=click.Choice(["audioseal", "spread-spectrum"]), default="audioseal",
              show_default=True)
@click.option("--message", default="0xBEEF", show_default=True)
@protocol_format_option
@_backend_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def watermark_command(source, labels, speaker_from, engine, message, protocol_format, backend, model, no_cache, fmt):
    """Does watermarking change identity? Cosine original vs watermarked, ASV EER before / after."""
    from voiceguard.audio import find_audio_files
    from voiceguard.cli.watermark import load_engine

    from voiceguard.eval.risk.checks import watermark_check

    if labels or speaker_from != "none":
        files = _files(source, labels, speaker_from, protocol_format)
    else:
        found, problems = find_audio_files([source])
        _warn_skipped(problems)
        files = [str(p) for p in found]
        if not files:
            raise RiskError("no audio files", source=source)
    wm = load_engine(engine, need="generator")
    emb = _embedder(backend, model)
    bar, tick = _progress(len(files), "embed")
    res = watermark_check(files, wm, message=message, embedder=emb, cache=not no_cache, progress=tick)
    bar.close()
    _warn_skipped(res.skipped)
    if fmt == "json":
        click.echo(writers.to_json(res.to_dict()))
        return
    click.echo(f"{res.n_files} files, engine {res.engine}, backend {res.backend['backend']}")
    click.echo(f"cosine original vs watermarked: mean {res.cosine_mean:.4f}   min {res.cosine_min:.4f}   "
               f"5th percentile {res.cosine_p05:.4f}   (goal: mean >= 0.98)")
    if res.eer_before is not None:
        click.echo(f"ASV EER before {res.eer_before * 100:.2f} %   after {res.eer_after * 100:.2f} %   "
                   f"({res.n_target} target / {res.n_nontarget} non-target pairs; after = test side watermarked)")
    click.echo(f"verdict: {'identity preserved' if res.passed else 'IDENTITY CHANGED'}")


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
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def reid_command(enroll, probe, lazy_enroll, enroll_labels, probe_labels, speaker_from, min_enroll, bootstrap, seed,
                 protocol_format, backend, model, no_cache, fmt):
    """Re-identification risk of PROBE speakers against enrolled originals, for two attackers."""
    from voiceguard.eval.risk.checks import reid_check

    e = _files(enroll, enroll_labels, speaker_from, protocol_format)
    p = _files(probe, probe_labels, speaker_from, protocol_format)
    le = _files(lazy_enroll, None, speaker_from) if lazy_enroll else None
    emb = _embedder(backend, model)
    bar, tick = _progress(len(e) + len(p) + len(le or []), "embed")
    res = reid_check(e, p, emb, lazy_enroll=le, min_enroll_files=min_enroll, n_boot=bootstrap, seed=seed, cache=not no_cache, progress=tick)
    bar.close()
    _warn_skipped(res.skipped)
    if fmt == "json":
        click.echo(writers.to_json(res.to_dict()))
        return
    rows = []
    for a in res.attackers:
        ci = (f"{a.link.eer_ci[0] * 100:.1f}-{a.link.eer_ci[1] * 100:.1f}" if a.link.eer_ci else "")
        rows.append({"attacker": a.scenario, "enrolment": a.enrollment, "probes": a.n_probes,
                     "speakers": a.n_speakers, "eer": a.link.eer, "eer_ci": ci, "d_sys": a.link.d_sys,
                     "min_cllr": a.link.min_cllr, "rank1": a.rank.get("rank1"), "rank5": a.rank.get("rank5")})
    click.echo(writers.table(rows, ["attacker", "enrolment", "probes", "speakers", "eer", "eer_ci", "d_sys",
                                    "min_cllr", "rank1", "rank5"], percent=["eer", "rank1", "rank5"],
                             headers={"eer": "EER %", "eer_ci": "95% CI", "rank1": "rank-1 %", "rank5": "rank-5 %"}))
    click.echo(f"\nrisk: {res.explanation}")


@risk_group.command("compare")
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("--threshold", type=finite_float(-1, 1), default=None,
              help="same-speaker cosine threshold [default: the backend card's calibrated one]")
@_backend_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def compare_command(a, b, threshold, backend, model, no_cache, fmt):
    """Are clips A and B the same speaker? Cosine of their embeddings and the decision."""
    from voiceguard.eval.risk.checks import compare_clips

    res = compare_clips(a, b, _embedder(backend, model), threshold=threshold, cache=not no_cache)
    if fmt == "json":
        click.echo(writers.to_json(res.to_dict()))
        return
    verdict = ("no calibrated threshold" if res.same_speaker is None else
               "same speaker" if res.same_speaker else "different speakers")
    thr = "" if res.threshold is None else f" (threshold {res.threshold:.4f})"
    click.echo(f"cosine {res.cosine:.4f}: {verdict}{thr}")


__all__ = ["risk_group"]
