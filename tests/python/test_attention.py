"""Per-head attention weights from eager nn.MultiheadAttention modules: captured bit for bit equal to
what the module returns with need_weights=True, average_attn_weights=False, whatever the model passes;
the fused fast path is counted, never reported as zeros."""
import pytest
import torch
from torch import nn

import neuronmap


def causal(t, boolean=False):
    m = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    return m if boolean else torch.zeros(t, t).masked_fill(m, float("-inf"))


class Model(nn.Module):
    def __init__(self, batch_first):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=batch_first)
        self.head = nn.Linear(16, 2)

    def forward(self, x, **kwargs):
        out, _ = self.attn(x, x, x, **kwargs)
        return torch.softmax(self.head(out), -1)


def reference(attn, x, **kwargs):
    kwargs = dict(kwargs, need_weights=True, average_attn_weights=False)
    return attn(x, x, x, **kwargs)[1].detach()


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("call", [
    dict(need_weights=False),
    dict(need_weights=True),  # averaged over heads by default
    dict(attn_mask="float", need_weights=False),
    dict(attn_mask="bool", average_attn_weights=False),
    dict(key_padding_mask=True, need_weights=False),
])
def test_eager_weights_equal_need_weights_bit_for_bit(tmp_path, batch_first, call):
    torch.manual_seed(3)
    model = Model(batch_first)
    t, b = 6, 3
    x = torch.randn(b, t, 16) if batch_first else torch.randn(t, b, 16)
    kwargs = dict(call)
    if "attn_mask" in kwargs:
        kwargs["attn_mask"] = causal(t, boolean=kwargs["attn_mask"] == "bool")
    if "key_padding_mask" in kwargs:
        padding = torch.zeros(b, t, dtype=torch.bool)
        padding[1, -2:] = True
        kwargs["key_padding_mask"] = padding
    with neuronmap.attach(model, ["attn"], every=1, file=tmp_path / "run.h5") as s:
        s._core._keep_attention_for_testing(True)
        for train in (True, False):
            model.train(train)
            model(x, **kwargs).sum().backward()
            got = s._core._take_kept_attention()
            assert len(got) == 1
            want = reference(model.attn, x, **{k: v for k, v in kwargs.items()
                                                if k in ("attn_mask", "key_padding_mask")})
            s._core._take_kept_attention()  # the reference call was captured too
            assert got[0].shape == (b, 4, t, t)
            assert torch.equal(got[0], want)
        s.end_epoch(1, 0.0)
        assert s.counters()["attention_fused"] == 0
    run = neuronmap.open(tmp_path / "run.h5")
    layer = run.snapshots[0].layers[0]
    assert layer.n_neurons == 4  # heads as neurons
    assert layer.samples == 4 * b * t * t  # one sample per (sample, query, key); two forwards, two references


def test_transformer_encoder_layer_self_attn_in_training(tmp_path):
    torch.manual_seed(4)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0)
    x = torch.randn(5, 2, 16)
    mask = causal(5)
    with neuronmap.attach(layer, ["self_attn"], every=1, file=tmp_path / "run.h5") as s:
        s._core._keep_attention_for_testing(True)
        layer.train()
        layer(x, src_mask=mask).sum().backward()  # calls self_attn(..., need_weights=False)
        got = s._core._take_kept_attention()
        assert len(got) == 1
        assert torch.equal(got[0], reference(layer.self_attn, x, attn_mask=mask))


def test_fused_fast_path_is_counted_not_zeros(tmp_path):
    torch.manual_seed(5)
    model = Model(batch_first=True).eval()
    x = torch.randn(2, 6, 16)
    with neuronmap.attach(model, ["attn"], every=1, file=tmp_path / "run.h5") as s:
        s._core._keep_attention_for_testing(True)
        with torch.no_grad():
            model(x)  # eval + batch_first + no grad: torch._native_multi_head_attention
        assert s._core._take_kept_attention() == []
        assert s.counters()["attention_fused"] == 1
        assert "fused attention" in s.last_error()
        s.end_epoch(1, 0.0)
    layer = neuronmap.open(tmp_path / "run.h5").snapshots[0].layers[0]
    assert layer.samples == 0  # nothing captured, nothing invented


def test_run_and_cli_expose_head_statistics(tmp_path):
    import json
    import os
    import subprocess
    torch.manual_seed(6)
    model = Model(batch_first=False)
    t, b = 8, 4
    x = torch.randn(t, b, 16)
    with neuronmap.attach(model, ["attn", "head"], every=1, file=tmp_path / "run.h5") as s:
        for epoch in (1, 2):
            model(x, attn_mask=causal(t)).sum().backward()
            s.end_epoch(epoch, 0.0)
    heads = neuronmap.open(tmp_path / "run.h5").snapshots[1].layers[0].heads
    assert len(heads) == 4
    for h in heads:
        assert h.queries == b * t
        assert 0.0 < h.entropy_mean <= 1.0
        assert h.offset_weight.shape == (9,)
        assert h.role in ("previous-token", "self", "uniform", "collapsed", "mixed")
    assert neuronmap.open(tmp_path / "run.h5").snapshots[1].layers[1].heads == []
    cli = os.environ.get("NEURONMAP_CLI")
    if not cli:
        pytest.skip("NEURONMAP_CLI not set")
    out = subprocess.run([cli, "heads", str(tmp_path / "run.h5"), "--epoch", "2", "--json"], check=True,
                         capture_output=True, text=True).stdout
    doc = json.loads(out)
    assert [s["epoch"] for s in doc["snapshots"]] == [2]
    assert [h["head"] for h in doc["snapshots"][0]["heads"]] == [0, 1, 2, 3]
    assert doc["snapshots"][0]["heads"][0]["entropy_mean"] == pytest.approx(heads[0].entropy_mean)
    text = subprocess.run([cli, "heads", str(tmp_path / "run.h5"), "--layer", "attn"], check=True,
                          capture_output=True, text=True).stdout
    assert "epoch 1  layer attn" in text and "epoch 2  layer attn" in text
    bad = subprocess.run([cli, "heads", str(tmp_path / "run.h5"), "--layer", "head"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no head statistics for layer 'head'" in bad.stderr
    report = tmp_path / "report"
    subprocess.run([cli, "report", str(tmp_path / "run.h5"), "--out", str(report)], check=True, capture_output=True)
    doc = json.loads((report / "pytorch_neuron_group_analysis_report.json").read_text())
    assert [h["head"] for h in doc["attention_heads"][0]["heads"]] == [0, 1, 2, 3]
    assert "Attention heads (reported snapshot)" in (report / "pytorch_neuron_group_analysis_report.txt").read_text()
    assert (report / "pytorch_heads_attn.png").stat().st_size > 0
