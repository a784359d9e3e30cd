// Probes capture, bit for bit, what each submodule's forward returned, in every autograd mode.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "neuronmap/errors.hpp"
#include "probe/module_probes.hpp"
#include "probe_test_util.hpp"

namespace {

namespace nm = neuronmap::detail;
namespace nn = torch::nn;
using namespace neuronmap::test;

struct LinearNet : Recorder {
  nn::Linear fc{nullptr}, fc_nb{nullptr};
  LinearNet() {
    fc = register_module("fc", nn::Linear(6, 5));
    fc_nb = register_module("fc_nb", nn::Linear(nn::LinearOptions(6, 5).bias(false)));
  }
  at::Tensor forward(const at::Tensor& x2, const at::Tensor& x3) {
    auto a = keep("fc", fc(x2));     // addmm(b, x, w.t())
    auto b = keep("fc", fc(x3));     // matmul(x, w.t()) then add_(b)
    auto c = keep("fc_nb", fc_nb(x2));  // matmul alone
    auto d = keep("fc_nb", fc_nb(x3));
    return a.sum() + b.sum() + c.sum() + d.sum();
  }
};

TEST(ModuleProbes, LinearWithAndWithoutBias2dAnd3d) {
  torch::manual_seed(1);
  auto model = std::make_shared<LinearNet>();
  auto x2 = torch::randn({4, 6});
  auto x3 = torch::randn({2, 3, 6});
  check_struct_model<LinearNet>(model, {"fc", "fc_nb"}, [&](LinearNet& m) { return m.forward(x2, x3); });
}

struct ConvNet : Recorder {
  nn::Conv1d c1{nullptr};
  nn::Conv2d c2{nullptr}, c2_nb{nullptr};
  nn::Conv3d c3{nullptr};
  nn::ConvTranspose2d t2{nullptr};
  ConvNet() {
    c1 = register_module("c1", nn::Conv1d(nn::Conv1dOptions(2, 3, 3).padding(1)));
    c2 = register_module("c2", nn::Conv2d(nn::Conv2dOptions(3, 4, 3).stride(2)));
    c2_nb = register_module("c2_nb", nn::Conv2d(nn::Conv2dOptions(3, 2, 1).bias(false).padding_mode(torch::kCircular)));
    c3 = register_module("c3", nn::Conv3d(nn::Conv3dOptions(1, 2, 2)));
    t2 = register_module("t2", nn::ConvTranspose2d(nn::ConvTranspose2dOptions(4, 2, 2).stride(2)));
  }
  at::Tensor forward(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& x3) {
    auto a = keep("c1", c1(x1));
    auto b = keep("c2", c2(x2));
    auto c = keep("c2_nb", c2_nb(x2));
    auto d = keep("c3", c3(x3));
    auto e = keep("t2", t2(b));
    return a.sum() + c.sum() + d.sum() + e.sum();
  }
};

TEST(ModuleProbes, Conv1d2d3dAndTransposed) {
  torch::manual_seed(2);
  auto model = std::make_shared<ConvNet>();
  auto x1 = torch::randn({2, 2, 7});
  auto x2 = torch::randn({2, 3, 7, 7});
  auto x3 = torch::randn({1, 1, 3, 3, 3});
  check_struct_model<ConvNet>(model, {"c1", "c2", "c2_nb", "c3", "t2"},
                              [&](ConvNet& m) { return m.forward(x1, x2, x3); });
}

struct EmbeddingNet : Recorder {
  nn::Embedding emb{nullptr};
  nn::EmbeddingBag bag{nullptr};
  nn::Linear decoder{nullptr};  // tied to emb: different ops, so both stay probeable
  EmbeddingNet() {
    emb = register_module("emb", nn::Embedding(10, 6));
    bag = register_module("bag", nn::EmbeddingBag(nn::EmbeddingBagOptions(10, 4).mode(torch::kMean)));
    decoder = register_module("decoder", nn::Linear(6, 10));
    torch::NoGradGuard no_grad;
    decoder->weight.set_data(emb->weight.data());
  }
  at::Tensor forward(const at::Tensor& ids) {
    auto e = keep("emb", emb(ids));
    auto b = keep("bag", bag(ids));
    auto d = keep("decoder", decoder(e));
    return b.sum() + d.sum();
  }
};

TEST(ModuleProbes, EmbeddingEmbeddingBagAndTiedDecoder) {
  torch::manual_seed(3);
  auto model = std::make_shared<EmbeddingNet>();
  ASSERT_EQ(model->decoder->weight.storage().unsafeGetStorageImpl(), model->emb->weight.storage().unsafeGetStorageImpl());
  auto ids = torch::randint(0, 10, {3, 4}, torch::kLong);
  check_struct_model<EmbeddingNet>(model, {"emb", "bag", "decoder"}, [&](EmbeddingNet& m) { return m.forward(ids); });
}

struct NormNet : Recorder {
  nn::LayerNorm ln{nullptr};
  nn::GroupNorm gn{nullptr};
  nn::BatchNorm1d bn1{nullptr};
  nn::BatchNorm2d bn2{nullptr}, bn2_stats_only{nullptr};
  nn::InstanceNorm2d in2{nullptr};
  NormNet() {
    ln = register_module("ln", nn::LayerNorm(nn::LayerNormOptions({6})));
    gn = register_module("gn", nn::GroupNorm(2, 4));
    bn1 = register_module("bn1", nn::BatchNorm1d(6));
    bn2 = register_module("bn2", nn::BatchNorm2d(4));
    bn2_stats_only = register_module("bn2_stats_only", nn::BatchNorm2d(nn::BatchNorm2dOptions(4).affine(false)));
    in2 = register_module("in2", nn::InstanceNorm2d(nn::InstanceNorm2dOptions(4).affine(true)));
  }
  at::Tensor forward(const at::Tensor& seq, const at::Tensor& flat, const at::Tensor& img) {
    auto a = keep("ln", ln(seq));
    auto b = keep("gn", gn(img));
    auto c = keep("bn1", bn1(flat));
    auto d = keep("bn2", bn2(img));
    auto e = keep("bn2_stats_only", bn2_stats_only(img));
    auto f = keep("in2", in2(img));
    return a.sum() + b.sum() + (c * c).sum() + (d * d).sum() + (e * e).sum() + (f * f).sum();
  }
};

TEST(ModuleProbes, LayerNormGroupNormBatchNormInstanceNorm) {
  torch::manual_seed(4);
  auto model = std::make_shared<NormNet>();
  auto seq = torch::randn({2, 3, 6});
  auto flat = torch::randn({4, 6});
  auto img = torch::randn({2, 4, 3, 3}) * 3 + 1;
  // A few training passes first, so that eval mode's running statistics differ from batch ones.
  for (int i = 0; i < 3; ++i) model->forward(seq, flat, img);
  check_struct_model<NormNet>(model, {"ln", "gn", "bn1", "bn2", "bn2_stats_only", "in2"},
                              [&](NormNet& m) { return m.forward(seq, flat, img); });
  // Eval output must differ from training output, or the eval comparisons above proved little.
  model->train(true);
  auto train_out = model->bn2(img);
  model->train(false);
  EXPECT_FALSE(torch::equal(train_out, model->bn2(img)));
}

struct RecurrentNet : Recorder {
  nn::LSTM lstm{nullptr};
  nn::GRU gru{nullptr};
  nn::RNN rnn{nullptr};
  RecurrentNet() {
    lstm = register_module("lstm", nn::LSTM(nn::LSTMOptions(5, 7).num_layers(2).batch_first(true).dropout(0.25)));
    gru = register_module("gru", nn::GRU(nn::GRUOptions(5, 4).bidirectional(true)));
    rnn = register_module("rnn", nn::RNN(nn::RNNOptions(5, 3).nonlinearity(torch::kReLU)));
  }
  at::Tensor forward(const at::Tensor& batch_first, const at::Tensor& time_first) {
    auto a = keep("lstm", std::get<0>(lstm(batch_first)));
    auto b = keep("gru", std::get<0>(gru(time_first)));
    auto c = keep("rnn", std::get<0>(rnn(time_first)));
    return a.sum() + b.sum() + c.sum();
  }
};

TEST(ModuleProbes, LstmGruRnnOutputSequence) {
  torch::manual_seed(5);
  auto model = std::make_shared<RecurrentNet>();
  auto bf = torch::randn({2, 4, 5});
  auto tf = torch::randn({4, 2, 5});
  check_struct_model<RecurrentNet>(model, {"lstm", "gru", "rnn"}, [&](RecurrentNet& m) { return m.forward(bf, tf); });
}

// Sequentials: the real Sequential::forward with probes on, against a reference pass that steps
// through the children one by one (same seed, probes off) and clones each output before the next
// child can modify it in place.

at::Tensor step_through(nn::SequentialImpl& seq, const std::string& prefix, at::Tensor x,
                        std::map<std::string, at::Tensor>& refs) {
  const auto keys = seq.named_children().keys();
  std::size_t i = 0;
  for (auto it = seq.begin(); it != seq.end(); ++it, ++i) {
    const std::string name = prefix.empty() ? keys[i] : prefix + "." + keys[i];
    if (auto inner = std::dynamic_pointer_cast<nn::SequentialImpl>(it->ptr())) {
      x = step_through(*inner, name, x, refs);
    } else {
      x = it->forward(x);
    }
    refs[name] = x.clone();
  }
  return x;
}

struct SeqNet : nn::Module {
  std::vector<std::pair<std::string, nn::Sequential>> parts;
  void add(const std::string& name, nn::Sequential seq) { parts.emplace_back(name, register_module(name, seq)); }
  at::Tensor forward(at::Tensor x) {
    for (auto& part : parts) x = part.second->forward(x);
    return x;
  }
  at::Tensor reference(at::Tensor x, std::map<std::string, at::Tensor>& refs) {
    for (auto& part : parts) {
      x = step_through(*part.second, part.first, x, refs);
      refs[part.first] = x.clone();
    }
    return x;
  }
};

// Probes every submodule of `model` and checks each capture against the reference pass.
void check_seq_model(const std::shared_ptr<SeqNet>& model, const at::Tensor& input,
                     const std::function<void(const std::map<std::string, at::Tensor>&)>& check_refs = {}) {
  const auto names = nm::module_names(*model);
  auto sink = std::make_shared<RecordingSink>();
  nm::ModuleProbes probes(*model, names, sink);
  for_each_mode(*model, [&](Mode mode) {
    sink->clear();
    torch::manual_seed(11);
    probes.enable(true);
    at::Tensor out = model->forward(input);
    probes.enable(false);

    std::map<std::string, at::Tensor> refs;
    torch::manual_seed(11);
    at::Tensor ref_out = model->reference(input, refs);
    ASSERT_TRUE(torch::equal(out, ref_out)) << "reference pass is not deterministic";
    if (check_refs) check_refs(refs);
    for (std::size_t i = 0; i < names.size(); ++i) expect_same(sink->take(static_cast<int>(i)), {refs.at(names[i])}, names[i]);
    if (with_grad(mode)) backward_and_check(*model, out);
  });
  EXPECT_EQ(probes.errors(), 0u) << probes.last_error();
}

// A Sequential that can sit inside another (AnyModule needs a non-template forward).
struct InnerSequentialImpl : nn::SequentialImpl {
  using nn::SequentialImpl::SequentialImpl;
  at::Tensor forward(at::Tensor x) { return nn::SequentialImpl::forward(std::move(x)); }
};
TORCH_MODULE(InnerSequential);

bool has_negatives(const at::Tensor& t) { return (t < 0).any().item<bool>(); }

TEST(ModuleProbes, SequentialImageNetEveryChild) {
  torch::manual_seed(6);
  auto model = std::make_shared<SeqNet>();
  model->add("features",
             nn::Sequential(nn::Conv2d(nn::Conv2dOptions(3, 4, 3).padding(1)), nn::BatchNorm2d(4),
                            nn::ReLU(nn::ReLUOptions(true)), nn::MaxPool2d(2), nn::Dropout2d(0.3),
                            nn::Conv2d(nn::Conv2dOptions(4, 6, 3)), nn::ReLU(), nn::AdaptiveMaxPool2d(3),
                            nn::AvgPool2d(nn::AvgPool2dOptions(2).stride(1)), nn::AdaptiveAvgPool2d(2), nn::Flatten()));
  model->add("classifier", nn::Sequential(nn::Linear(24, 8), nn::ReLU(nn::ReLUOptions(true)),
                                          nn::Dropout(0.5), nn::Linear(8, 3),
                                          nn::Dropout(nn::DropoutOptions(0.2).inplace(true)), nn::LogSoftmax(1)));
  auto x = torch::randn({3, 3, 10, 10});
  check_seq_model(model, x, [](const std::map<std::string, at::Tensor>& refs) {
    // In-place ReLUs follow these: a capture taken after the ReLU would fail the comparison.
    EXPECT_TRUE(has_negatives(refs.at("features.1")));
    EXPECT_TRUE(has_negatives(refs.at("classifier.0")));
  });
}

TEST(ModuleProbes, SequentialActivationsOn3dLinearAndNesting) {
  torch::manual_seed(7);
  auto model = std::make_shared<SeqNet>();
  model->add("body", nn::Sequential(
                         nn::Linear(6, 8), nn::ReLU6(), nn::Linear(8, 8), nn::LeakyReLU(nn::LeakyReLUOptions().inplace(true)),
                         nn::ELU(), nn::SELU(), nn::CELU(), nn::GELU(), nn::SiLU(), nn::Mish(), nn::Softplus(),
                         nn::Hardtanh(), nn::Sigmoid(), nn::Tanh(),
                         nn::LayerNorm(nn::LayerNormOptions({8}).elementwise_affine(false)), nn::Identity(),
                         nn::AlphaDropout(0.2), InnerSequential(nn::ReLU(), nn::Linear(8, 5)), nn::Softmax(-1)));
  auto x = torch::randn({2, 3, 6});  // 3-D: Linear takes the matmul + add_ path
  check_seq_model(model, x, [](const std::map<std::string, at::Tensor>& refs) {
    EXPECT_TRUE(has_negatives(refs.at("body.2")));
  });
}

TEST(ModuleProbes, Sequential1dAnd3dPoolingAndParameterFreeNorms) {
  torch::manual_seed(8);
  auto model = std::make_shared<SeqNet>();
  model->add("seq1d", nn::Sequential(nn::Conv1d(2, 4, 3),
                                     nn::BatchNorm1d(nn::BatchNorm1dOptions(4).affine(false).track_running_stats(false)),
                                     nn::ReLU(), nn::MaxPool1d(2), nn::InstanceNorm1d(4), nn::AvgPool1d(2),
                                     nn::AdaptiveAvgPool1d(2), nn::AdaptiveMaxPool1d(1), nn::Flatten()));
  auto x = torch::randn({3, 2, 12});
  check_seq_model(model, x);

  auto vol = std::make_shared<SeqNet>();
  vol->add("vol", nn::Sequential(nn::Conv3d(nn::Conv3dOptions(1, 2, 3).padding(1)), nn::BatchNorm3d(2),
                                 nn::MaxPool3d(2), nn::Dropout3d(0.5), nn::AvgPool3d(1), nn::AdaptiveAvgPool3d(1),
                                 nn::Flatten()));
  check_seq_model(vol, torch::randn({2, 1, 4, 4, 4}));
}

TEST(ModuleProbes, LayoutsFollowTheProducer) {
  auto model = std::make_shared<SeqNet>();
  model->add("f", nn::Sequential(nn::Conv2d(1, 2, 3), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(), nn::Linear(2, 2),
                                 nn::Tanh()));
  auto probes = nm::ModuleProbes(*model, {"f.0", "f.1", "f.2", "f.3", "f.4", "f.5", "f"},
                                 std::make_shared<RecordingSink>());
  using L = neuronmap::LayerLayout;
  const std::vector<L> want = {L::channels_first, L::channels_first, L::channels_first, L::features_last,
                               L::features_last,  L::features_last,  L::features_last};
  ASSERT_EQ(probes.targets().size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(probes.targets()[i].layout, want[i]) << i;
  EXPECT_EQ(probes.targets()[0].module_type, "torch::nn::Conv2dImpl");
  EXPECT_EQ(probes.targets()[6].module_type, "torch::nn::SequentialImpl");
}

struct MemberNet : Recorder {
  nn::Linear fc1{nullptr}, fc2{nullptr};
  nn::Conv2d conv{nullptr};
  nn::ReLU act{nullptr};
  nn::LayerNorm plain_norm{nullptr};
  nn::Sequential block{nullptr};
  MemberNet() {
    conv = register_module("conv", nn::Conv2d(1, 2, 3));
    fc1 = register_module("fc1", nn::Linear(8, 6));
    act = register_module("act", nn::ReLU());
    plain_norm = register_module("plain_norm", nn::LayerNorm(nn::LayerNormOptions({6}).elementwise_affine(false)));
    fc2 = register_module("fc2", nn::Linear(6, 4));
    block = register_module("block", nn::Sequential(nn::ReLU(), nn::Linear(4, 4)));
  }
  at::Tensor forward(const at::Tensor& img) {
    auto c = keep("conv", conv(img));
    auto h = keep("fc1", fc1(c.flatten(1)));
    h = plain_norm(act(h));
    auto o = keep("fc2", fc2(h));
    return keep("block", block->forward(o));
  }
};

TEST(ModuleProbes, StructModelMembers) {
  torch::manual_seed(9);
  auto model = std::make_shared<MemberNet>();
  auto img = torch::randn({2, 1, 4, 4});
  check_struct_model<MemberNet>(model, {"conv", "fc1", "fc2", "block"}, [&](MemberNet& m) { return m.forward(img); });
}

using MnistMemberNet = MnistNet</*kDropFirst=*/false>;

TEST(ModuleProbes, MnistDropout2dMemberInTrainAndEval) {
  torch::manual_seed(21);
  auto model = std::make_shared<MnistMemberNet>();
  auto img = torch::randn({4, 1, 28, 28});
  check_struct_model<MnistMemberNet>(model, {"conv2_drop"}, [&](MnistMemberNet& m) {
    // In training some channels are zeroed (p = 0.5): the capture is the dropped-out tensor.
    auto out = m.forward(img);
    if (m.is_training()) {
      EXPECT_TRUE((m.seen["conv2_drop"].back().abs().sum({2, 3}) == 0).any().item<bool>());
    }
    return out;
  });
}

// Two ReLU members and an affine-free LayerNorm, called in a custom forward in registration order,
// with functional relus of the same op kind around them.
struct TwoReluNet : Recorder {
  nn::Linear fc1{nullptr}, fc2{nullptr};
  nn::ReLU relu1{nullptr}, relu2{nullptr};
  nn::LayerNorm norm{nullptr};
  TwoReluNet() {
    fc1 = register_module("fc1", nn::Linear(5, 7));
    relu1 = register_module("relu1", nn::ReLU());
    fc2 = register_module("fc2", nn::Linear(7, 6));
    relu2 = register_module("relu2", nn::ReLU(nn::ReLUOptions(true)));
    norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({6}).elementwise_affine(false)));
  }
  at::Tensor forward(const at::Tensor& x) {
    auto skip = torch::relu(x);  // the same op kind on another tensor: not relu1's
    auto h = keep("relu1", relu1(fc1(x)));
    h = keep("relu2", relu2(fc2(h)));
    auto o = keep("norm", norm(h));
    return o.sum() + torch::relu(h).sum() + skip.sum();
  }
};

