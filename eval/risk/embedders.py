"""Speaker-embedding backends: one interface, one registry.

A backend turns 16 kHz mono float32 arrays into L2-normalised speaker embeddings. It never reads
files (``voiceguard.eval.risk.embed`` does that, once, with the content-hash cache).

* ``resemblyzer`` (default): the GE2E LSTM whose weights ship inside the ``resemblyzer`` wheel, so it
  works offline. Its weights file is checked against the sha256 pinned in ``cards/resemblyzer.yaml``
  and loaded with ``torch.load(weights_only=True)``.
* ``ecapa``: SpeechBrain's ECAPA-TDNN through ``speechbrain.inference.speaker.EncoderClassifier``,
  from a local model folder (``hyperparams.yaml`` + ``embedding_model.ckpt``) or a hub id
  (``speechbrain/spkrec-ecapa-voxceleb``, needs internet the first time).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from voiceguard.cards import ModelCard, cache_dir, find_card, load_state_dict, sha256_file
from voiceguard.errors import AudioTooShortError, EmptyAudioError, ModelCardError
from voiceguard.registry import Registry
from voiceguard.audio import SAMPLE_RATE

CARDS_DIR = Path(__file__).parent / "cards"
MIN_SECONDS = 0.5  # shortest audio any backend is asked to embed
MIN_SPEECH_SECONDS = 0.25  # voiced audio left after Resemblyzer's voice activity detection
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a clip holds no speech to embed

EMBEDDERS: Registry[type["SpeakerEmbedder"]] = Registry("speaker-embedding backend")


register = EMBEDDERS.register  # class decorator: EMBEDDERS[cls.name] = cls


def check_speech(wav: np.ndarray, source: str | None = None, min_seconds: float = MIN_SECONDS) -> None:
    """Raise a clear error for audio too short or too silent to carry a voice."""
    if wav.ndim != 1:
        raise ValueError(f"expected mono [n] audio, got shape {wav.shape}")
    seconds = wav.size / SAMPLE_RATE
    if seconds < min_seconds:
        raise AudioTooShortError(f"audio is {seconds:.3f} s long, too short for a speaker embedding "
                                 f"(minimum {min_seconds:g} s)", source=source)
    if float(np.max(np.abs(wav))) < SILENCE_PEAK:
        raise EmptyAudioError("audio is silent (peak below -80 dBFS): no voice to embed", source=source)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class SpeakerEmbedder:
    """Base class: ``embed_batch(list of 16 kHz mono arrays) -> [B, dim]`` L2-normalised embeddings."""

    name: ClassVar[str] = ""
    dim: int = 0
    card: ModelCard | None = None

    @property
    def fingerprint(self) -> str:
        """Identifies the exact model + preprocessing, so cached embeddings are never mixed up."""
        raise NotImplementedError

    @property
    def same_speaker_threshold(self) -> float | None:
        """Cosine threshold calibrated at the EER point on held-out speech (from the card), if any."""
        value = (self.card.metrics or {}).get("same_speaker_threshold") if self.card else None
        return None if value is None else float(value)

    def embed_batch(self, wavs: list[np.ndarray], sources: list[str | None] | None = None) -> np.ndarray:
        sources = sources or [None] * len(wavs)
        for w, s in zip(wavs, sources):
            check_speech(w, s)
        return self._embed(wavs, sources)

    def embed(self, wav: np.ndarray, source: str | None = None) -> np.ndarray:
        return self.embed_batch([wav], [source])[0]

    def _embed(self, wavs: list[np.ndarray], sources: list[str | None]) -> np.ndarray:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "dim": self.dim, "fingerprint": self.fingerprint,
                "model": self.card.name if self.card else None}


# --------------------------------------------------------------------------- Resemblyzer
def _resemblyzer_weights() -> Path:
    import resemblyzer

    return Path(resemblyzer.__file__).resolve().parent / "pretrained.pt"


@register
class ResemblyzerEmbedder(SpeakerEmbedder):
    """Resemblyzer's GE2E voice encoder (256-d); partial 1.6 s windows averaged per utterance."""

    name = "resemblyzer"
    dim = 256
    PREPROCESS_VERSION = "vad-norm-1"

    def __init__(self, weights: str | Path | None = None, sha256: str | None = None, device: str = "cpu",
                 batch_partials: int = 256):
        import torch
        from resemblyzer import VoiceEncoder

        self.card = find_card("resemblyzer", [CARDS_DIR])
        if weights is None:
            weights, sha256 = _resemblyzer_weights(), self.card.sha256
        state = load_state_dict(weights, sha256)
        state = dict(state.get("model_state", state))
        for k in ("similarity_weight", "similarity_bias"):  # GE2E training-loss scalars, unused for embedding
            state.pop(k, None)
        self.weights_sha256 = sha256 or sha256_file(weights)

        class _Encoder(VoiceEncoder):  # resemblyzer's network and forward; our verified weights-only loader
            def __init__(self) -> None:
                torch.nn.Module.__init__(self)
                from resemblyzer import hparams as hp

                self.lstm = torch.nn.LSTM(hp.mel_n_channels, hp.model_hidden_size, hp.model_num_layers,
                                          batch_first=True)
                self.linear = torch.nn.Linear(hp.model_hidden_size, hp.model_embedding_size)
                self.relu = torch.nn.ReLU()
                self.device = torch.device(device)

        self.model = _Encoder()
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelCardError(f"not a Resemblyzer voice-encoder checkpoint ({str(e)[:200]})",
                                 source=weights) from None
        self.model.to(device).eval()
        self.batch_partials = batch_partials

    @property
    def fingerprint(self) -> str:
        return f"resemblyzer-{self.weights_sha256[:16]}-{self.PREPROCESS_VERSION}"

    def _partials(self, wav: np.ndarray, source: str | None) -> np.ndarray:
        from resemblyzer import audio as ra
        from resemblyzer import preprocess_wav

        speech = preprocess_wav(wav.astype(np.float32))  # volume normalised, long silences trimmed (webrtcvad)
        if speech.size < MIN_SPEECH_SECONDS * SAMPLE_RATE:
            raise AudioTooShortError(f"only {speech.size / SAMPLE_RATE:.2f} s of speech after voice activity "
                                     f"detection (minimum {MIN_SPEECH_SECONDS:g} s)", source=source)
        wav_slices, mel_slices = self.model.compute_partial_slices(speech.size, rate=1.3, min_coverage=0.75)
        if wav_slices[-1].stop >= speech.size:
            speech = np.pad(speech, (0, wav_slices[-1].stop - speech.size))
        mel = ra.wav_to_mel_spectrogram(speech)
        return np.stack([mel[s] for s in mel_slices])

    def _embed(self, wavs: list[np.ndarray], sources: list[str | None]) -> np.ndarray:
        import torch

        parts = [self._partials(w, s) for w, s in zip(wavs, sources)]
        counts = [p.shape[0] for p in parts]
        mels = np.concatenate(parts)
        out = []
        with torch.inference_mode():
            for i in range(0, len(mels), self.batch_partials):
                out.append(self.model(torch.from_numpy(mels[i:i + self.batch_partials])).numpy())
        partial = np.concatenate(out)
        bounds = np.cumsum([0, *counts])
        return normalize_rows(np.stack([partial[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:])]))


