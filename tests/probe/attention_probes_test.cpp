// Probes on torch::nn::MultiheadAttention capture the per-head weights [B, H, T, S] it computes, bit for
// bit, whatever need_weights / average_attn_weights its caller passes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <fstream>
#include <map>
#include <mutex>

#include "neuronmap/errors.hpp"
#include "probe/module_probes.hpp"
#include "probe/rows.hpp"
#include "neuronmap/neuronmap.hpp"
#include "neuronmap/options.hpp"
#include "probe_test_util.hpp"
#include "test_dir.hpp"

namespace {

namespace nm = neuronmap::detail;
namespace nn = torch::nn;

using neuronmap::test::RecordingSink;

// A decoder-style block: self-attention, then cross-attention on a memory, called the way user code
// calls them (need_weights off, or averaged weights).
struct Block : nn::Module {
  nn::MultiheadAttention self_attn{nullptr}, cross_attn{nullptr};
  nn::Linear head{nullptr};
  explicit Block(double dropout = 0.0) {
    self_attn = register_module("self_attn", nn::MultiheadAttention(nn::MultiheadAttentionOptions(32, 4).dropout(dropout)));
    cross_attn = register_module("cross_attn", nn::MultiheadAttention(nn::MultiheadAttentionOptions(32, 2)));
    head = register_module("head", nn::Linear(32, 3));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& memory, const at::Tensor& causal,
                     const at::Tensor& padding) {
    auto h = std::get<0>(self_attn->forward(x, x, x, /*key_padding_mask=*/at::Tensor(), /*need_weights=*/false, causal));
    auto c = cross_attn->forward(h, memory, memory, padding, /*need_weights=*/true);  // averaged over heads
    return torch::softmax(head->forward(std::get<0>(c)), -1);                       // a softmax outside the spans
  }
};

at::Tensor causal_mask(std::int64_t t) {
  return torch::triu(torch::full({t, t}, -std::numeric_limits<float>::infinity()), /*diagonal=*/1);
}

struct Inputs {
  at::Tensor x, memory, causal, padding;
};
Inputs make_inputs() {
  Inputs in;
  in.x = torch::randn({7, 3, 32});       // [T, B, E]
  in.memory = torch::randn({5, 3, 32});  // S = 5
  in.causal = causal_mask(7);
  in.padding = torch::zeros({3, 5}, torch::kBool);
  in.padding[1][4] = true;
  in.padding[2][3] = true;
  return in;
}

// What the module itself returns with need_weights=true, average_attn_weights=false.
at::Tensor own_weights(nn::MultiheadAttentionImpl& m, const at::Tensor& q, const at::Tensor& kv, const at::Tensor& padding,
                       const at::Tensor& mask) {
  return std::get<1>(m.forward(q, kv, kv, padding, /*need_weights=*/true, mask, /*average_attn_weights=*/false)).detach();
}

TEST(AttentionProbes, PerHeadWeightsEqualTheModulesOwnBitForBit) {
  torch::manual_seed(31);
  auto model = std::make_shared<Block>();
  const Inputs in = make_inputs();
  auto sink = std::make_shared<RecordingSink>();
  nm::ModuleProbes probes(*model, {"self_attn", "cross_attn", "head"}, sink);
  ASSERT_EQ(probes.targets()[0].layout, neuronmap::LayerLayout::attention_heads);
  for (bool train : {true, false}) {
    for (bool grad : {true, false}) {
      SCOPED_TRACE(std::string(train ? "train" : "eval") + (grad ? " + autograd" : " + NoGradGuard"));
      model->train(train);
      std::optional<torch::NoGradGuard> no_grad;
      if (!grad) no_grad.emplace();
      probes.enable(true);
      auto out = model->forward(in.x, in.memory, in.causal, in.padding);
      probes.enable(false);
      const auto self_w = sink->take(0);
      const auto cross_w = sink->take(1);
      ASSERT_EQ(self_w.size(), 1u);
      ASSERT_EQ(cross_w.size(), 1u);
      ASSERT_EQ(sink->take(2).size(), 1u);
      const auto want_self = own_weights(*model->self_attn, in.x, in.x, at::Tensor(), in.causal);
      const auto want_cross = own_weights(*model->cross_attn, std::get<0>(model->self_attn->forward(in.x, in.x, in.x, at::Tensor(), false, in.causal)),
                                          in.memory, in.padding, at::Tensor());
      EXPECT_EQ(self_w[0].sizes(), (std::vector<std::int64_t>{3, 4, 7, 7}));
      EXPECT_EQ(cross_w[0].sizes(), (std::vector<std::int64_t>{3, 2, 7, 5}));
      EXPECT_TRUE(torch::equal(self_w[0], want_self));
      EXPECT_TRUE(torch::equal(cross_w[0], want_cross));
      // The masks are in: no weight above the diagonal, none on padded keys.
      EXPECT_EQ(self_w[0].masked_select(causal_mask(7).isinf()).abs().max().item<float>(), 0.0f);
      EXPECT_EQ(cross_w[0][1].select(-1, 4).abs().max().item<float>(), 0.0f);
      if (grad) out.sum().backward();
    }
  }
  EXPECT_EQ(probes.errors(), 0u) << probes.last_error();
}

TEST(AttentionProbes, DropoutInTrainingCapturesTheSoftmaxBeforeIt) {
  torch::manual_seed(32);
  auto model = std::make_shared<Block>(/*dropout=*/0.5);
  const Inputs in = make_inputs();
  auto sink = std::make_shared<RecordingSink>();
  nm::ModuleProbes probes(*model, {"self_attn"}, sink);
  probes.enable(true);
  model->train();
  model->forward(in.x, in.memory, in.causal, in.padding);
  const auto w = sink->take(0);
  ASSERT_EQ(w.size(), 1u);
  // Attention probabilities: every query's weights sum to 1 (the dropped-out ones the module returns do not).
  EXPECT_TRUE(torch::allclose(w[0].sum(-1), torch::ones({3, 4, 7}), 0, 1e-6));
  model->eval();
  model->forward(in.x, in.memory, in.causal, in.padding);
  const auto e = sink->take(0);
  ASSERT_EQ(e.size(), 1u);
  probes.enable(false);
  EXPECT_TRUE(torch::equal(e[0], own_weights(*model->self_attn, in.x, in.x, at::Tensor(), in.causal)));
}

// Channels-first outputs: one row per sample, one column per channel, by the spatial max or mean;
// NaN stays NaN (the worker counts such rows as non-finite). Compared with a direct loop.
TEST(Rows, ChannelsFirstBySpatialMaxOrMean) {
  auto out = torch::randn({3, 4, 5, 6});
  out[1][2][3][4] = std::numeric_limits<float>::quiet_NaN();
  for (const auto spatial : {neuronmap::SpatialReduction::max, neuronmap::SpatialReduction::mean}) {
    const auto rows = nm::to_rows(out, neuronmap::LayerLayout::channels_first, neuronmap::Options{}.spatial(spatial));
    ASSERT_EQ(rows.sizes(), (std::vector<std::int64_t>{3, 4}));
    for (int b = 0; b < 3; ++b) {
      for (int c = 0; c < 4; ++c) {
        const auto plane = out[b][c].flatten();
        float expected = spatial == neuronmap::SpatialReduction::max ? -std::numeric_limits<float>::infinity() : 0.0f;
        bool nan = false;
        for (int i = 0; i < 30; ++i) {
          const float v = plane[i].item<float>();
          nan |= std::isnan(v);
          expected = spatial == neuronmap::SpatialReduction::max ? std::max(expected, v) : expected + v;
        }
        const float got = rows[b][c].item<float>();
        if (nan) {
          EXPECT_TRUE(std::isnan(got)) << b << "," << c;
        } else if (spatial == neuronmap::SpatialReduction::max) {
          EXPECT_EQ(got, expected) << b << "," << c;
        } else {
          EXPECT_NEAR(got, expected / 30.0f, 1e-6) << b << "," << c;
        }
      }
    }
  }
}

TEST(AttentionProbes, RowsAreSampleQueryKeyByHead) {
  const auto w = torch::rand({2, 3, 4, 5});
  const auto rows = nm::to_rows(w, neuronmap::LayerLayout::attention_heads, neuronmap::Options{});
  ASSERT_EQ(rows.sizes(), (std::vector<std::int64_t>{2 * 4 * 5, 3}));
  EXPECT_EQ(rows[(1 * 4 + 2) * 5 + 3][2].item<float>(), w[1][2][2][3].item<float>());
}

TEST(AttentionProbes, AModuleAfterAnAttentionMemberSaysWhy) {
  struct Net : nn::Module {
    nn::MultiheadAttention attn{nullptr};
    nn::ReLU act{nullptr}, act2{nullptr};  // two ReLUs: neither is found by its type either
    Net() {
      attn = register_module("attn", nn::MultiheadAttention(8, 2));
      act = register_module("act", nn::ReLU());
      act2 = register_module("act2", nn::ReLU());
    }
  } net;
  auto sink = std::make_shared<RecordingSink>();
  try {
    nm::ModuleProbes probes(net, {"act"}, sink);
    FAIL() << "act after an attention member was accepted";
  } catch (const neuronmap::UnsupportedModule& e) {
    EXPECT_NE(std::string(e.what()).find("MultiheadAttention"), std::string::npos) << e.what();
  }
}

// A self-attention module of head size 16 alone (Block's self_attn has head size 8).
struct WideHeads : nn::Module {
  nn::MultiheadAttention attn{nullptr};
  WideHeads() { attn = register_module("attn", nn::MultiheadAttention(nn::MultiheadAttentionOptions(64, 4))); }
};

// Python's nn.MultiheadAttention on the same weights and inputs, need_weights=True,
// average_attn_weights=False. The two modules round alike but in one place: C++ scales q by the double
// 1/sqrt(d), Python divides by sqrt(d) (found by redoing the C++ functional's steps in Python: they equal
// Python's weights once the scaling is a division). Where sqrt(d) is a power of two (head size 16)
// both are exact, and the capture must equal Python's weights bit for bit, with a causal float mask
// (self-attention) or a key padding mask (cross-attention); with head size 8 the C++ module's own
// weights differ from Python's in the last bit, and so does the capture, which equals the C++ module's
// own output bit for bit (PerHeadWeightsEqualTheModulesOwnBitForBit).
TEST(AttentionProbes, EqualPythonsPerHeadWeightsBitForBit) {
  if (std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") != 0) GTEST_SKIP() << "no python3 torch";
  const std::string dir = neuronmap::test::fresh_test_dir("probe");
  torch::manual_seed(33);
  auto model = std::make_shared<Block>();
  model->eval();
  const Inputs in = make_inputs();
  auto sink = std::make_shared<RecordingSink>();
  nm::ModuleProbes probes(*model, {"self_attn", "cross_attn"}, sink);
  probes.enable(true);
  model->forward(in.x, in.memory, in.causal, in.padding);
  probes.enable(false);
  const auto h = std::get<0>(model->self_attn->forward(in.x, in.x, in.x, at::Tensor(), false, in.causal)).detach();
  auto wide = std::make_shared<WideHeads>();
  wide->eval();
  const auto x64 = torch::randn({7, 3, 64});
  auto wide_sink = std::make_shared<RecordingSink>();
  nm::ModuleProbes wide_probes(*wide, {"attn"}, wide_sink);
  wide_probes.enable(true);
  wide->attn->forward(x64, x64, x64, at::Tensor(), /*need_weights=*/false, in.causal);
  wide_probes.enable(false);
  auto save_case = [&](const std::string& name, nn::MultiheadAttentionImpl& m, const at::Tensor& q, const at::Tensor& kv,
                       const at::Tensor& mask, const at::Tensor& padding) {
    std::vector<at::Tensor> items = {m.in_proj_weight.detach(), m.in_proj_bias.detach(),
                                     m.out_proj->weight.detach(), m.out_proj->bias.detach(), q, kv, kv,
                                     mask.defined() ? mask : torch::empty({0}),
                                     padding.defined() ? padding : torch::empty({0}),
                                     torch::tensor({m.options.num_heads()})};
    const auto bytes = torch::pickle_save(c10::IValue(c10::List<at::Tensor>(items)));
    std::ofstream(dir + "/case_" + name + ".pt", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  };
  save_case("self", *model->self_attn, in.x, in.x, in.causal, at::Tensor());
  save_case("cross", *model->cross_attn, h, in.memory, at::Tensor(), in.padding);
  save_case("wide", *wide->attn, x64, x64, in.causal, at::Tensor());
  const std::string cmd = "/usr/bin/python3 " NEURONMAP_SOURCE_DIR "/tests/probe/mha_reference.py " + dir;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto load = [&](const std::string& name) {
    std::ifstream f(dir + "/python_" + name + ".pt", std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return torch::pickle_load(bytes).toTensor();
  };
  const auto self_w = sink->take(0);
  const auto cross_w = sink->take(1);
  const auto wide_w = wide_sink->take(0);
  ASSERT_EQ(self_w.size(), 1u);
  ASSERT_EQ(cross_w.size(), 1u);
  ASSERT_EQ(wide_w.size(), 1u);
  for (const auto& [name, got] : {std::pair{"self", self_w[0]}, std::pair{"cross", cross_w[0]}, std::pair{"wide", wide_w[0]}}) {
    const auto want = load(name);
    ASSERT_EQ(got.sizes(), want.sizes()) << name;
    const double diff = (got - want).abs().max().item<double>();
    RecordProperty(std::string("max_abs_difference_") + name, std::to_string(diff));
    std::cout << name << ": max |C++ capture - Python need_weights| = " << diff
              << (torch::equal(got, want) ? " (bit-identical)" : "") << "\n";
    if (std::string(name) == "self") EXPECT_LE(diff, 1e-6) << name;  // head size 8: the scaling's rounding
    else EXPECT_TRUE(torch::equal(got, want)) << name << ": not bit-identical, max difference " << diff;
    EXPECT_TRUE(torch::equal(got == 0, want == 0)) << name << ": masked entries differ";
  }
}

}  // namespace

namespace {

// The whole way: a session on a C++ MultiheadAttention stores per-head statistics that equal the ones
// computed directly from the module's own weights, and its heads are the layer's neurons.
TEST(AttentionSession, HeadStatisticsInTheRunFileEqualTheModulesWeights) {
  torch::manual_seed(34);
  const std::string dir = neuronmap::test::fresh_test_dir("probe");
  auto model = std::make_shared<Block>();
  const Inputs in = make_inputs();
  std::vector<at::Tensor> weights;
  {
    auto session = neuronmap::attach(*model, {"self_attn"}, neuronmap::Options{}.every(1).file(dir + "/run.h5"));
    model->eval();
    for (int step = 0; step < 3; ++step) model->forward(in.x + 0.1 * step, in.memory, in.causal, in.padding);
    session.end_epoch(1, 0.5);
  }
  for (int step = 0; step < 3; ++step) {
    const auto x = in.x + 0.1 * step;
    weights.push_back(own_weights(*model->self_attn, x, x, at::Tensor(), in.causal));
  }
  const auto snapshot = neuronmap::Run::open(dir + "/run.h5").snapshot(0);
  const auto& layer = snapshot.layers.at(0);
  ASSERT_EQ(layer.n_neurons, 4);  // heads
  ASSERT_EQ(layer.heads.size(), 4u);
  EXPECT_EQ(layer.samples, 3 * 3 * 7 * 7);
  // Direct computation over every (step, sample, query): entropy normalised by log(keys) for queries
  // with at least two keys, weight on the previous key, the largest weight.
  const auto all = torch::cat(weights, 0).to(torch::kDouble);  // [3*B, H, T, S]
  for (std::int64_t h = 0; h < 4; ++h) {
    const auto w = all.select(1, h);  // [N, T, S]
    const auto keys = (w > 0).sum(-1).to(torch::kDouble);
    const auto plogp = torch::where(w > 0, w * torch::log(w), torch::zeros_like(w)).sum(-1);
    const auto open = keys > 1;
    const auto entropy = (-plogp / torch::log(keys)).masked_select(open);
    const auto& stats = layer.heads[static_cast<std::size_t>(h)];
    EXPECT_EQ(stats.queries, 3 * 3 * 7);
    EXPECT_NEAR(stats.entropy_mean, entropy.mean().item<double>(), 1e-6) << h;
    EXPECT_NEAR(stats.concentration, std::get<0>(w.max(-1)).masked_select(open).mean().item<double>(), 1e-6) << h;
    EXPECT_NEAR(stats.previous_token(), torch::diagonal(w, -1, 1, 2).mean().item<double>(), 1e-6) << h;
    EXPECT_FALSE(stats.role.empty());
  }
}

}  // namespace