TEST(ModuleProbes, ParameterFreeMembersOfACustomForward) {
  torch::manual_seed(22);
  auto model = std::make_shared<TwoReluNet>();
  auto x = torch::randn({3, 5});
  check_struct_model<TwoReluNet>(model, {"relu1", "relu2", "norm"}, [&](TwoReluNet& m) { return m.forward(x); });
}

TEST(ModuleProbes, DisabledProbesCaptureNothing) {
  torch::manual_seed(10);
  auto model = std::make_shared<MemberNet>();
  auto img = torch::randn({2, 1, 4, 4});
  auto sink = std::make_shared<RecordingSink>();
  nm::ModuleProbes probes(*model, {"conv", "fc1", "block.1"}, sink);
  EXPECT_FALSE(probes.enabled());
  model->forward(img);
  EXPECT_EQ(sink->total(), 0u);
  probes.enable(true);
  EXPECT_TRUE(probes.enabled());
  model->forward(img);
  EXPECT_EQ(sink->total(), 3u);
  EXPECT_EQ(probes.captured(), 3u);
  probes.enable(false);
  sink->clear();
  model->forward(img);
  EXPECT_EQ(sink->total(), 0u);
  EXPECT_EQ(probes.captured(), 3u);
}

TEST(ModuleProbes, TwoProbeSetsOnOneModel) {
  torch::manual_seed(12);
  auto model = std::make_shared<MemberNet>();
  auto img = torch::randn({2, 1, 4, 4});
  auto sink_a = std::make_shared<RecordingSink>();
  auto sink_b = std::make_shared<RecordingSink>();
  nm::ModuleProbes a(*model, {"fc1", "fc2"}, sink_a);
  auto b = std::make_unique<nm::ModuleProbes>(*model, std::vector<std::string>{"fc2", "conv"}, sink_b);
  a.enable(true);
  b->enable(true);
  model->seen.clear();
  model->forward(img);
  expect_same(sink_a->take(0), model->seen["fc1"], "a fc1");
  expect_same(sink_a->take(1), model->seen["fc2"], "a fc2");
  expect_same(sink_b->take(0), model->seen["fc2"], "b fc2");
  expect_same(sink_b->take(1), model->seen["conv"], "b conv");

  b->enable(false);
  model->forward(img);
  EXPECT_EQ(sink_a->total(), 2u);
  EXPECT_EQ(sink_b->total(), 0u);
  b.reset();
  sink_a->clear();
  model->seen.clear();
  model->forward(img);
  expect_same(sink_a->take(1), model->seen["fc2"], "a fc2 after b is gone");
}

