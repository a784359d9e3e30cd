// A session on a TorchScript model end to end: attach, train a few epochs, read the run file back.
// Also neuronmap::layers for C++ frontend models.
#include <gtest/gtest.h>

#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>

#include "neuronmap/errors.hpp"
#include "neuronmap/layers.hpp"
#include "neuronmap/run.hpp"
#include "neuronmap/torchscript.hpp"
#include "script_probes.hpp"
#include "ts_test_util.hpp"

namespace {

TEST(TorchScriptSession, TrainsAndWritesSnapshotsWithGradients) {
  torch::jit::Module model = torch::jit::load(nm_test::data_dir() + "/convnet.pt");
  const std::string path = nm_test::temp_path("torchscript_session.h5");
  const std::vector<std::string> layers = {"features.0", "features.2", "fc", "blocks.1.norm", "act"};
  {
    auto session = neuronmap::attach(model, layers,
                                     neuronmap::Options{}.every(1).file(path).overwrite(true).gradients(true));
    std::vector<at::Tensor> params;
    for (const auto& p : model.parameters()) params.push_back(p);
    torch::optim::SGD optimizer(params, torch::optim::SGDOptions(0.01));
    torch::manual_seed(0);
    model.train();
    for (int epoch = 1; epoch <= 3; ++epoch) {
      double loss_value = 0.0;
      for (int step = 0; step < 4; ++step) {
        const at::Tensor x = torch::randn({8, 3, 8, 8});
        const at::Tensor loss = model.forward({x}).toTensor().pow(2).mean();
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
        loss_value = loss.item<double>();
      }
      session.end_epoch(epoch, loss_value);
    }
    session.flush();
    EXPECT_EQ(session.last_error(), "");
    EXPECT_EQ(session.snapshots_written(), 3);
    EXPECT_EQ(session.layers(), layers);
  }
  auto run = neuronmap::Run::open(path);
  ASSERT_EQ(run.size(), 3);
  ASSERT_EQ(run.info().layers.size(), layers.size());
  EXPECT_EQ(run.info().layers[0].module_type, "torch.nn.modules.conv.Conv2d");
  const auto snapshot = run.snapshot(2);
  EXPECT_EQ(snapshot.epoch, 3);
  ASSERT_EQ(snapshot.layers.size(), layers.size());
  const std::vector<std::int64_t> neurons = {4, 4, 16, 16, 16};
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const auto& l = snapshot.layers[i];
    SCOPED_TRACE(l.name);
    EXPECT_EQ(l.name, layers[i]);
    EXPECT_EQ(l.n_neurons, neurons[i]);
    EXPECT_GT(l.samples, 0);
    EXPECT_GT(l.gradient_samples, 0);
    EXPECT_EQ(l.grad_mean_abs.size(), static_cast<std::size_t>(neurons[i]));
    EXPECT_EQ(l.counters.errors, 0);
  }
  std::filesystem::remove(path);
}

TEST(TorchScriptSession, AttachThrowsForUnknownLayers) {
  torch::jit::Module model = torch::jit::load(nm_test::data_dir() + "/convnet.pt");
  const std::string path = nm_test::temp_path("torchscript_session_bad.h5");
  EXPECT_THROW(neuronmap::attach(model, {"features.9"}, neuronmap::Options{}.file(path).overwrite(true)),
               neuronmap::LayerNotFound);
}

// The same layer-list check as attach() on a C++ frontend model, before the run file's directory is
// made (ScriptProbes would refuse the list too, but only after that).
TEST(TorchScriptSession, AttachRefusesAnEmptyOrRepeatedLayerList) {
  torch::jit::Module model = torch::jit::load(nm_test::data_dir() + "/convnet.pt");
  const std::filesystem::path dir = nm_test::temp_path("torchscript_layer_list");
  std::filesystem::remove_all(dir);
  const auto options = neuronmap::Options{}.file((dir / "run.h5").string());
  try {
    neuronmap::attach(model, {}, options);
    FAIL() << "expected UsageError";
  } catch (const neuronmap::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("at least one layer"), std::string::npos) << e.what();
  }
  try {
    neuronmap::attach(model, {"features.0", "fc", "features.0"}, options);
    FAIL() << "expected UsageError";
  } catch (const neuronmap::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("'features.0' is listed twice"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_TRUE(neuronmap::detail::instrumented_methods(model).empty());
}

struct Net : torch::nn::Module {
  Net() {
    seq = register_module("seq", torch::nn::Sequential(torch::nn::Conv2d(3, 4, 3), torch::nn::ReLU()));
    fc = register_module("fc", torch::nn::Linear(4, 2));
  }
  torch::nn::Sequential seq{nullptr};
  torch::nn::Linear fc{nullptr};
};

TEST(CppFrontendLayers, DescribesSubmodules) {
  Net net;
  const auto rows = neuronmap::layers(net);
  std::map<std::string, neuronmap::LayerDescription> by_name;
  for (const auto& r : rows) by_name[r.name] = r;
  ASSERT_TRUE(by_name.count("seq.0"));
  EXPECT_TRUE(by_name["seq.0"].probeable);
  EXPECT_EQ(by_name["seq.0"].layout, neuronmap::LayerLayout::channels_first);
  EXPECT_EQ(by_name["seq.0"].parameter_count, 3 * 4 * 9 + 4);
  EXPECT_EQ(by_name["fc"].layout, neuronmap::LayerLayout::features_last);
  EXPECT_FALSE(by_name["fc"].neurons.empty());
}

}  // namespace
