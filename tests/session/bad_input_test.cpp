// The bad-input matrix: each test feeds attach()/Session something wrong or odd and checks the
// documented behaviour (README "Reliability"): a clear exception at the call that caused it, or data
// counted and skipped, never a crash or a silently wrong file.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "neuronmap/neuronmap.hpp"
#include "session/testing.hpp"

namespace nm = neuronmap;
namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) {
  const auto dir = fs::temp_directory_path() / "neuronmap_bad_input_tests";
  fs::create_directories(dir);
  const auto path = dir / (name + ".h5");
  fs::remove(path);
  return path.string();
}

struct MlpImpl : torch::nn::Module {
  MlpImpl(int in = 10, int hidden = 16, int out = 6)
      : fc1(register_module("fc1", torch::nn::Linear(in, hidden))),
        fc2(register_module("fc2", torch::nn::Linear(hidden, out))),
        unused(register_module("unused", torch::nn::Linear(hidden, 3))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  torch::nn::Linear fc1, fc2, unused;
};
TORCH_MODULE(Mlp);

std::string path_of(const std::string& name) {
  return (fs::temp_directory_path() / "neuronmap_bad_input_tests" / (name + ".h5")).string();
}

nm::Options opts(const std::string& name) { return nm::Options{}.every(1).file(temp_path(name)).overwrite(true); }

void step(Mlp& model, std::int64_t batch = 8) {
  torch::NoGradGuard no_grad;
  model->forward(torch::randn({batch, 10}));
}

}  // namespace

// Tests of attach().

