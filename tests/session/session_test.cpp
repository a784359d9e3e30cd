// attach() end to end: a real model trains, the run file's statistics equal a direct computation on
// the outputs the model itself produced, and misuse gets clear errors.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "neuronmap/neuronmap.hpp"

namespace nm = neuronmap;
namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) {
  const auto dir = fs::temp_directory_path() / "neuronmap_session_tests";
  fs::create_directories(dir);
  const auto path = dir / (name + ".h5");
  fs::remove(path);
  return path.string();
}

// Records what its layers returned, so the test has the exact reference the probes should see.
struct MlpImpl : torch::nn::Module {
  MlpImpl() : fc1(register_module("fc1", torch::nn::Linear(10, 16))), fc2(register_module("fc2", torch::nn::Linear(16, 6))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    auto h1 = fc1(x);
    if (record) seen_fc1.push_back(h1.detach().clone());
    auto h2 = fc2(torch::relu(h1));
    if (record) seen_fc2.push_back(h2.detach().clone());
    return h2;
  }
  torch::nn::Linear fc1, fc2;
  bool record = false;
  std::vector<torch::Tensor> seen_fc1, seen_fc2;
};
TORCH_MODULE(Mlp);

// Compares a stored layer against the concatenated reference rows, in float64.
void expect_layer_matches(const nm::LayerSnapshot& layer, const torch::Tensor& rows) {
  const auto x = rows.to(torch::kDouble);
  const auto n = x.size(0), d = x.size(1);
  ASSERT_EQ(layer.n_neurons, d);
  ASSERT_EQ(layer.samples, n);
  const auto mean = x.mean(0);
  const auto centred = x - mean;
  const auto comoment = centred.t().mm(centred);
  for (std::int64_t i = 0; i < d; ++i) {
    const double m = mean[i].item<double>();
    EXPECT_NEAR(layer.mean[i], m, 1e-9 * std::max(1.0, std::abs(m)));
    const double sd = std::sqrt(comoment[i][i].item<double>() / static_cast<double>(n));
    EXPECT_NEAR(layer.stddev[i], sd, 1e-9 * sd);
    EXPECT_EQ(layer.min[i], x.select(1, i).min().item<double>());
    EXPECT_EQ(layer.max[i], x.select(1, i).max().item<double>());
    for (std::int64_t j = 0; j < d; ++j) {
      const double r = comoment[i][j].item<double>() /
                       std::sqrt(comoment[i][i].item<double>() * comoment[j][j].item<double>());
      EXPECT_NEAR(layer.correlation[i * d + j], r, 1e-6);
    }
  }
}

}  // namespace

TEST(Session, TrainingRunWritesExactStatistics) {
  torch::manual_seed(0);
  Mlp model;
  torch::optim::SGD optimizer(model->parameters(), 0.05);
  const auto path = temp_path("train");
  auto session = nm::attach(*model, {"fc1", "fc2"}, nm::Options{}.every(2).file(path).workers(2));
  EXPECT_FALSE(session.capturing());
  for (int epoch = 1; epoch <= 4; ++epoch) {
    model->record = epoch == 2;
    for (int step = 0; step < 6; ++step) {
      auto x = torch::randn({32, 10});
      optimizer.zero_grad();
      auto loss = model->forward(x).pow(2).mean();
      loss.backward();
      optimizer.step();
    }
    session.end_epoch(epoch, 1.0 / epoch);
  }
  session.close();
  EXPECT_EQ(session.last_error(), "");
  EXPECT_EQ(session.snapshots_written(), 2);
  EXPECT_EQ(session.counters().captured_batches, 2 * 2 * 6);

  auto run = nm::Run::open(path);
  ASSERT_EQ(run.size(), 2);
  EXPECT_EQ(run.info().layers.size(), 2u);
  EXPECT_EQ(run.info().torch_version, "1.13.0");
  const auto snapshot = run.snapshot(0);
  EXPECT_EQ(snapshot.epoch, 2);
  EXPECT_DOUBLE_EQ(snapshot.loss, 0.5);
  expect_layer_matches(snapshot.layers.at(0), torch::cat(model->seen_fc1));
  expect_layer_matches(snapshot.layers.at(1), torch::cat(model->seen_fc2));
  EXPECT_EQ(snapshot.layers.at(0).output_shape, (std::vector<std::int64_t>{32, 16}));
}

