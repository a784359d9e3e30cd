"""A scripted model with attention modules, and the per-head weights Python computes for it, for
tests/torchscript (TorchScriptAttention.*).

Run with Debian's interpreter and the reference BLAS that the tests pin (see tests/torchscript/CMakeLists.txt):

    LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/blas /usr/bin/python3 tests/data/torchscript/make_attention.py

Writes attention.pt (torch.jit.script of AttnNet) and attention_refs.pt, a dict (torch.save):
  "x", "mask", "padding"                the inputs of forward
  "attn", "attn_bf", "enc.self_attn"    each module's weights with need_weights=True,
                                        average_attn_weights=False on the inputs it gets in forward
"""
import os

import torch
import torch.nn as nn

OUT = os.path.dirname(os.path.abspath(__file__))


class AttnNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4)                     # [T, B, E]
        self.attn_bf = nn.MultiheadAttention(16, 2, batch_first=True)  # [B, T, E]
        self.enc = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0)

    def forward(self, x, mask, padding):
        h, _ = self.attn(x, x, x, attn_mask=mask, need_weights=False)
        hb = h.transpose(0, 1)
        g, _ = self.attn_bf(hb, hb, hb, key_padding_mask=padding)  # averaged weights, discarded
        return self.enc(g.transpose(0, 1), src_mask=mask)


def weights(module, q, **kwargs):
    return module(q, q, q, need_weights=True, average_attn_weights=False, **kwargs)[1].detach().clone()


def main():
    torch.manual_seed(7)
    model = AttnNet().eval()
    t, b = 6, 3
    x = torch.randn(t, b, 16)
    mask = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
    padding = torch.zeros(b, t, dtype=torch.bool)
    padding[2, -1] = True
    scripted = torch.jit.script(model)
    torch.jit.save(scripted, os.path.join(OUT, "attention.pt"))
    refs = {"x": x, "mask": mask, "padding": padding}
    refs["attn"] = weights(model.attn, x, attn_mask=mask)
    h, _ = model.attn(x, x, x, attn_mask=mask, need_weights=False)
    hb = h.transpose(0, 1)
    refs["attn_bf"] = weights(model.attn_bf, hb, key_padding_mask=padding)
    g, _ = model.attn_bf(hb, hb, hb, key_padding_mask=padding)
    refs["enc.self_attn"] = weights(model.enc.self_attn, g.transpose(0, 1), attn_mask=mask)
    torch.save(refs, os.path.join(OUT, "attention_refs.pt"))


if __name__ == "__main__":
    main()
