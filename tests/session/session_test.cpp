// attach() end to end: a real model trains, the run file's statistics equal a direct computation on
// the outputs the model itself produced, and misuse gets clear errors.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <array>
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
    EXPECT_NE(message.find("neuronmap::layers(model)"), std::string::npos) << message;
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

// Keeps the layers' outputs themselves (retain_grad()), for the gradient reference.
struct GradMlpImpl : torch::nn::Module {
  GradMlpImpl() : fc1(register_module("fc1", torch::nn::Linear(10, 16))), fc2(register_module("fc2", torch::nn::Linear(16, 6))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    auto h1 = fc1(x);
    auto h2 = fc2(torch::relu(h1));
    if (keep && h1.requires_grad()) {
      h1.retain_grad();
      h2.retain_grad();
      kept.push_back({h1, h2});
    }
    return h2;
  }
  torch::nn::Linear fc1, fc2;
  bool keep = false;
  std::vector<std::array<torch::Tensor, 2>> kept;
};
TORCH_MODULE(GradMlp);

TEST(Session, GradientsGiveMeanAbsGradientTaylorAndGroupImportance) {
  torch::manual_seed(5);
  GradMlp model;
  torch::optim::SGD optimizer(model->parameters(), 0.05);
  const auto path = temp_path("gradients");
  {
    auto session = nm::attach(*model, {"fc1", "fc2"}, nm::Options{}.every(2).file(path).gradients(true));
    for (int epoch = 1; epoch <= 2; ++epoch) {
      model->keep = epoch == 2;
      for (int step = 0; step < 3; ++step) {
        optimizer.zero_grad();
        auto loss = model->forward(torch::randn({32, 10})).pow(2).mean();
        loss.backward();
        optimizer.step();
      }
      model->keep = false;
      model->forward(torch::randn({8, 10}));  // a forward whose backward never comes
      torch::NoGradGuard no_grad;
      model->forward(torch::randn({8, 10}));  // an evaluation batch
      session.end_epoch(epoch);
    }
    session.close();
    EXPECT_EQ(session.last_error(), "");
    EXPECT_EQ(session.snapshots_written(), 1);
  }
  ASSERT_EQ(model->kept.size(), 3u);
  const auto snapshot = nm::Run::open(path).snapshot(0);
  for (int l = 0; l < 2; ++l) {
    const auto& layer = snapshot.layers.at(static_cast<std::size_t>(l));
    SCOPED_TRACE(layer.name);
    std::vector<torch::Tensor> a, g;
    for (const auto& k : model->kept) {
      a.push_back(k[static_cast<std::size_t>(l)].detach());
      g.push_back(k[static_cast<std::size_t>(l)].grad());
    }
    const auto acts = torch::cat(a), grads = torch::cat(g);
    EXPECT_EQ(layer.samples, 96 + 16);        // every forward's activations
    EXPECT_EQ(layer.gradient_samples, 96);    // only the batches that went through backward
    const auto mean_abs = grads.abs().to(torch::kDouble).mean(0);
    const auto taylor = (acts * grads).to(torch::kDouble).mean(0);
    ASSERT_EQ(layer.grad_mean_abs.size(), static_cast<std::size_t>(layer.n_neurons));
    ASSERT_EQ(layer.taylor.size(), static_cast<std::size_t>(layer.n_neurons));
    double taylor_abs_sum = 0.0;
    for (std::int64_t i = 0; i < layer.n_neurons; ++i) {
      const double m = mean_abs[i].item<double>(), t = taylor[i].item<double>();
      EXPECT_GT(layer.grad_mean_abs[static_cast<std::size_t>(i)], 0.0);
      EXPECT_NEAR(layer.grad_mean_abs[static_cast<std::size_t>(i)], m, 1e-9 * std::abs(m) + 1e-15);
      EXPECT_NEAR(layer.taylor[static_cast<std::size_t>(i)], t, 1e-9 * std::abs(t) + 1e-15);
      taylor_abs_sum += std::abs(t);
    }
    EXPECT_GT(taylor_abs_sum, 0.0);
    for (const auto& group : layer.groups) {
      double want = 0.0;
      for (auto i : group.neuron_indices) want += std::abs(layer.taylor[static_cast<std::size_t>(i)]);
      EXPECT_NEAR(group.importance, want, 1e-12 * want + 1e-15);
    }
  }
}