TEST(ModuleProbes, ForwardOnOtherThreadsIsCaptured) {
  torch::manual_seed(13);
  auto model = std::make_shared<SeqNet>();
  model->add("body", nn::Sequential(nn::Linear(5, 6), nn::ReLU(nn::ReLUOptions(true)), nn::Linear(6, 3), nn::Tanh()));
  model->eval();
  auto sink = std::make_shared<RecordingSink>();
  nm::ModuleProbes probes(*model, {"body.1", "body"}, sink);
  probes.enable(true);

  constexpr int kPasses = 25;
  std::vector<at::Tensor> outputs[2];
  auto work = [&](int who) {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < kPasses; ++i) {
      auto x = torch::randn({2, 5}) + who * 10;
      outputs[who].push_back(model->forward(x));
    }
  };
  std::thread other(work, 1);
  work(0);
  other.join();

  auto relu = sink->take(0);
  auto out = sink->take(1);
  EXPECT_EQ(relu.size(), 2u * kPasses);
  ASSERT_EQ(out.size(), 2u * kPasses);
  EXPECT_EQ(sink->thread_count(), 2u);
  for (int who = 0; who < 2; ++who) {
    for (const auto& o : outputs[who]) {
      const auto hits = std::count_if(out.begin(), out.end(), [&](const at::Tensor& c) { return torch::equal(c, o); });
      EXPECT_EQ(hits, 1) << "thread " << who;
    }
  }
  EXPECT_EQ(probes.errors(), 0u) << probes.last_error();
}

