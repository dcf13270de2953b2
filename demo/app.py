"""The Gradio app: ``build_demo()`` wires the pure handlers of ``handlers.py`` to widgets (no launch)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from voiceguard.errors import VoiceguardError

from . import handlers as H

TITLE = "voiceguard: spoof detection, watermarking and voiceprint risk"
log = logging.getLogger("voiceguard.demo")


def _shown(text: str, args: tuple) -> str:
    """``text`` with the full path of every uploaded file (Gradio's temporary copy, ``.../<hash>/<name>``)
    replaced by its file name, which Gradio keeps from the user's original file."""
    for a in sorted((a for a in args if isinstance(a, str) and os.sep in a), key=len, reverse=True):
        text = text.replace(a, Path(a).name)
    return text


def user_message(error: VoiceguardError, args: tuple = ()) -> str:
    """``NAME: reason`` with the file's name only (never the server's temporary folder)."""
    name = Path(error.source).name if error.source else None
    reason = _shown(error.reason, args)
    if name and reason.startswith(f"{name}: "):  # a per-file error already naming the file
        reason = reason[len(name) + 2:]
    return f"{name}: {reason}" if name else reason


def friendly(fn: Callable) -> Callable:
    """Errors become a one-line message in the page (``gr.Error``) naming the uploaded file by its name.
    A user's error (``VoiceguardError``) prints no traceback in the server log (one INFO line at most); an
    unexpected exception (a bug) is logged once with its traceback, for whoever fixes it."""
    import gradio as gr

    def wrapped(*args):
        try:
            return fn(*args)
        except VoiceguardError as e:
            msg = user_message(e, args)
            log.info("%s: %s", fn.__name__.strip("_"), msg)
            raise gr.Error(msg, print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - a bug: one line in the page, the traceback in the log
            log.exception("%s failed", fn.__name__.strip("_"))
            raise gr.Error(_shown(f"internal error (a bug; details in the server log): {type(e).__name__}: {e}",
                                  args), print_exception=False) from None

    wrapped.__name__ = fn.__name__
    return wrapped


def _examples(gr, inputs: list) -> None:
    """The example clips (``handlers.example_clips``) as one-click inputs of ``inputs``' first widget."""
    clips = H.example_clips()
    if clips:
        gr.Examples([[p] for p, _ in clips], inputs, label="example clips (click one to load it)",
                    example_labels=[label for _, label in clips])


def _scan(path):
    v = H.scan_clip(path)
    return v.summary, v.window_plot, v.presence_plot


def _embed(path, message, engine):
    v = H.embed_clip(path, message, engine=engine)
    return v.summary, v.output, v.output


def _detect(path, expected, engine):
    v = H.detect_clip(path, expected, engine=engine)
    return v.summary, v.plot


def _attack(path, attack, params, seed):
    v = H.attack_clip(path, attack, params, seed)
    table = "| | before | after |\n|---|---|---|\n" + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in v.rows)
    return v.summary + "\n\n" + table, v.output


def _voices(a, b):
    return H.compare_voices(a, b).summary


def _report(folder):
    v = H.report_view(folder)
    return v.markdown, list(v.figures)


def build_demo(report_dir: str | None = None):
    """The ``gr.Blocks`` app with its tabs; call ``.launch()`` on it (``voiceguard demo`` does).
    ``report_dir``: the Report tab's first choice (else the latest report found, see ``handlers.report_view``)."""
    import gradio as gr

    audio = dict(type="filepath", sources=["upload", "microphone"])
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nUploads up to {H.MAX_MB:.0f} MB and {H.MAX_SECONDS / 60:.0f} min; everything "
                    "runs locally with the shipped models.")
        with gr.Tab("Scan"):
            scan_in = gr.Audio(label="clip", elem_id="scan-audio", **audio)
            _examples(gr, [scan_in])
            scan_btn = gr.Button("Scan", elem_id="scan-button", variant="primary")
            scan_out = gr.Markdown(elem_id="scan-result")
            scan_plot = gr.Plot(label="spoof score per window")
            scan_wm = gr.Plot(label="watermark presence")
            scan_btn.click(friendly(_scan), [scan_in], [scan_out, scan_plot, scan_wm])
        with gr.Tab("Watermark"):
            wm_in = gr.Audio(label="clip to watermark", elem_id="wm-audio", **audio)
            _examples(gr, [wm_in])
            wm_msg = gr.Textbox(label="message (16 bits: hex or int)", value="0xBEEF", elem_id="wm-message")
            wm_engine = gr.Radio(H.engines(), value=H.DEFAULT_ENGINE, label="engine (spread-spectrum: the default, "
                                 "message verified by its code; audioseal: the neural model, no message check)", elem_id="wm-engine")
            wm_btn = gr.Button("Embed", elem_id="wm-embed", variant="primary")
            wm_out = gr.Markdown(elem_id="wm-result")
            wm_play = gr.Audio(label="watermarked", type="filepath", interactive=False)
            wm_file = gr.File(label="download")
            wm_btn.click(friendly(_embed), [wm_in, wm_msg, wm_engine], [wm_out, wm_play, wm_file])
            gr.Markdown("### Detect a watermark")
            det_in = gr.Audio(label="clip to check", elem_id="det-audio", **audio)
            det_exp = gr.Textbox(label="expected message (optional)", elem_id="det-expected")
            det_btn = gr.Button("Detect", elem_id="det-button")
            det_out = gr.Markdown(elem_id="det-result")
            det_plot = gr.Plot(label="presence")
            det_btn.click(friendly(_detect), [det_in, det_exp, wm_engine], [det_out, det_plot])
            wm_play.change(lambda p: p, [wm_play], [det_in])  # the watermarked clip is ready to detect
        with gr.Tab("Attack lab"):
            at_in = gr.Audio(label="clip", elem_id="attack-audio", **audio)
            names = H.attack_names()
            at_name = gr.Dropdown(names, value="mp3" if "mp3" in names else names[0], label="attack")
            at_params = gr.Textbox(label="parameters (key=value, ...)", placeholder="bitrate=32k")
            at_seed = gr.Number(value=0, precision=0, label="seed")
            at_btn = gr.Button("Attack", variant="primary")
            at_out = gr.Markdown(elem_id="attack-result")
            at_play = gr.Audio(label="attacked", type="filepath", interactive=False)
            at_btn.click(friendly(_attack), [at_in, at_name, at_params, at_seed], [at_out, at_play])
        with gr.Tab("Voiceprint risk"):
            va = gr.Audio(label="clip A", elem_id="voice-a", **audio)
            vb = gr.Audio(label="clip B", elem_id="voice-b", **audio)
            v_btn = gr.Button("Compare voices", variant="primary")
            v_out = gr.Markdown(elem_id="voice-result")
            v_btn.click(friendly(_voices), [va, vb], [v_out])
        with gr.Tab("Report"):
            rep_dir = gr.State(report_dir)
            rep_btn = gr.Button("Load the latest report", elem_id="report-button")
            rep_out = gr.Markdown(elem_id="report-result")
            rep_gallery = gr.Gallery(label="figures", columns=2, height="auto", elem_id="report-figures")
            rep_btn.click(friendly(_report), [rep_dir], [rep_out, rep_gallery])
    return demo


__all__ = ["build_demo", "friendly", "user_message"]