# --------------------------------------------------------------------------- SpeechBrain ECAPA
ECAPA_HUB_ID = "speechbrain/spkrec-ecapa-voxceleb"


def _check_model_folder(folder: Path, sha256: str | None) -> str:
    """A local SpeechBrain folder: hyperparams present, every checkpoint plain data; returns the model sha256."""
    if not (folder / "hyperparams.yaml").is_file():
        raise ModelCardError("not a SpeechBrain model folder: no hyperparams.yaml in it (download "
                             f"{ECAPA_HUB_ID} with its hyperparams.yaml and embedding_model.ckpt)", source=folder)
    ckpt = folder / "embedding_model.ckpt"
    if not ckpt.is_file():
        raise ModelCardError(f"no embedding_model.ckpt in the model folder (download it from {ECAPA_HUB_ID})",
                             source=folder)
    for p in sorted(folder.glob("*.ckpt")):  # speechbrain loads these itself: make sure each is weights-only data
        load_state_dict(p, sha256 if p == ckpt else None)
    return sha256 or sha256_file(ckpt)


@register
class EcapaEmbedder(SpeakerEmbedder):
    """SpeechBrain ECAPA-TDNN (192-d for the VoxCeleb model), cosine-ready after L2 normalisation."""

    name = "ecapa"
    dim = 192

    def __init__(self, source: str | Path | None = None, sha256: str | None = None, device: str = "cpu",
                 savedir: str | Path | None = None, batch_seconds: float = 120.0):
        self.card = find_card("ecapa-voxceleb", [CARDS_DIR])
        source = str(source or self.card.extra.get("hub_id", ECAPA_HUB_ID))
        local = Path(source).expanduser()
        if local.exists():
            self.model_sha256 = _check_model_folder(local, sha256)
            folder = local
        else:
            if "/" not in source or source.count("/") > 1:
                raise ModelCardError(f"no such model folder, and not a hub id like {ECAPA_HUB_ID}", source=source)
            folder = Path(savedir or cache_dir() / "speechbrain" / source.replace("/", "--"))
            self.model_sha256 = ""
        from speechbrain.inference.speaker import EncoderClassifier
        from speechbrain.utils.fetching import LocalStrategy

        try:
            self.model = EncoderClassifier.from_hparams(
                source=str(folder if local.exists() else source), savedir=str(savedir or folder),
                run_opts={"device": device},
                local_strategy=LocalStrategy.NO_LINK if local.exists() else LocalStrategy.COPY)
        except Exception as e:  # offline hub, a folder speechbrain cannot build, ...
            if local.exists():
                raise ModelCardError(f"SpeechBrain could not build the model from this folder "
                                     f"({type(e).__name__}: {str(e)[:300]})", source=local) from None
            raise ModelCardError(
                f"could not fetch {source} from the Hugging Face hub ({type(e).__name__}: {str(e)[:160]}). "
                f"Without internet, download the model folder elsewhere (e.g. `huggingface-cli download {source} "
                f"--local-dir DIR`) and pass --model DIR", source=source) from None
        if self.model is None:
            raise ModelCardError("SpeechBrain returned no model (hyperparams.yaml lacks a pretrainer?)", source=source)
        if not self.model_sha256:
            self.model_sha256 = _check_model_folder(folder, sha256 or self.card.sha256)
        self.source = source
        self.device = device
        self.batch_samples = int(batch_seconds * SAMPLE_RATE)

    @property
    def fingerprint(self) -> str:
        return f"ecapa-{self.model_sha256[:16]}"

    def _embed(self, wavs: list[np.ndarray], sources: list[str | None]) -> np.ndarray:
        import torch

        order = np.argsort([w.size for w in wavs])[::-1]  # similar lengths together: little padding
        out: dict[int, np.ndarray] = {}
        i = 0
        while i < len(order):
            longest = wavs[order[i]].size
            n = max(1, min(len(order) - i, self.batch_samples // longest))
            idx = order[i:i + n]
            batch = np.zeros((n, longest), dtype=np.float32)
            for k, j in enumerate(idx):
                batch[k, :wavs[j].size] = wavs[j]
            lens = torch.tensor([wavs[j].size / longest for j in idx], dtype=torch.float32)
            with torch.inference_mode():
                emb = self.model.encode_batch(torch.from_numpy(batch), lens).reshape(n, -1).cpu().numpy()
            out.update(zip(idx.tolist(), emb))
            i += n
        emb = np.stack([out[j] for j in range(len(wavs))])
        self.dim = emb.shape[1]
        return normalize_rows(emb)


# --------------------------------------------------------------------------- registry access
def list_embedders() -> list[str]:
    return sorted(EMBEDDERS)


def load_embedder(name: str = "resemblyzer", model: str | Path | None = None, **kwargs: Any) -> SpeakerEmbedder:
    """The one way to get a speaker-embedding backend: by registry name, with an optional model (for
    ``resemblyzer`` a voice-encoder ``.pt`` file, for ``ecapa`` a SpeechBrain model folder or hub id; ``None``:
    the backend's own, per its card); other ``kwargs`` go to the backend's constructor (``sha256=``,
    ``device=``, ``savedir=``, ...).

    Raises:
        UnknownNameError: ``name`` is not a registered backend (the message lists them).
        ModelCardError: the model cannot be found or fails its checksum.
    """
    if model is not None:
        kwargs["weights" if name == "resemblyzer" else "source"] = model
    return EMBEDDERS[name](**kwargs)


#: the columns of ``embedder_catalogue``
CATALOGUE_COLUMNS = ("name", "description")


def embedder_catalogue() -> list[dict]:
    """One row per registered backend, sorted by name: ``name`` and ``description`` (its docstring's first
    line)."""
    return [{"name": name, "description": (cls.__doc__ or "").strip().splitlines()[0]}
            for name, cls in sorted(EMBEDDERS.items())]


def array_key(wav: np.ndarray) -> str:
    """Content hash of an in-memory clip (cache key for audio that is not a file)."""
    return hashlib.sha256(np.ascontiguousarray(wav, dtype=np.float32).tobytes()).hexdigest()


__all__ = ["SpeakerEmbedder", "ResemblyzerEmbedder", "EcapaEmbedder", "EMBEDDERS", "load_embedder",
           "embedder_catalogue", "CATALOGUE_COLUMNS",
           "list_embedders", "check_speech", "normalize_rows", "array_key", "ECAPA_HUB_ID"]
