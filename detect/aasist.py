"""AASIST spoofing countermeasure (Jung et al., "AASIST: Audio Anti-Spoofing using Integrated
Spectro-Temporal Graph Attention Networks", ICASSP 2022), written from the paper.

Raw waveform -> fixed mel-spaced sinc filterbank -> 2-D residual encoder over (filter, time) ->
spectral and temporal graph attention -> two heterogeneous stacking graph attention branches with a
master node -> max/mean readout -> two logits (index 1 = bona fide).

Module and parameter names follow the published checkpoints, so their state_dicts load strictly.
Where the published network differs from the paper's text its behaviour is kept, since the weights
were trained with it: the encoder blocks feed their input to ``conv1`` unnormalised (``bn1`` exists
only for the checkpoint keys), the second pair of graph pools reuses ``pool_ratios[2]`` and all
heterogeneous layers use ``temperatures[2]``.

Speed (same logits as the published implementation to about 1e-5, on digital silence and
silence-padded or repeat-padded clips too: tests/data/aasist_reference_logits.json holds the reference's
logits on such inputs, written by bench/bench_aasist.py --golden): the sinc filterbank is built
once, runs on the signal's three sample phases so that its 3 x 3 max-pool is a plain reduction, and
skips the filter that pooling drops; the encoder runs channels-last with max-pools done as reshapes.
In eval mode each block's BatchNorm is folded into its first conv and the first block's shortcut conv
into its second one; the folded weights are a few tensor ops per block, recomputed from the
parameters on every call, so there is no cache to go stale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from voiceguard.audio import SAMPLE_RATE



@dataclass(frozen=True)
class AasistConfig:
    """The ``model_config`` of the published AASIST configurations (``nb_samp`` is ``input_samples``)."""

    input_samples: int = 64600
    first_conv: int = 128  # sinc filter length (made odd: 129 taps)
    filts: tuple = (70, (1, 32), (32, 32), (32, 64), (64, 64))  # sinc filters, then (in, out) per encoder stage
    gat_dims: tuple[int, int] = (64, 32)
    pool_ratios: tuple[float, ...] = (0.5, 0.7, 0.5, 0.5)
    temperatures: tuple[float, ...] = (2.0, 2.0, 100.0, 100.0)

    def __post_init__(self) -> None:
        first, *stages = self.filts
        object.__setattr__(self, "input_samples", int(self.input_samples))
        object.__setattr__(self, "first_conv", int(self.first_conv))
        object.__setattr__(self, "filts", (int(first), *(tuple(int(c) for c in s) for s in stages)))
        object.__setattr__(self, "gat_dims", tuple(int(d) for d in self.gat_dims))
        object.__setattr__(self, "pool_ratios", tuple(float(r) for r in self.pool_ratios))
        object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))
        if len(self.filts) != 5 or len(self.gat_dims) != 2 or len(self.pool_ratios) != 4 \
                or len(self.temperatures) != 4:
            raise ValueError("AasistConfig needs 5 filts entries, 2 gat_dims, 4 pool_ratios and 4 temperatures")


AASIST = AasistConfig()
AASIST_L = AasistConfig(filts=(70, (1, 32), (32, 32), (32, 24), (24, 24)), gat_dims=(24, 32),
                        pool_ratios=(0.4, 0.5, 0.7, 0.5))


def sinc_filterbank(n_filters: int, length: int, sr: int = SAMPLE_RATE) -> Tensor:
    """``[n_filters, taps]`` Hamming-windowed ideal band-pass filters, band edges evenly spaced on the
    mel scale from 0 Hz to Nyquist; ``taps`` is ``length`` rounded up to an odd number. The sinc
    arguments are rounded to float32, as in the filters the published models were trained with."""
    taps = length | 1
    top = 2595.0 * np.log10(1.0 + (sr / 2) / 700.0)
    edges = 700.0 * (10.0 ** (np.linspace(0.0, top, n_filters + 1) / 2595.0) - 1.0)
    n = np.arange(taps, dtype=np.float32) - np.float32(taps // 2)

    def low_pass(fc: np.ndarray) -> np.ndarray:
        arg = (2 * fc).astype(np.float32)[:, None] * n / np.float32(sr)
        return (2 * fc / sr)[:, None] * np.sinc(arg)

    band = (low_pass(edges[1:]) - low_pass(edges[:-1])).astype(np.float32) * np.hamming(taps).astype(np.float32)
    return torch.from_numpy(band)


def polyphase(filters: Tensor, phases: int = 3) -> Tensor:
    """Conv1d weights ``[filters * phases, phases, ceil((taps + phases - 1) / phases)]``: a valid conv of
    the signal's interleaved phases (``x[phases * i + r]`` in channel ``r``) gives, in channel
    ``f * phases + s``, filter ``f``'s valid output at time ``phases * i + s``."""
    n_filters, taps = filters.shape
    length = -(-(taps + phases - 1) // phases)
    p = torch.arange(phases)
    k = phases * torch.arange(length)[None, None] + p[None, :, None] - p[:, None, None]  # [s, r, j] -> tap
    w = filters[:, k.clamp(0, taps - 1)] * ((k >= 0) & (k < taps))
    return w.reshape(n_filters * phases, phases, length)


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``x * scale + shift``."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class ResBlock(nn.Module):
    """Encoder stage: conv(2x3) -> BN -> SELU -> conv(2x3), plus a (1x3-conv) shortcut, then max-pool 1x3
    over time. The input goes to ``conv1`` as is; ``bn1`` only carries checkpoint weights."""

    def __init__(self, c_in: int, c_out: int, first: bool = False):
        super().__init__()
        if not first:
            self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, (2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, (2, 3), padding=(0, 1))
        self.conv_downsample = nn.Conv2d(c_in, c_out, (1, 3), padding=(0, 1)) if c_in != c_out else None

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return _pool_time(self._fused(x))
        h = F.selu(self.bn2(self.conv1(x)))
        skip = x if self.conv_downsample is None else self.conv_downsample(x)
        return _pool_time(self.conv2(h) + skip)

    def _fused(self, x: Tensor) -> Tensor:
        """Eval-mode pre-pool output, with ``bn2`` folded into ``conv1``.

        A single-channel input (first stage) is carried through ``conv1`` as one more output channel,
        so that the shortcut conv becomes part of ``conv2``; it also gets a zero second channel, which
        makes its layout unambiguously channels-last, so that every conv runs channels-last."""
        scale, shift = _bn_affine(self.bn2)
        w1, b1 = self.conv1.weight * scale[:, None, None, None], self.conv1.bias * scale + shift
        w2, b2 = self.conv2.weight, self.conv2.bias
        carry = x.size(1) == 1 and self.conv_downsample is not None
        if carry:
            copy = torch.zeros_like(w1[:1])
            copy[0, 0, 1, 1] = 1.0  # output row r <- input row r (conv1 pads one row on top)
            w1, b1 = F.pad(torch.cat([w1, copy]), (0, 0, 0, 0, 0, 1)), torch.cat([b1, b1.new_zeros(1)])
            x = torch.cat([x, torch.zeros_like(x)], dim=1).contiguous(memory_format=torch.channels_last)
            shortcut = F.pad(self.conv_downsample.weight, (0, 0, 0, 1))  # (1, 3) kernel as the top row of (2, 3)
            w2, b2 = torch.cat([w2, shortcut], dim=1), b2 + self.conv_downsample.bias
        h = F.conv2d(x, w1, b1, padding=(1, 1))
        F.selu(h[:, :-1] if carry else h, inplace=True)
        y = F.conv2d(h, w2, b2, padding=(0, 1))
        if not carry:
            y += x if self.conv_downsample is None else self.conv_downsample(x)
        return y


def _pool_time(y: Tensor) -> Tensor:
    """Max-pool ``[B, C, H, W]`` by 3 along W (as ``max_pool2d(y, (1, 3))``), read channels-last."""
    w = y.size(3) // 3
    return y.permute(0, 2, 3, 1)[:, :, :3 * w].unflatten(2, (w, 3)).amax(3).permute(0, 3, 1, 2)


def _xavier(rows: int) -> nn.Parameter:
    return nn.Parameter(nn.init.xavier_normal_(torch.empty(rows, 1)))


def _bn_nodes(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """BatchNorm over the feature axis of ``[B, nodes, dim]`` (statistics over batch and nodes)."""
    return bn(x.reshape(-1, x.size(-1))).view_as(x)


def _pair_features(x: Tensor) -> Tensor:
    """``[B, N, D]`` -> ``[B, N, N, D]`` element-wise products of every node pair."""
    return x[:, :, None] * x[:, None]


class GraphAttention(nn.Module):
    """Graph attention over a fully connected graph (GAT-S / GAT-T)."""

    def __init__(self, d_in: int, d_out: int, temperature: float):
        super().__init__()
        self.att_proj = nn.Linear(d_in, d_out)
        self.att_weight = _xavier(d_out)
        self.proj_with_att = nn.Linear(d_in, d_out)
        self.proj_without_att = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)
        self.temperature = temperature

    def forward(self, x: Tensor) -> Tensor:
        x = F.dropout(x, 0.2, self.training)
        scores = (torch.tanh(self.att_proj(_pair_features(x))) @ self.att_weight).squeeze(-1)
        att = torch.softmax(scores / self.temperature, dim=-1)
        x = self.proj_with_att(att @ x) + self.proj_without_att(x)
        return F.selu(_bn_nodes(self.bn, x))


class HeteroGraphAttention(nn.Module):
    """Heterogeneous stacking graph attention layer (HS-GAL): two node types (temporal, spectral) with
    type-pair-specific attention vectors, plus a master node that attends to all nodes."""

    def __init__(self, d_in: int, d_out: int, temperature: float):
        super().__init__()
        self.proj_type1 = nn.Linear(d_in, d_in)
        self.proj_type2 = nn.Linear(d_in, d_in)
        self.att_proj = nn.Linear(d_in, d_out)
        self.att_projM = nn.Linear(d_in, d_out)
        self.att_weight11 = _xavier(d_out)
        self.att_weight22 = _xavier(d_out)
        self.att_weight12 = _xavier(d_out)
        self.att_weightM = _xavier(d_out)
        self.proj_with_att = nn.Linear(d_in, d_out)
        self.proj_without_att = nn.Linear(d_in, d_out)
        self.proj_with_attM = nn.Linear(d_in, d_out)
        self.proj_without_attM = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)
        self.temperature = temperature

    def forward(self, a: Tensor, b: Tensor, master: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n_a, n = a.size(1), a.size(1) + b.size(1)
        x = F.dropout(torch.cat([self.proj_type1(a), self.proj_type2(b)], dim=1), 0.2, self.training)

        # node-node attention: one score per edge type (a-a, b-b, a-b in either direction)
        per_type = torch.tanh(self.att_proj(_pair_features(x))) @ torch.cat(
            [self.att_weight11, self.att_weight22, self.att_weight12], dim=1)
        is_a = torch.arange(n, device=x.device) < n_a
        edge_type = torch.where(is_a[:, None] & is_a[None], 0, torch.where(~is_a[:, None] & ~is_a[None], 1, 2))
        scores = per_type.gather(-1, edge_type.expand(x.size(0), n, n)[..., None]).squeeze(-1)
        att = torch.softmax(scores / self.temperature, dim=-1)

        # master node: attention over all nodes
        m_scores = (torch.tanh(self.att_projM(x * master)) @ self.att_weightM).squeeze(-1)
        m_att = torch.softmax(m_scores / self.temperature, dim=1)
        master = self.proj_with_attM(m_att[:, None] @ x) + self.proj_without_attM(master)

        x = F.selu(_bn_nodes(self.bn, self.proj_with_att(att @ x) + self.proj_without_att(x)))
        return x[:, :n_a], x[:, n_a:], master


class GraphPool(nn.Module):
    """Keep the ``ratio`` highest-gated nodes, each scaled by its sigmoid gate, in descending gate order.

    As in the reference (``torch.topk`` on the sigmoid gates, sorted): the order matters, since the two
    branches' kept nodes are later paired by position (``torch.maximum``). Gates tie in digital silence,
    where many nodes are equal; tied nodes then have equal features, so which of them topk keeps does
    not change the output."""

    def __init__(self, ratio: float, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, 1)
        self.ratio = ratio

    def forward(self, h: Tensor) -> Tensor:
        gate = torch.sigmoid(self.proj(F.dropout(h, 0.3, self.training)))
        keep = gate.topk(max(int(h.size(1) * self.ratio), 1), dim=1).indices
        return torch.gather(h * gate, 1, keep.expand(-1, -1, h.size(2)))


class Aasist(nn.Module):
    """AASIST on ``[B, n]`` 16 kHz waveforms (n >= 16000; trained on 64,600) -> ``[B, 2]`` logits."""

    def __init__(self, config: AasistConfig = AASIST):
        super().__init__()
        self.config = config
        self.input_samples = config.input_samples
        n_sinc, *stages = config.filts
        d_enc, (d_gat, d_het) = stages[-1][-1], config.gat_dims
        ratios, temps = config.pool_ratios, config.temperatures

        n_bands = n_sinc // 3  # filters pooled in threes; a remainder is never used, so is not computed
        self.taps = config.first_conv | 1
        self.register_buffer("sinc", polyphase(sinc_filterbank(n_sinc, config.first_conv)[:3 * n_bands]),
                             persistent=False)
        self.first_bn = nn.BatchNorm2d(1)
        # each stage sits in a one-element Sequential: that is the checkpoints' key layout
        self.encoder = nn.Sequential(*(nn.Sequential(ResBlock(*s, first=i == 0))
                                       for i, s in enumerate([*stages, stages[-1], stages[-1]])))
        self.pos_S = nn.Parameter(torch.randn(1, n_bands, d_enc))
        self.master1 = nn.Parameter(torch.randn(1, 1, d_gat))
        self.master2 = nn.Parameter(torch.randn(1, 1, d_gat))
        self.GAT_layer_S = GraphAttention(d_enc, d_gat, temps[0])
        self.GAT_layer_T = GraphAttention(d_enc, d_gat, temps[1])
        self.HtrgGAT_layer_ST11 = HeteroGraphAttention(d_gat, d_het, temps[2])
        self.HtrgGAT_layer_ST12 = HeteroGraphAttention(d_het, d_het, temps[2])
        self.HtrgGAT_layer_ST21 = HeteroGraphAttention(d_gat, d_het, temps[2])
        self.HtrgGAT_layer_ST22 = HeteroGraphAttention(d_het, d_het, temps[2])
        self.pool_S = GraphPool(ratios[0], d_gat)
        self.pool_T = GraphPool(ratios[1], d_gat)
        self.pool_hS1 = GraphPool(ratios[2], d_het)
        self.pool_hT1 = GraphPool(ratios[2], d_het)
        self.pool_hS2 = GraphPool(ratios[2], d_het)
        self.pool_hT2 = GraphPool(ratios[2], d_het)
        self.out_layer = nn.Linear(5 * d_het, 2)

    def filter_pool(self, x: Tensor) -> Tensor:
        """``[B, n]`` -> ``[B, bands, frames]``: the sinc filterbank's absolute output max-pooled 3 x 3 over
        (filter, time). The filters run on the signal's three sample phases, so that each 3-sample pooling
        window lies across channels of one output frame."""
        frames = (x.size(1) - self.taps + 1) // 3
        length = frames + self.sinc.size(2) - 1  # samples per phase
        phases = F.pad(x, (0, 3 * length - x.size(1))).view(x.size(0), length, 3).transpose(1, 2)
        y = F.conv1d(phases, self.sinc).abs_()  # channel (filter, phase s) at frame i = time 3 i + s
        return y.view(x.size(0), -1, 9, frames).amax(2)

    def encode(self, x: Tensor) -> Tensor:
        """Waveforms ``[B, n]`` -> encoder features ``[B, channels, bands, frames]`` (channels-last)."""
        y = F.selu(self.first_bn(self.filter_pool(x)[:, None]))
        return self.encoder(y.contiguous(memory_format=torch.channels_last))

    def forward(self, x: Tensor) -> Tensor:
        e = self.encode(x).abs()
        spectral = self.pool_S(self.GAT_layer_S(e.amax(dim=3).transpose(1, 2) + self.pos_S))
        temporal = self.pool_T(self.GAT_layer_T(e.amax(dim=2).transpose(1, 2)))

        branches = []
        for first, second, pool_s, pool_t, master in (
                (self.HtrgGAT_layer_ST11, self.HtrgGAT_layer_ST12, self.pool_hS1, self.pool_hT1, self.master1),
                (self.HtrgGAT_layer_ST21, self.HtrgGAT_layer_ST22, self.pool_hS2, self.pool_hT2, self.master2)):
            t, s, master = first(temporal, spectral, master)
            s, t = pool_s(s), pool_t(t)
            t_aug, s_aug, m_aug = second(t, s, master)
            branches.append((t + t_aug, s + s_aug, master + m_aug))
        # branch dropout, in the published order (same random stream in training)
        t1, t2, s1, s2, m1, m2 = (F.dropout(z, 0.2, self.training) for pair in zip(*branches) for z in pair)
        t, s, master = torch.maximum(t1, t2), torch.maximum(s1, s2), torch.maximum(m1, m2)

        hidden = torch.cat([t.abs().amax(dim=1), t.mean(dim=1), s.abs().amax(dim=1), s.mean(dim=1),
                            master.squeeze(1)], dim=1)
        return self.out_layer(F.dropout(hidden, 0.5, self.training))
