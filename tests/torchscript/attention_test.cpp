// Probes on nn.MultiheadAttention in TorchScript models (its own, and TransformerEncoderLayer.self_attn)
// capture the per-head weights Python's need_weights=True, average_attn_weights=False returns, whatever
// the scripted forward passes; the fused fast path is counted and said, never captured as zeros.
#include <gtest/gtest.h>
#include <torch/script.h>

#include "neuronmap/layers.hpp"
#include "script_probes.hpp"
#include "ts_test_util.hpp"

namespace {

using neuronmap::detail::ScriptProbes;

const std::vector<std::string> kAttention = {"attn", "attn_bf", "enc.self_attn"};

TEST(ScriptAttention, PerHeadWeightsEqualPythonsNeedWeights) {
  auto model = torch::jit::load(nm_test::data_dir() + "/attention.pt");
  const auto refs = nm_test::load_dict(nm_test::data_dir() + "/attention_refs.pt");
  auto sink = std::make_shared<nm_test::RecordingSink>(kAttention.size());
  ScriptProbes probes(model, kAttention, sink);
  for (const auto& target : probes.targets()) EXPECT_EQ(target.layout, neuronmap::LayerLayout::attention_heads);
  probes.enable(true);
  const std::vector<c10::IValue> inputs = {refs.at("x"), refs.at("mask"), refs.at("padding")};
  for (bool train : {false, true}) {
    SCOPED_TRACE(train ? "train + autograd" : "eval + autograd");
    model.train(train);
    sink->clear();
    auto out = model.forward(inputs).toTensor();
    for (std::size_t i = 0; i < kAttention.size(); ++i) {
      ASSERT_EQ(sink->calls[i].size(), 1u) << kAttention[i];
      EXPECT_TRUE(nm_test::same_values(sink->calls[i][0].output, refs.at(kAttention[i]).toTensor())) << kAttention[i];
    }
    out.sum().backward();
  }
  EXPECT_EQ(probes.errors(), 0u) << probes.last_error();
  EXPECT_EQ(neuronmap::detail::instrumented_methods(model).empty(), false);
}

TEST(ScriptAttention, FusedFastPathIsCountedNeverZeros) {
  auto model = torch::jit::load(nm_test::data_dir() + "/attention.pt");
  const auto refs = nm_test::load_dict(nm_test::data_dir() + "/attention_refs.pt");
  auto sink = std::make_shared<nm_test::RecordingSink>(kAttention.size());
  ScriptProbes probes(model, kAttention, sink);
  probes.enable(true);
  model.eval();
  torch::NoGradGuard no_grad;
  model.forward({refs.at("x"), refs.at("mask"), refs.at("padding")});
  // attn (not batch_first, with a mask) takes the ordinary path: captured.
  ASSERT_EQ(sink->calls[0].size(), 1u);
  EXPECT_TRUE(nm_test::same_values(sink->calls[0][0].output, refs.at("attn").toTensor()));
  // attn_bf (batch_first, no attn_mask, no grad) runs torch._native_multi_head_attention: counted.
  EXPECT_TRUE(sink->calls[1].empty());
  EXPECT_EQ(probes.errors(), 1u);
  EXPECT_NE(probes.last_error().find("fused attention"), std::string::npos) << probes.last_error();
  EXPECT_NE(probes.last_error().find("attn_bf"), std::string::npos) << probes.last_error();
  // The encoder layer gets a src_mask, which keeps it off its own fast path: self_attn runs and is
  // captured (real probabilities, every query's weights summing to 1).
  ASSERT_EQ(sink->calls[2].size(), 1u);
  const auto& w = sink->calls[2][0].output;
  EXPECT_TRUE(torch::allclose(w.sum(-1), torch::ones({w.size(0), w.size(1), w.size(2)}), 0, 1e-6));
}

}  // namespace