TEST(BadInput, SameLayerTwiceIsAUsageError) {
  Mlp model;
  const auto path = temp_path("twice");
  try {
    nm::attach(*model, {"fc1", "fc2", "fc1"}, nm::Options{}.file(path));
    FAIL() << "expected UsageError";
  } catch (const nm::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("'fc1'"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(BadInput, NoLayersIsAUsageError) {
  Mlp model;
  EXPECT_THROW(nm::attach(*model, {}, nm::Options{}.file(temp_path("none"))), nm::UsageError);
  EXPECT_FALSE(fs::exists(temp_path("none")));
}

TEST(BadInput, UnwritablePathIsAFileErrorAtAttach) {
  Mlp model;
  const auto dir = fs::temp_directory_path() / "neuronmap_bad_input_tests";
  fs::create_directories(dir);
  const auto plain_file = (dir / "a_plain_file").string();
  std::ofstream(plain_file) << "x";
  // A path below a regular file (ENOTDIR: fails even for root, unlike permission bits).
  EXPECT_THROW(nm::attach(*model, {"fc1"}, nm::Options{}.file(plain_file + "/run.h5")), nm::FileError);
  // A directory where the file should be, with and without overwrite.
  EXPECT_THROW(nm::attach(*model, {"fc1"}, nm::Options{}.file(dir.string())), nm::FileError);
  EXPECT_THROW(nm::attach(*model, {"fc1"}, nm::Options{}.file(dir.string()).overwrite(true)), nm::FileError);
  EXPECT_TRUE(fs::is_directory(dir));
}

TEST(BadInput, MissingParentDirectoriesAreCreated) {
  Mlp model;
  const auto dir = fs::temp_directory_path() / "neuronmap_bad_input_tests" / "new_parent";
  fs::remove_all(dir);
  {
    auto session = nm::attach(*model, {"fc1"}, nm::Options{}.file((dir / "sub" / "run.h5").string()));
    step(model);
    session.end_epoch(1);
  }
  EXPECT_EQ(nm::Run::open((dir / "sub" / "run.h5").string()).size(), 0);  // every(5): epoch 1 is no snapshot
}

TEST(BadInput, AttachTwiceToOneModelGivesTwoIndependentSessions) {
  Mlp model;
  auto a = nm::attach(*model, {"fc1"}, opts("twice_a"));
  auto b = nm::attach(*model, {"fc1", "fc2"}, opts("twice_b"));
  step(model, 8);
  step(model, 4);
  a.end_epoch(1);
  b.end_epoch(1);
  a.close();
  b.close();
  EXPECT_EQ(a.last_error(), "");
  EXPECT_EQ(b.last_error(), "");
  const auto sa = nm::Run::open(path_of("twice_a")).snapshot(0);
  const auto sb = nm::Run::open(path_of("twice_b")).snapshot(0);
  EXPECT_EQ(sa.layers.at(0).samples, 12);
  EXPECT_EQ(sb.layers.at(0).samples, 12);
  EXPECT_EQ(sa.layers.at(0).mean, sb.layers.at(0).mean);
}

TEST(BadInput, OptionsOutOfRangeAreRefusedAtAttach) {
  Mlp model;
  for (auto options : {nm::Options{}.queue_capacity(0), nm::Options{}.workers(0), nm::Options{}.max_batches(-1),
                       nm::Options{}.reservoir_size(-1), nm::Options{}.min_group_size(0), nm::Options{}.file("")}) {
    if (!options.file().empty()) options.file(temp_path("options"));
    EXPECT_THROW(nm::attach(*model, {"fc1"}, options), nm::UsageError);
  }
  EXPECT_FALSE(fs::exists(temp_path("options")));
}

// Tests of what the layers produce.

TEST(BadInput, ALayerThatNeverFiresIsStoredEmpty) {
  Mlp model;
  const auto path = temp_path("never");
  {
    auto session = nm::attach(*model, {"fc1", "unused"}, nm::Options{}.every(1).file(path));
    step(model);
    session.end_epoch(1);
    session.close();
    EXPECT_EQ(session.last_error(), "");
  }
  const auto s = nm::Run::open(path).snapshot(0);
  ASSERT_EQ(s.layers.size(), 2u);
  EXPECT_EQ(s.layers[0].samples, 8);
  EXPECT_EQ(s.layers[1].name, "unused");
  EXPECT_EQ(s.layers[1].samples, 0);
  EXPECT_TRUE(s.layers[1].output_shape.empty());
  EXPECT_TRUE(s.layers[1].groups.empty());
}

TEST(BadInput, OutputRankChangesKeepTheWidth) {
  // [B, 16] and [B, T, 16] (per token) are the same 16 neurons. A 1-D output [16] reads as 16 samples
  // of 1 neuron (dim 0 is always the batch): another width, skipped, counted and reported.
  Mlp model;
  const auto path = temp_path("rank");
  nm::Counters counters;
  {
    auto session = nm::attach(*model, {"fc1"}, nm::Options{}.every(1).file(path));
    torch::NoGradGuard no_grad;
    model->forward(torch::randn({8, 10}));     // [8, 16]: 8 rows
    model->forward(torch::randn({2, 5, 10}));  // [2, 5, 16]: 10 rows (per token)
    model->forward(torch::randn({10}));        // [16]: skipped
    session.end_epoch(1);
    session.close();
    counters = session.counters();
    EXPECT_NE(session.last_error().find("changed from 16 to 1 neurons"), std::string::npos) << session.last_error();
  }
  EXPECT_EQ(counters.skipped_batches, 1);
  const auto layer = nm::Run::open(path).snapshot(0).layers.at(0);
  EXPECT_EQ(layer.n_neurons, 16);
  EXPECT_EQ(layer.samples, 18);
  EXPECT_EQ(layer.output_shape, (std::vector<std::int64_t>{2, 5, 16}));  // the last batch analysed
}

TEST(BadInput, AWidthChangeIsSkippedCountedAndReported) {
  // Conv1d on a batched [B, C, L] input gives C = 5 neurons; on an unbatched [C, L] input its output
  // [5, L'] reads as 5 samples of L' neurons: another width, skipped.
  torch::nn::Sequential net(torch::nn::Conv1d(torch::nn::Conv1dOptions(3, 5, 3)));
  const auto path = temp_path("width");
  nm::Counters counters;
  std::string error;
  {
    auto session = nm::attach(*net, {"0"}, opts("width"));
    torch::NoGradGuard no_grad;
    net->forward(torch::randn({4, 3, 20}));
    net->forward(torch::randn({3, 20}));
    net->forward(torch::randn({2, 3, 20}));
    session.end_epoch(1);
    session.close();
    counters = session.counters();
    error = session.last_error();
  }
  EXPECT_EQ(counters.captured_batches, 3);
  EXPECT_EQ(counters.skipped_batches, 1);
  EXPECT_NE(error.find("changed from 5 to 18 neurons"), std::string::npos) << error;
  const auto layer = nm::Run::open(path).snapshot(0).layers.at(0);
  EXPECT_EQ(layer.n_neurons, 5);
  EXPECT_EQ(layer.samples, 6);
  EXPECT_EQ(layer.counters.skipped_batches, 1);
}

TEST(BadInput, ZeroNeuronLayerIsStoredWithNoNeurons) {
  // Linear(10, 0) cannot be built (its initialisation fails in LibTorch); a convolution with 0 output
  // channels can't either. A layer whose outputs have 0 features: Linear(0, 4) fed [B, 0] gives
  // 4 neurons of bias only, and its predecessor the [B, 0] input itself; probe a Linear(10, 4) fed
  // normally next to a zero-width embedding table.
  struct NetImpl : torch::nn::Module {
    NetImpl()
        : emb(register_module("emb", torch::nn::Embedding(torch::nn::EmbeddingOptions(5, 0)))),
          fc(register_module("fc", torch::nn::Linear(10, 4))) {}
    torch::nn::Embedding emb;
    torch::nn::Linear fc;
  };
  NetImpl net;
  const auto path = temp_path("zero");
  {
    auto session = nm::attach(net, {"emb", "fc"}, nm::Options{}.every(1).file(path));
    torch::NoGradGuard no_grad;
    EXPECT_EQ(net.emb->forward(torch::arange(5)).size(1), 0);
    net.fc->forward(torch::randn({8, 10}));
    session.end_epoch(1);
    session.close();
  }
  const auto s = nm::Run::open(path).snapshot(0);
  EXPECT_EQ(s.layers.at(0).n_neurons, 0);
  EXPECT_TRUE(s.layers.at(0).mean.empty());
  EXPECT_TRUE(s.layers.at(0).groups.empty());
  EXPECT_EQ(s.layers.at(1).n_neurons, 4);  // the other layer is unaffected
  EXPECT_EQ(s.layers.at(1).samples, 8);
}

TEST(BadInput, OneNeuronLayerHasAOneByOneCorrelation) {
  Mlp model(10, 1, 6);
  const auto path = temp_path("one");
  {
    auto session = nm::attach(*model, {"fc1"}, opts("one"));
    step(model);
    session.end_epoch(1);
    session.close();
    EXPECT_EQ(session.last_error(), "");
  }
  const auto layer = nm::Run::open(path).snapshot(0).layers.at(0);
  EXPECT_EQ(layer.n_neurons, 1);
  EXPECT_EQ(layer.samples, 8);
  ASSERT_EQ(layer.correlation.size(), 1u);
  EXPECT_FLOAT_EQ(layer.correlation[0], 1.0f);
  EXPECT_TRUE(layer.groups.empty());  // min_group_size 3
}

TEST(BadInput, ConstantLayerIsAllDeadWithoutNaN) {
  Mlp model;
  {
    torch::NoGradGuard no_grad;
    model->fc1->weight.zero_();
    model->fc1->bias.fill_(0.5);
  }
  const auto path = temp_path("constant");
  {
    auto session = nm::attach(*model, {"fc1"}, opts("constant"));
    step(model, 32);
    session.end_epoch(1);
    session.close();
    EXPECT_EQ(session.last_error(), "");
  }
  const auto layer = nm::Run::open(path).snapshot(0).layers.at(0);
  EXPECT_EQ(layer.dead_count(), 16);
  for (int i = 0; i < 16; ++i) {
    EXPECT_DOUBLE_EQ(layer.mean[i], 0.5);
    EXPECT_DOUBLE_EQ(layer.stddev[i], 0.0);
  }
  for (const float r : layer.correlation) EXPECT_FALSE(std::isnan(r));
  EXPECT_TRUE(layer.groups.empty()) << "constant neurons must not be grouped as perfectly correlated";
}

TEST(BadInput, NonFiniteRowsAreSkippedAndCounted) {
  Mlp model;
  const auto path = temp_path("nan");
  auto x = torch::randn({8, 10});
  x[2][3] = std::numeric_limits<float>::quiet_NaN();
  x[5][0] = std::numeric_limits<float>::infinity();
  nm::Counters counters;
  {
    auto session = nm::attach(*model, {"fc1"}, opts("nan"));
    torch::NoGradGuard no_grad;
    model->forward(x);
    session.end_epoch(1);
    session.close();
    counters = session.counters();
  }
  EXPECT_EQ(counters.nonfinite_rows, 2);
  const auto layer = nm::Run::open(path).snapshot(0).layers.at(0);
  EXPECT_EQ(layer.samples, 6);
  EXPECT_EQ(layer.counters.nonfinite_rows, 2);
  for (const double m : layer.mean) EXPECT_TRUE(std::isfinite(m));
}

TEST(BadInput, BFloat16OutputsAreReadAsFloat32) {
  Mlp model;
  model->to(torch::kBFloat16);
  const auto path = temp_path("bf16");
  const auto x = torch::randn({16, 10}).to(torch::kBFloat16);
  torch::Tensor reference;
  {
    auto session = nm::attach(*model, {"fc1"}, opts("bf16"));
    torch::NoGradGuard no_grad;
    model->forward(x);
    reference = model->fc1->forward(x).to(torch::kDouble);  // probed too: 32 rows in all
    session.end_epoch(1);
    session.close();
    EXPECT_EQ(session.last_error(), "");
  }
  const auto layer = nm::Run::open(path).snapshot(0).layers.at(0);
  EXPECT_EQ(layer.samples, 32);
  const auto mean = reference.mean(0);
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(layer.mean[i], mean[i].item<double>(), 1e-6);
}

TEST(BadInput, HalfOutputsAreReadAsFloat32) {
  struct EmbedImpl : torch::nn::Module {
    EmbedImpl() : emb(register_module("emb", torch::nn::Embedding(20, 4))) {}
    torch::nn::Embedding emb;
  };
  EmbedImpl model;
  model.to(torch::kHalf);
  const auto path = temp_path("half");
  const auto ids = torch::arange(20);
  {
    auto session = nm::attach(model, {"emb"}, opts("half"));
    torch::NoGradGuard no_grad;
    model.emb->forward(ids);
    session.end_epoch(1);
    session.close();
    EXPECT_EQ(session.last_error(), "");
  }
  const auto layer = nm::Run::open(path).snapshot(0).layers.at(0);
  EXPECT_EQ(layer.samples, 20);
  const auto mean = model.emb->weight.to(torch::kDouble).mean(0);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(layer.mean[i], mean[i].item<double>(), 1e-6);
}

TEST(BadInput, IntegerOutputsAreReadAsFloat32) {
  // An Embedding whose table holds integers: its output (found by the table's storage) is int64.
  struct EmbedImpl : torch::nn::Module {
    EmbedImpl() : emb(register_module("emb", torch::nn::Embedding(20, 4))) {
      emb->weight.set_requires_grad(false);
      emb->weight.set_data(torch::randint(-50, 50, {20, 4}, torch::kLong));  // same storage slot, int64
    }
    torch::nn::Embedding emb;
  };
  EmbedImpl model;
  const auto path = temp_path("int");
  const auto ids = torch::arange(20);
  {
    auto session = nm::attach(model, {"emb"}, opts("int"));
    torch::NoGradGuard no_grad;
    ASSERT_EQ(model.emb->forward(ids).scalar_type(), torch::kLong);
    session.end_epoch(1);
    session.close();
    EXPECT_EQ(session.last_error(), "");
  }
  const auto layer = nm::Run::open(path).snapshot(0).layers.at(0);
  ASSERT_EQ(layer.samples, 20);
  const auto weight = model.emb->weight.to(torch::kDouble);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(layer.mean[i], weight.select(1, i).mean().item<double>(), 1e-9);
    EXPECT_EQ(layer.max[i], weight.select(1, i).max().item<double>());  // small integers: exact in float32
  }
}

// Tests of the epoch callback and the session's life.

TEST(BadInput, AnEmptyEpochGivesASnapshotWithoutSamples) {
  Mlp model;
  const auto path = temp_path("empty_epoch");
  {
    auto session = nm::attach(*model, {"fc1"}, opts("empty_epoch"));
    session.end_epoch(1);
    step(model);
    session.end_epoch(2);
    session.close();
    EXPECT_EQ(session.last_error(), "");
  }
  const auto run = nm::Run::open(path);
  ASSERT_EQ(run.size(), 2);
  EXPECT_EQ(run.snapshot(0).layers.at(0).samples, 0);
  EXPECT_EQ(run.snapshot(1).layers.at(0).samples, 8);
}

TEST(BadInput, EndEpochAfterCloseIsAUsageError) {
  Mlp model;
  auto session = nm::attach(*model, {"fc1"}, opts("after_close"));
  session.end_epoch(1);
  session.close();
  EXPECT_THROW(session.end_epoch(2), nm::UsageError);
  session.close();  // idempotent
  EXPECT_EQ(nm::Run::open(path_of("after_close")).size(), 1);
}

TEST(BadInput, SessionDestroyedMidEpochKeepsEarlierSnapshots) {
  Mlp model;
  const auto path = temp_path("mid_epoch");
  {
    auto session = nm::attach(*model, {"fc1"}, opts("mid_epoch"));
    step(model);
    session.end_epoch(1);
    step(model);  // epoch 2 is being captured when the session goes
  }
  const auto run = nm::Run::open(path);
  ASSERT_EQ(run.size(), 1);  // an epoch that never ended is not a snapshot
  EXPECT_EQ(run.snapshot(0).epoch, 1);
  step(model);  // the model trains on without probes
}

TEST(BadInput, SessionDestroyedMidWriteFinishesTheSnapshot) {
  Mlp model;
  const auto path = temp_path("mid_write");
  {
    auto session = nm::attach(*model, {"fc1", "fc2"}, opts("mid_write"));
    nm::detail::set_worker_delay(session, 0.02);
    for (int i = 0; i < 5; ++i) step(model);
    session.end_epoch(1);  // returns at once; the workers are still busy for ~0.2 s
  }
  const auto run = nm::Run::open(path);
  ASSERT_EQ(run.size(), 1);
  EXPECT_EQ(run.snapshot(0).layers.at(0).samples, 40);
}

TEST(BadInput, ObserveWithTheWrongSizeIsIgnored) {
  Mlp model;
  auto session = nm::attach(*model, {"fc1"}, opts("observe"));
  step(model, 8);
  session.observe(std::vector<float>(3, 1.0f), std::vector<std::int32_t>(5, 7));  // 3 losses, 5 bad tags, 8 rows
  session.observe(torch::Tensor(), {});
  session.end_epoch(1);
  session.close();
  const auto layer = nm::Run::open(path_of("observe")).snapshot(0).layers.at(0);
  EXPECT_EQ(layer.samples, 8);
}

TEST(BadInput, ThousandLayersInOneSession) {
  torch::nn::Sequential net;
  std::vector<std::string> names;
  for (int i = 0; i < 1000; ++i) {
    net->push_back(torch::nn::Linear(3, 3));
    names.push_back(std::to_string(i));
  }
  const auto path = temp_path("thousand");
  {
    auto session = nm::attach(*net, names, opts("thousand"));
    torch::NoGradGuard no_grad;
    net->forward(torch::randn({4, 3}));
    session.end_epoch(1);
    session.close();
    EXPECT_EQ(session.last_error(), "");
  }
  const auto run = nm::Run::open(path);
  ASSERT_EQ(run.size(), 1);
  const auto s = run.snapshot(0);
  ASSERT_EQ(s.layers.size(), 1000u);
  for (const auto& layer : s.layers) EXPECT_EQ(layer.samples, 4);
  const auto r = std::system((std::string(NEURONMAP_CLI) + " inspect " + path + " > /dev/null").c_str());
  EXPECT_EQ(r, 0);
}