TEST(ModuleProbes, ProbesComeAndGoWhileAnotherThreadTrains) {
  torch::manual_seed(14);
  auto model = std::make_shared<MemberNet>();
  std::atomic<bool> stop{false};
  std::thread trainer([&] {
    auto img = torch::randn({2, 1, 4, 4});
    while (!stop.load()) model->forward(img).sum().backward();
  });
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Joiner() {
      stop.store(true);
      thread.join();
    }
  } joiner{stop, trainer};
  for (int i = 0; i < 50; ++i) {
    auto sink = std::make_shared<RecordingSink>();
    nm::ModuleProbes probes(*model, {"conv", "fc1", "fc2", "block.1", "block"}, sink);
    probes.enable(true);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    probes.enable(i % 2 == 0);
    EXPECT_EQ(probes.errors(), 0u) << probes.last_error();
  }
}

TEST(ModuleProbes, NeitherModelNorSinkIsKeptAliveAfterDestruction) {
  auto model = std::make_shared<MemberNet>();
  auto sink = std::make_shared<RecordingSink>();
  std::weak_ptr<nn::Module> fc1 = model->fc1.ptr();
  std::weak_ptr<RecordingSink> weak_sink = sink;
  {
    nm::ModuleProbes probes(*model, {"fc1", "block"}, sink);
    probes.enable(true);
    model->forward(torch::randn({2, 1, 4, 4}));
    EXPECT_EQ(sink->total(), 2u);
  }
  model.reset();
  sink.reset();
  EXPECT_TRUE(fc1.expired());
  EXPECT_TRUE(weak_sink.expired());
}

