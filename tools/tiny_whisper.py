"""The Whisper architecture in plain PyTorch, trained on a reduced output vocabulary, and its
export to a CTranslate2 `WhisperSpec` that faster-whisper loads as an ordinary Whisper model.

Why a reduced vocabulary: Whisper's 51,865-row embedding (tied to the output projection) would
be most of the compute and most of the parameters, yet the demo model only ever says a few
hundred tokens. Training keeps one row per token it uses (text tokens, the special tokens it
needs, all 1,501 timestamps) plus one shared "other" row; the exported model gives every other
token of the real vocabulary that shared row. The loss counts the other row `n_other` times
(log-sum-exp + log n_other), so the trained probabilities are exactly those of the full-size
exported model: softmax over 51,865 tokens.

Layout follows openai-whisper / CTranslate2: conv front end (3-tap convs, stride 2 on the
second, GELU), fixed sinusoidal encoder positions, pre-norm blocks, learned decoder positions,
key projections without bias, exact (erf) GELU, LayerNorm eps 1e-5, tied output projection.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_MELS = 80
N_AUDIO_CTX = 1500  # encoder positions of a 30 s window
N_TEXT_CTX = 448


@dataclass(frozen=True)
class Dims:
    d_model: int = 128
    n_heads: int = 4
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """openai-whisper's encoder position table."""
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float64))
    t = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1).float()


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def forward(self, x, source=None, causal=False, weights=False):
        """With weights=True, also the attention weights (b, heads, queries, keys)."""
        source = x if source is None else source
        b, t, d = x.shape
        h = self.heads

        def split(y):
            return y.view(b, -1, h, d // h).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(source)), split(self.value(source))
        if weights:
            w = torch.softmax((q @ k.transpose(-1, -2)).float() / math.sqrt(d // h), dim=-1)
            y = w.to(v.dtype) @ v
        else:
            w = None
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        y = self.out(y.transpose(1, 2).reshape(b, t, d))
        return (y, w) if weights else y


class Block(nn.Module):
    def __init__(self, d: int, heads: int, cross: bool):
        super().__init__()
        self.attn_ln = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.cross_ln = nn.LayerNorm(d) if cross else None
        self.cross = Attention(d, heads) if cross else None
        self.mlp_ln = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, audio=None, causal=False, cross_weights=False):
        x = x + self.attn(self.attn_ln(x), causal=causal)
        w = None
        if self.cross is not None:
            if cross_weights:
                y, w = self.cross(self.cross_ln(x), audio, weights=True)
            else:
                y = self.cross(self.cross_ln(x), audio)
            x = x + y
        x = x + self.mlp(self.mlp_ln(x))
        return (x, w) if cross_weights else x


class TinyWhisper(nn.Module):
    def __init__(self, dims: Dims, n_tokens: int):
        super().__init__()
        d = dims.d_model
        self.dims = dims
        self.conv1 = nn.Conv1d(N_MELS, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("enc_pos", sinusoids(N_AUDIO_CTX, d), persistent=False)
        self.enc_blocks = nn.ModuleList(Block(d, dims.n_heads, False) for _ in range(dims.n_encoder_layers))
        self.enc_ln = nn.LayerNorm(d)
        self.embed = nn.Embedding(n_tokens, d)
        # Sinusoids as a start: positions a short training sequence never reaches (long
        # previous-text prompts) still get a sensible, smooth position code.
        self.dec_pos = nn.Parameter(sinusoids(N_TEXT_CTX, d) * 0.1)
        self.dec_blocks = nn.ModuleList(Block(d, dims.n_heads, True) for _ in range(dims.n_decoder_layers))
        self.dec_ln = nn.LayerNorm(d)

    def encode(self, mel: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """`offsets`: per item, the encoder position of its first frame pair (a crop of a 30 s
        window keeps the positions of its real place)."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        if offsets is None:
            x = x + self.enc_pos[: x.shape[1]]
        else:
            x = x + self.enc_pos[offsets[:, None] + torch.arange(x.shape[1])]
        for block in self.enc_blocks:
            x = block(x)
        return self.enc_ln(x)

    def decode(self, tokens: torch.Tensor, audio: torch.Tensor, alignment: bool = False):
        """Logits; with alignment=True also the cross-attention weights of the first and of the
        last layer (the last layer's heads are the alignment heads of the exported model)."""
        x = self.embed(tokens) + self.dec_pos[: tokens.shape[1]]
        weights = {}
        last = len(self.dec_blocks) - 1
        for i, block in enumerate(self.dec_blocks):
            if alignment and i in (0, last):
                x, weights[i] = block(x, audio, causal=True, cross_weights=True)
            else:
                x = block(x, audio, causal=True)
        logits = self.dec_ln(x) @ self.embed.weight.T
        return (logits, (weights[0], weights[last])) if alignment else logits

    def forward(self, mel, tokens):
        return self.decode(tokens, self.encode(mel))


def full_vocab_loss(logits, targets, other_index: int, n_other: int, mask):
    """Cross-entropy as if the shared 'other' row were n_other separate tokens."""
    bias = torch.zeros(logits.shape[-1], dtype=logits.dtype, device=logits.device)
    bias[other_index] = math.log(n_other)
    logp = torch.log_softmax(logits + bias, dim=-1)
    nll = -logp.gather(-1, targets[..., None]).squeeze(-1)
    return (nll * mask).sum() / mask.sum().clamp(min=1)


# --------------------------------------------------------------------------------------
# Export to CTranslate2
# --------------------------------------------------------------------------------------


def export_ctranslate2(
    model: TinyWhisper,
    token_ids: list[int],
    other_index: int,
    out_dir: Path,
    *,
    n_vocab: int,
    vocabulary_tokens: list[str],
    suppress_ids: list[int],
    suppress_ids_begin: list[int],
    lang_ids: list[int],
    quantization: str = "int8",
) -> None:
    """Write model.bin/config.json of a full-vocabulary CTranslate2 Whisper model."""
    from ctranslate2.specs import whisper_spec

    dims = model.dims
    # Copies: CTranslate2 quantizes the arrays it is given in place, which would otherwise
    # overwrite the model's own weights.
    sd = {k: v.detach().cpu().float().numpy().copy() for k, v in model.state_dict().items()}
    d = dims.d_model

    def arr(a):
        return np.ascontiguousarray(a, dtype=np.float32)

    def ln(spec, prefix):
        spec.gamma = arr(sd[prefix + ".weight"])
        spec.beta = arr(sd[prefix + ".bias"])

    def lin(spec, prefix):
        spec.weight = arr(sd[prefix + ".weight"])
        spec.bias = arr(sd[prefix + ".bias"])

    def fused_qkv(spec, prefix):
        spec.weight = arr(np.concatenate([sd[f"{prefix}.query.weight"], sd[f"{prefix}.key.weight"], sd[f"{prefix}.value.weight"]]))
        spec.bias = arr(np.concatenate([sd[f"{prefix}.query.bias"], np.zeros(d, np.float32), sd[f"{prefix}.value.bias"]]))

    def self_attention_and_mlp(layer, prefix):
        """The parts encoder and decoder layers share."""
        ln(layer.self_attention.layer_norm, prefix + ".attn_ln")
        fused_qkv(layer.self_attention.linear[0], prefix + ".attn")
        lin(layer.self_attention.linear[1], prefix + ".attn.out")
        ln(layer.ffn.layer_norm, prefix + ".mlp_ln")
        lin(layer.ffn.linear_0, prefix + ".mlp.0")
        lin(layer.ffn.linear_1, prefix + ".mlp.2")

    spec = whisper_spec.WhisperSpec(dims.n_encoder_layers, dims.n_heads, dims.n_decoder_layers, dims.n_heads)
    enc = spec.encoder
    lin(enc.conv1, "conv1")
    lin(enc.conv2, "conv2")
    enc.position_encodings.encodings = arr(sinusoids(N_AUDIO_CTX, d).numpy())
    for i, layer in enumerate(enc.layer):
        self_attention_and_mlp(layer, f"enc_blocks.{i}")
    ln(enc.layer_norm, "enc_ln")

    reduced = sd["embed.weight"]
    full = np.repeat(reduced[other_index][None, :], n_vocab, axis=0)
    full[np.asarray(token_ids)] = reduced[: len(token_ids)]
    dec = spec.decoder
    dec.embeddings.weight = arr(full)
    dec.position_encodings.encodings = arr(sd["dec_pos"])
    for i, layer in enumerate(dec.layer):
        p = f"dec_blocks.{i}"
        self_attention_and_mlp(layer, p)
        ln(layer.attention.layer_norm, p + ".cross_ln")
        lin(layer.attention.linear[0], p + ".cross.query")
        layer.attention.linear[1].weight = arr(
            np.concatenate([sd[f"{p}.cross.key.weight"], sd[f"{p}.cross.value.weight"]])
        )
        layer.attention.linear[1].bias = arr(np.concatenate([np.zeros(d, np.float32), sd[f"{p}.cross.value.bias"]]))
        lin(layer.attention.linear[2], p + ".cross.out")
    ln(dec.layer_norm, "dec_ln")
    dec.projection.weight = arr(full)  # tied, as in Whisper (stored once: CTranslate2 aliases equal arrays)

    spec.config.suppress_ids = suppress_ids
    spec.config.suppress_ids_begin = suppress_ids_begin
    spec.config.lang_ids = lang_ids
    # Cross-attention heads of the last decoder layer align text with audio (word timestamps).
    spec.config.alignment_heads = [(dims.n_decoder_layers - 1, h) for h in range(dims.n_heads)]
    spec.register_vocabulary(vocabulary_tokens)
    spec.validate()
    spec.optimize(quantization=quantization)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))


def save_checkpoint(path: Path, model: TinyWhisper, token_ids: list[int], extra: dict) -> None:
    torch.save({"dims": asdict(model.dims), "state": model.state_dict(), "token_ids": token_ids, **extra}, path)


def load_checkpoint(path: Path) -> tuple[TinyWhisper, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = TinyWhisper(Dims(**ckpt["dims"]), len(ckpt["token_ids"]) + 1)
    model.load_state_dict(ckpt["state"])
    return model, ckpt


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"
