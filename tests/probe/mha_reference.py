"""Per-head attention weights from Python's own nn.MultiheadAttention, for the C++ probe tests.

Usage: mha_reference.py DIR. DIR/case_<name>.pt holds [in_proj_weight, in_proj_bias, out_proj_weight,
out_proj_bias, query, key, value, attn_mask, key_padding_mask, heads] as written by torch::pickle_save
(absent masks are empty tensors; inputs are [T, B, E]); writes DIR/python_<name>.pt: the weights that
need_weights=True, average_attn_weights=False returns, [B, H, T, S].
"""
import pathlib
import sys

import torch


def main(directory):
    for case in sorted(pathlib.Path(directory).glob("case_*.pt")):
        (w_in, b_in, w_out, b_out, query, key, value, attn_mask, padding, heads) = torch.load(case)
        # Pickling loses identity: self-attention in Python is mha(x, x, x), one tensor three times, and
        # F.multi_head_attention_forward picks its projection by identity (`q is k`, `k is v`: one packed
        # linear) where the C++ frontend compares values (torch::equal). Passing three equal copies would
        # make Python project them separately, a different rounding than the call users write.
        if torch.equal(value, key):
            value = key
        if torch.equal(key, query):
            key = value = query
        embed = query.shape[-1]
        mha = torch.nn.MultiheadAttention(embed, int(heads.item()))
        with torch.no_grad():
            mha.in_proj_weight.copy_(w_in)
            mha.in_proj_bias.copy_(b_in)
            mha.out_proj.weight.copy_(w_out)
            mha.out_proj.bias.copy_(b_out)
        mha.eval()
        _, weights = mha(query, key, value, key_padding_mask=padding if padding.numel() else None,
                         attn_mask=attn_mask if attn_mask.numel() else None, need_weights=True,
                         average_attn_weights=False)
        torch.save(weights.detach(), case.parent / case.name.replace("case_", "python_"))


if __name__ == "__main__":
    main(sys.argv[1])