TEST(ModuleProbes, ParametersMovedAfterAttachAreFoundOnEnable) {
  torch::manual_seed(15);
  auto model = std::make_shared<LinearNet>();
  auto sink = std::make_shared<RecordingSink>();
  nm::ModuleProbes probes(*model, {"fc"}, sink);
  model->to(torch::kDouble);  // new storages for every parameter
  probes.enable(true);
  model->forward(torch::randn({4, 6}, torch::kDouble), torch::randn({2, 3, 6}, torch::kDouble));
  expect_same(sink->take(0), model->seen["fc"], "fc after to(kDouble)");
}

std::string error_text(const std::function<void()>& f) {
  try {
    f();
  } catch (const neuronmap::Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModuleProbes, UnknownNameListsValidAndClosest) {
  auto model = std::make_shared<MemberNet>();
  auto sink = std::make_shared<RecordingSink>();
  EXPECT_THROW(nm::ModuleProbes(*model, {"fc11"}, sink), neuronmap::LayerNotFound);
  const auto msg = error_text([&] { nm::ModuleProbes(*model, {"fc1", "fc11"}, sink); });
  EXPECT_NE(msg.find("'fc11'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Closest: 'fc1', 'fc2'"), std::string::npos) << msg;
  for (const char* valid : {"'conv'", "'act'", "'plain_norm'", "'block.1'"}) EXPECT_NE(msg.find(valid), std::string::npos) << msg;
  EXPECT_EQ(nm::module_names(*model),
            (std::vector<std::string>{"conv", "fc1", "act", "plain_norm", "fc2", "block", "block.0", "block.1"}));
}

struct OddNet : nn::Module {
  struct Block : nn::Module {
    nn::Linear inner{nullptr};
    Block() { inner = register_module("inner", nn::Linear(2, 2)); }
  };
  std::shared_ptr<Block> custom;
  nn::Linear a{nullptr}, b{nullptr};
  nn::LSTMCell cell{nullptr};
  nn::Sequential starts_free{nullptr};
  OddNet() {
    custom = register_module("custom", std::make_shared<Block>());
    a = register_module("a", nn::Linear(3, 3));
    b = register_module("b", nn::Linear(3, 3));
    torch::NoGradGuard no_grad;
    b->weight.set_data(a->weight.data());
    cell = register_module("cell", nn::LSTMCell(3, 3));
    starts_free = register_module("starts_free", nn::Sequential(nn::ReLU(), nn::Linear(3, 3), nn::ReLU()));
  }
};

// A dropout on the model's input, registered first, and an affine-free norm after it. A second
// dropout and norm keep them from being found by their type (member_by_type_test.cpp).
struct FirstMemberNet : nn::Module {
  nn::Dropout drop{nullptr}, drop_out{nullptr};
  nn::LayerNorm norm{nullptr}, norm_out{nullptr};
  nn::Linear fc{nullptr};
  FirstMemberNet() {
    drop = register_module("drop", nn::Dropout(0.1));
    norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({3}).elementwise_affine(false)));
    fc = register_module("fc", nn::Linear(3, 3));
    drop_out = register_module("drop_out", nn::Dropout(0.1));
    norm_out = register_module("norm_out", nn::LayerNorm(nn::LayerNormOptions({3}).elementwise_affine(false)));
  }
};