TEST(Session, ConvOutputsBecomeChannelMeans) {
  torch::manual_seed(1);
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 5, 3)), torch::nn::ReLU());
  const auto path = temp_path("conv");
  std::vector<torch::Tensor> seen;
  {
    auto session = nm::attach(*net, {"0"}, nm::Options{}.every(1).file(path));
    for (int step = 0; step < 4; ++step) {
      auto x = torch::randn({8, 3, 9, 9});
      torch::NoGradGuard no_grad;
      auto conv = net[0]->as<torch::nn::Conv2d>();
      seen.push_back(conv->forward(x).mean({2, 3}));  // probed too: it is the same module
    }
    session.end_epoch(1);
  }
  auto layer = nm::Run::open(path).snapshot(0).layers.at(0);
  EXPECT_EQ(layer.n_neurons, 5);
  EXPECT_EQ(layer.samples, 32);
  const auto ref = torch::cat(seen).to(torch::kDouble).mean(0);
  for (int c = 0; c < 5; ++c) EXPECT_NEAR(layer.mean[c], ref[c].item<double>(), 1e-6);
}

TEST(Session, SequenceOutputsArePerTokenByDefault) {
  torch::nn::Linear fc(4, 3);
  struct Holder : torch::nn::Module {
    explicit Holder(torch::nn::Linear l) : fc(register_module("fc", l)) {}
    torch::nn::Linear fc;
  };
  Holder holder(fc);
  const auto path = temp_path("tokens");
  {
    auto session = nm::attach(holder, {"fc"}, nm::Options{}.every(1).file(path));
    holder.fc->forward(torch::randn({2, 5, 4}));
    session.end_epoch(1);
  }
  auto layer = nm::Run::open(path).snapshot(0).layers.at(0);
  EXPECT_EQ(layer.samples, 10);
  EXPECT_EQ(layer.n_neurons, 3);
  EXPECT_EQ(layer.output_shape, (std::vector<std::int64_t>{2, 5, 3}));
}

TEST(Session, ForwardOnAnotherThreadIsCaptured) {
  Mlp model;
  const auto path = temp_path("thread");
  auto session = nm::attach(*model, {"fc1"}, nm::Options{}.every(1).file(path));
  std::thread worker([&] {
    torch::NoGradGuard no_grad;
    model->forward(torch::randn({7, 10}));
  });
  worker.join();
  session.end_epoch(1);
  session.flush();
  EXPECT_EQ(session.counters().rows, 7);
}

TEST(Session, UnknownLayerListsTheValidNames) {
  Mlp model;
  try {
    nm::attach(*model, {"fc3"}, nm::Options{}.file(temp_path("unknown")));
    FAIL() << "expected LayerNotFound";
  } catch (const nm::LayerNotFound& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("fc3"), std::string::npos) << message;
    EXPECT_NE(message.find("fc1"), std::string::npos) << message;
    EXPECT_NE(message.find("fc2"), std::string::npos) << message;
  }
  EXPECT_FALSE(fs::exists(temp_path("unknown"))) << "a failed attach must not leave a file";
}

TEST(Session, AnExistingFileIsRefusedUnlessOverwrite) {
  Mlp model;
  const auto path = temp_path("existing");
  std::ofstream(path) << "precious";
  EXPECT_THROW(nm::attach(*model, {"fc1"}, nm::Options{}.file(path)), nm::FileError);
  std::ifstream in(path);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
  auto session = nm::attach(*model, {"fc1"}, nm::Options{}.file(path).overwrite(true));
  session.close();
  EXPECT_EQ(nm::Run::open(path).size(), 0);
}

TEST(Session, BadOptionsAreRefusedAtAttach) {
  Mlp model;
  EXPECT_THROW(nm::attach(*model, {"fc1"}, nm::Options{}.every(0).file(temp_path("bad"))), nm::UsageError);
  EXPECT_THROW(nm::attach(*model, {"fc1"}, nm::Options{}.threshold(2.0).file(temp_path("bad"))), nm::UsageError);
}

TEST(Session, EndEpochOutOfOrderIsAUsageError) {
  Mlp model;
  auto session = nm::attach(*model, {"fc1"}, nm::Options{}.file(temp_path("order")));
  session.end_epoch(3);
  EXPECT_THROW(session.end_epoch(2), nm::UsageError);
  EXPECT_THROW(session.end_epoch(3), nm::UsageError);
}

TEST(Session, ProbesAreDetachedWhenTheSessionEnds) {
  Mlp model;
  const auto path = temp_path("detach");
  { auto session = nm::attach(*model, {"fc1"}, nm::Options{}.every(1).file(path)); }
  // A forward after the session is gone must run normally.
  auto out = model->forward(torch::randn({3, 10}));
  EXPECT_EQ(out.size(0), 3);
}