TEST(ModuleProbes, UnsupportedModulesSayWhy) {
  auto member = std::make_shared<MemberNet>();
  auto sink = std::make_shared<RecordingSink>();
  auto unsupported = [&](nn::Module& model, const std::string& name) {
    EXPECT_THROW(nm::ModuleProbes(model, {name}, sink), neuronmap::UnsupportedModule) << name;
    return error_text([&] { nm::ModuleProbes(model, {name}, sink); });
  };
  // Parameter-free members called from a custom forward are found after the sibling registered before
  // them; one registered first, with another module of its op kind, has nothing to tie its op to.
  EXPECT_NO_THROW(nm::ModuleProbes(*member, {"act", "plain_norm"}, sink));
  FirstMemberNet first;
  auto msg = unsupported(first, "drop");
  EXPECT_NE(msg.find("has no parameters"), std::string::npos) << msg;
  EXPECT_NE(msg.find("first member of the model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Probe the layer that feeds it"), std::string::npos) << msg;
  EXPECT_NE(msg.find("another module of that op kind: 'drop_out'"), std::string::npos) << msg;
  msg = unsupported(first, "norm");
  EXPECT_NE(msg.find("layer_norm"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the sibling before it cannot be probed either"), std::string::npos) << msg;

  OddNet odd;  // not even held by a shared_ptr: attach must not need one
  msg = unsupported(odd, "custom");
  EXPECT_NE(msg.find("custom.inner"), std::string::npos) << msg;
  msg = unsupported(odd, "a");
  EXPECT_NE(msg.find("shares a parameter with 'b'"), std::string::npos) << msg;
  msg = unsupported(odd, "cell");
  EXPECT_NE(msg.find("does not know which op"), std::string::npos) << msg;
  msg = unsupported(odd, "starts_free.0");
  EXPECT_NE(msg.find("the sibling before it cannot be probed either"), std::string::npos) << msg;
  // The ReLU after the Linear is fine; the Sequential's own output is its last child's.
  EXPECT_NO_THROW(nm::ModuleProbes(odd, {"starts_free.2", "starts_free", "custom.inner"}, sink));

  auto root_seq = nn::Sequential(nn::ReLU(), nn::Linear(2, 2), nn::ReLU());
  msg = unsupported(*root_seq, "0");
  EXPECT_NE(msg.find("first module of the model"), std::string::npos) << msg;
}

TEST(ModuleProbes, DescribeLayers) {
  OddNet odd;
  const auto layers = nm::describe_layers(odd);
  std::map<std::string, nm::ModuleProbeability> by_name;
  for (const auto& l : layers) by_name[l.name] = l;
  ASSERT_EQ(layers.size(), nm::module_names(odd).size());
  EXPECT_TRUE(by_name["custom.inner"].probeable);
  EXPECT_EQ(by_name["custom.inner"].parameter_count, 6);
  EXPECT_EQ(by_name["custom"].parameter_count, 6);
  EXPECT_FALSE(by_name["custom"].probeable);
  EXPECT_NE(by_name["custom"].why_not.find("custom.inner"), std::string::npos);
  EXPECT_FALSE(by_name["a"].probeable);
  EXPECT_FALSE(by_name["starts_free.0"].probeable);
  EXPECT_TRUE(by_name["starts_free.2"].probeable);
  EXPECT_TRUE(by_name["starts_free"].probeable);
  EXPECT_EQ(by_name["starts_free.1"].module_type, "torch::nn::LinearImpl");
  EXPECT_TRUE(by_name["starts_free.1"].why_not.empty());
}

// Gradient probes.

// Keeps a clone of every output and, matched by storage, the gradient handed over for it.
class GradientSink : public nm::CaptureSink {
 public:
  struct Call {
    at::Tensor output, grad;
    const void* data = nullptr;
  };
  explicit GradientSink(std::size_t n) : calls(n) {}
  void on_output(int probe, const at::Tensor& output) noexcept override {
    std::lock_guard<std::mutex> lock(mutex);
    calls[static_cast<std::size_t>(probe)].push_back({output.detach().clone(), {}, output.data_ptr()});
  }
  void on_gradient(int probe, const at::Tensor& output, const at::Tensor& gradient) noexcept override {
    std::lock_guard<std::mutex> lock(mutex);
    ++gradients;
    for (auto& c : calls[static_cast<std::size_t>(probe)]) {
      if (c.data == output.data_ptr() && !c.grad.defined()) {
        c.grad = gradient.clone();
        if (!torch::equal(output, c.output)) ++wrong_activation;  // the activation handed with it
        return;
      }
    }
    ++unmatched;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto& c : calls) c.clear();
  }
  std::mutex mutex;
  std::vector<std::vector<Call>> calls;
  int gradients = 0, unmatched = 0, wrong_activation = 0;
};

// Members called from forward (their outputs get retain_grad() right there), and a Sequential whose
// children's outputs come from a second, step-by-step pass with retain_grad() (`manual`).
struct GradNet : nn::Module {
  nn::Conv2d conv{nullptr};
  nn::BatchNorm2d bn{nullptr};
  nn::Linear fc{nullptr}, fc3{nullptr}, head{nullptr};
  nn::LSTM lstm{nullptr};
  nn::LayerNorm norm{nullptr};
  nn::Sequential seq{nullptr};
  std::map<std::string, at::Tensor> kept;
  bool manual = false;

  GradNet() {
    conv = register_module("conv", nn::Conv2d(nn::Conv2dOptions(3, 4, 3)));
    bn = register_module("bn", nn::BatchNorm2d(4));
    fc = register_module("fc", nn::Linear(4 * 6 * 6, 8));
    fc3 = register_module("fc3", nn::Linear(8, 8));
    lstm = register_module("lstm", nn::LSTM(8, 6));
    norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({6})));
    head = nn::Linear(6, 5);
    seq = register_module("seq", nn::Sequential(head, nn::ReLU(), nn::Identity(), nn::Tanh()));
  }
  at::Tensor keep(const std::string& name, at::Tensor t) {
    if (t.requires_grad()) t.retain_grad();
    kept[name] = t;
    return t;
  }
  at::Tensor forward(const at::Tensor& img) {
    kept.clear();
    auto c = keep("conv", conv(img));
    auto b = keep("bn", bn(c));
    auto f = keep("fc", fc(b.flatten(1)));                         // addmm
    auto t = keep("fc3", fc3(f.unsqueeze(1).repeat({1, 3, 1})));  // matmul, then add_ of the bias
    auto l = keep("lstm", std::get<0>(lstm(t)));
    auto n = keep("norm", norm(l));
    if (!manual) return seq->forward(n);
    auto s0 = keep("seq.0", head(n));
    auto s1 = keep("seq.1", torch::relu(s0));
    return keep("seq.3", torch::tanh(s1));
  }
};

std::vector<at::Tensor> parameter_grads(nn::Module& m) {
  std::vector<at::Tensor> out;
  for (auto& p : m.parameters()) {
    out.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
  return out;
}

TEST(ModuleProbes, GradientsEqualRetainGradBitForBit) {
  torch::manual_seed(21);
  auto model = std::make_shared<GradNet>();
  const std::vector<std::string> names = {"conv",  "bn",    "fc",    "fc3",   "lstm", "norm",
                                          "seq.0", "seq.1", "seq.2", "seq.3", "seq"};
  // Where each probe's reference gradient is kept: Identity's output is its input, and a
  // Sequential's is its last child's.
  const std::vector<std::string> ref = {"conv",  "bn",    "fc",    "fc3",   "lstm", "norm",
                                        "seq.0", "seq.1", "seq.1", "seq.3", "seq.3"};
  auto sink = std::make_shared<GradientSink>(names.size());
  nm::ModuleProbes probes(*model, names, sink, /*gradients=*/true);
  model->train();
  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const at::Tensor img = torch::randn({2, 3, 8, 8});
    sink->clear();
    probes.enable(true);
    model->manual = false;
    model->forward(img).pow(2).mean().backward();
    probes.enable(false);
    const auto probed = model->kept;
    const auto probed_param_grads = parameter_grads(*model);

    model->manual = true;  // the same computation, op by op, without probes
    model->forward(img).pow(2).mean().backward();
    const auto reference = model->kept;
    const auto reference_param_grads = parameter_grads(*model);

    for (std::size_t i = 0; i < names.size(); ++i) {
      SCOPED_TRACE(names[i]);
      ASSERT_EQ(sink->calls[i].size(), 1u);
      const auto& call = sink->calls[i][0];
      const at::Tensor want = (probed.count(ref[i]) ? probed : reference).at(ref[i]).grad();
      ASSERT_TRUE(want.defined());
      ASSERT_TRUE(call.grad.defined()) << "no gradient";
      EXPECT_TRUE(torch::equal(call.grad, want)) << "gradient differs from retain_grad()";
      if (reference.count(ref[i])) {
        EXPECT_TRUE(torch::equal(call.grad, reference.at(ref[i]).grad())) << "differs from the unprobed pass";
      }
    }
    // The hooks change no gradient.
    ASSERT_EQ(probed_param_grads.size(), reference_param_grads.size());
    for (std::size_t k = 0; k < probed_param_grads.size(); ++k) {
      EXPECT_TRUE(torch::equal(probed_param_grads[k], reference_param_grads[k])) << "parameter " << k;
    }
  }
  EXPECT_EQ(sink->unmatched, 0);
  EXPECT_EQ(sink->wrong_activation, 0);
  EXPECT_EQ(probes.gradients_captured(), 3u * names.size());
  EXPECT_EQ(probes.errors(), 0u) << probes.last_error();
}

TEST(ModuleProbes, ABackwardThatNeverComesChangesNothing) {
  torch::manual_seed(22);
  auto model = std::make_shared<GradNet>();
  auto sink = std::make_shared<GradientSink>(2);
  nm::ModuleProbes probes(*model, {"fc", "seq.1"}, sink, /*gradients=*/true);
  probes.enable(true);
  const at::Tensor img = torch::randn({2, 3, 8, 8});
  for (int i = 0; i < 3; ++i) model->forward(img);  // autograd on, outputs dropped, no backward
  {
    torch::NoGradGuard no_grad;  // evaluation batches
    model->eval();
    model->forward(img);
    model->train();
  }
  EXPECT_EQ(sink->calls[0].size(), 4u);
  EXPECT_EQ(sink->gradients, 0);
  sink->clear();
  model->forward(img).sum().backward();  // only this pass's gradients arrive
  EXPECT_EQ(sink->gradients, 2);
  EXPECT_EQ(probes.gradients_captured(), 2u);
  EXPECT_TRUE(torch::equal(sink->calls[0][0].grad, model->kept.at("fc").grad()));
  EXPECT_EQ(sink->unmatched, 0);

  auto plain = std::make_shared<GradientSink>(1);  // gradients not asked for
  nm::ModuleProbes no_gradients(*model, {"fc"}, plain);
  probes.enable(false);
  no_gradients.enable(true);
  model->forward(img).sum().backward();
  EXPECT_EQ(plain->calls[0].size(), 1u);
  EXPECT_EQ(plain->gradients, 0);
  EXPECT_EQ(no_gradients.gradients_captured(), 0u);
}

TEST(ModuleProbes, GradientOfAnOutputModifiedInPlaceIsSkippedAndCounted) {
  torch::manual_seed(23);
  auto seq = nn::Sequential(nn::Linear(4, 3), nn::ReLU(nn::ReLUOptions().inplace(true)), nn::Tanh());
  auto sink = std::make_shared<GradientSink>(2);
  nm::ModuleProbes probes(*seq, {"0", "1"}, sink, /*gradients=*/true);
  probes.enable(true);
  seq->forward(torch::randn({5, 4})).sum().backward();
  EXPECT_FALSE(sink->calls[0][0].grad.defined());  // relu_ overwrote the Linear's output
  EXPECT_TRUE(sink->calls[1][0].grad.defined());
  EXPECT_EQ(probes.errors(), 1u);
  EXPECT_NE(probes.last_error().find("modified in place"), std::string::npos) << probes.last_error();
}

}  // namespace
