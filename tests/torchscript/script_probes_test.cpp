// ScriptProbes on TorchScript models: bitwise what Python forward hooks saw (tests/data/torchscript,
// made by make_models.py), gradients vs retain_grad(), first and later passes, train and eval, models
// that already ran, shared class types, parameter-free modules, detaching, names and errors.
#include <gtest/gtest.h>

#include <torch/script.h>

#include <filesystem>

#include "neuronmap/errors.hpp"
#include "neuronmap/torchscript.hpp"
#include "script_probes.hpp"
#include "ts_test_util.hpp"

namespace {

using neuronmap::detail::ScriptProbes;
using nm_test::RecordingSink;

struct Pass {
  bool train;
  bool autograd;
};

std::vector<Pass> parse_protocol(const std::string& text) {
  std::vector<Pass> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    out.push_back({item.rfind("train", 0) == 0, item.back() == '1'});
    start = end + 1;
  }
  return out;
}

// The hooks' references for one model: per pass, layer and call.
class PythonCase {
 public:
  explicit PythonCase(const std::string& name)
      : model_path_(nm_test::data_dir() + "/" + name + ".pt"), refs_(nm_test::load_dict(nm_test::data_dir() + "/" + name + "_refs.pt")) {
    passes_ = parse_protocol(refs_.at("protocol").toStringRef());
  }
  torch::jit::Module load() const { return torch::jit::load(model_path_); }
  at::Tensor input() const { return refs_.at("input").toTensor(); }
  const std::vector<Pass>& passes() const { return passes_; }
  std::vector<at::Tensor> outputs(int pass, const std::string& layer) const {
    std::vector<at::Tensor> out;
    for (int call = 0;; ++call) {
      auto it = refs_.find(key(pass, layer, call));
      if (it == refs_.end()) return out;
      out.push_back(it->second.toTensor());
    }
  }
  at::Tensor grad(int pass, const std::string& layer, int call) const {
    auto it = refs_.find(key(pass, layer, call) + "/grad");
    return it == refs_.end() ? at::Tensor() : it->second.toTensor();
  }
  at::Tensor model_output(int pass) const { return refs_.at("pass" + std::to_string(pass) + "/__output__").toTensor(); }

  // Runs pass `k` as the generator did; returns the model output.
  at::Tensor run(torch::jit::Module& model, int k) const {
    const Pass& p = passes_[static_cast<std::size_t>(k)];
    torch::manual_seed(100 + k);
    model.train(p.train);
    torch::AutoGradMode grad(p.autograd);
    at::Tensor y = model.forward({input()}).toTensor();
    if (p.autograd) y.pow(2).mean().backward();
    return y.detach();
  }

 private:
  static std::string key(int pass, const std::string& layer, int call) {
    return "pass" + std::to_string(pass) + "/" + layer + "/" + std::to_string(call);
  }
  std::string model_path_;
  std::map<std::string, c10::IValue> refs_;
  std::vector<Pass> passes_;
};

// Attach (to a fresh model, or after `unprobed_passes` passes without probes), run the remaining
// passes, and compare every capture and gradient with the hooks' references.
void check_against_python(const std::string& name, const std::vector<std::string>& layers,
                          const std::vector<std::string>& ref_names, int unprobed_passes) {
  SCOPED_TRACE(name + (unprobed_passes ? " (attached after " + std::to_string(unprobed_passes) + " passes)" : ""));
  const PythonCase c(name);
  torch::jit::Module model = c.load();
  for (int k = 0; k < unprobed_passes; ++k) c.run(model, k);
  auto sink = std::make_shared<RecordingSink>(layers.size());
  ScriptProbes probes(model, layers, sink, /*gradients=*/true);
  probes.enable(true);
  for (int k = unprobed_passes; k < static_cast<int>(c.passes().size()); ++k) {
    SCOPED_TRACE("pass " + std::to_string(k));
    sink->clear();
    const at::Tensor y = c.run(model, k);
    EXPECT_TRUE(nm_test::same_values(y, c.model_output(k))) << "model output";
    for (std::size_t i = 0; i < layers.size(); ++i) {
      SCOPED_TRACE("layer " + layers[i]);
      const auto want = c.outputs(k, ref_names[i]);
      const auto& got = sink->calls[i];
      ASSERT_EQ(got.size(), want.size()) << "calls";
      for (std::size_t call = 0; call < want.size(); ++call) {
        EXPECT_TRUE(nm_test::same_values(got[call].output, want[call])) << "output of call " << call;
        const at::Tensor want_grad = c.grad(k, ref_names[i], static_cast<int>(call));
        if (want_grad.defined()) {
          ASSERT_TRUE(got[call].grad.defined()) << "no gradient for call " << call;
          EXPECT_TRUE(nm_test::same_values(got[call].grad, want_grad)) << "gradient of call " << call;
        } else {
          EXPECT_FALSE(got[call].grad.defined()) << "a gradient Python did not see, call " << call;
        }
      }
    }
  }
  EXPECT_EQ(probes.errors(), 0u) << probes.last_error();
  EXPECT_EQ(sink->unmatched_gradients, 0);
}

const std::vector<std::string> kConvLayers = {
    "features.0", "features.1", "features.2", "features.3", "features.4", "flatten", "fc", "act", "identity",
    "blocks.0", "blocks.0.fc", "blocks.0.act", "blocks.0.norm", "blocks.1.fc", "blocks.1.act", "blocks.1.norm", "head"};
const std::vector<std::string> kSeqLayers = {"emb", "lstm", "gru", "norm", "act", "drop", "head"};

TEST(ScriptProbesPython, ConvNetMatchesForwardHooks) { check_against_python("convnet", kConvLayers, kConvLayers, 0); }
TEST(ScriptProbesPython, ConvNetAttachedAfterItRan) { check_against_python("convnet", kConvLayers, kConvLayers, 2); }
TEST(ScriptProbesPython, ConvNetAttachedMidTraining) { check_against_python("convnet", kConvLayers, kConvLayers, 4); }
TEST(ScriptProbesPython, SeqNetMatchesForwardHooks) { check_against_python("seqnet", kSeqLayers, kSeqLayers, 0); }
TEST(ScriptProbesPython, SeqNetAttachedAfterItRan) { check_against_python("seqnet", kSeqLayers, kSeqLayers, 3); }

TEST(ScriptProbesPython, DataParallelNamesWithAndWithoutPrefix) {
  const std::vector<std::string> refs = {"module.fc1", "module.relu", "module.fc2"};
  check_against_python("dataparallel", {"fc1", "relu", "fc2"}, refs, 0);
  check_against_python("dataparallel", refs, refs, 1);
}

TEST(ScriptProbesPython, ReportsWhatItResolvedAndLayouts) {
  auto model = PythonCase("dataparallel").load();
  ScriptProbes probes(model, {"fc1", "module.relu"}, std::make_shared<RecordingSink>(2));
  EXPECT_EQ(probes.resolved_names(), (std::vector<std::string>{"module.fc1", "module.relu"}));
  EXPECT_EQ(probes.targets()[0].name, "fc1");
  EXPECT_EQ(probes.targets()[0].module_type, "torch.nn.modules.linear.Linear");

  auto conv = PythonCase("convnet").load();
  ScriptProbes conv_probes(conv, {"features.0", "features.2", "features.4", "act", "blocks.0", "identity"},
                           std::make_shared<RecordingSink>(6));
  using neuronmap::LayerLayout;
  const auto& t = conv_probes.targets();
  EXPECT_EQ(t[0].layout, LayerLayout::channels_first);  // Conv2d
  EXPECT_EQ(t[1].layout, LayerLayout::channels_first);  // ReLU after BatchNorm2d
  EXPECT_EQ(t[2].layout, LayerLayout::channels_first);  // Dropout after MaxPool2d
  EXPECT_EQ(t[3].layout, LayerLayout::features_last);   // ReLU after Linear
  EXPECT_EQ(t[4].layout, LayerLayout::features_last);   // a user block ending in LayerNorm
  EXPECT_EQ(t[5].layout, LayerLayout::features_last);   // Identity after that ReLU
}

TEST(ScriptProbesPython, DisabledProbesCaptureNothing) {
  const PythonCase c("convnet");
  auto model = c.load();
  auto sink = std::make_shared<RecordingSink>(2);
  ScriptProbes probes(model, {"fc", "act"}, sink, true);
  c.run(model, 0);
  c.run(model, 2);
  EXPECT_TRUE(sink->calls[0].empty());
  EXPECT_EQ(sink->gradients, 0);
  probes.enable(true);
  c.run(model, 0);
  EXPECT_EQ(sink->calls[0].size(), 1u);
  EXPECT_EQ(sink->calls[1].size(), 2u);  // `act` runs twice per forward
  probes.enable(false);
  c.run(model, 1);
  EXPECT_EQ(sink->calls[0].size(), 1u);
}

TEST(ScriptProbesPython, NoGradientsUnlessAsked) {
  const PythonCase c("seqnet");
  auto model = c.load();
  auto sink = std::make_shared<RecordingSink>(1);
  ScriptProbes probes(model, {"lstm"}, sink, /*gradients=*/false);
  probes.enable(true);
  c.run(model, 2);
  EXPECT_EQ(sink->calls[0].size(), 1u);
  EXPECT_EQ(sink->gradients, 0);
}

// Models built in C++ with Module::define.

torch::jit::Module make_matmul(const std::string& type_name, std::int64_t seed) {
  torch::jit::Module m(type_name);
  torch::manual_seed(seed);
  m.register_parameter("weight", torch::randn({6, 6}), false);
  m.define("def forward(self, x):\n  return torch.matmul(x, self.weight)\n");
  return m;
}

// root.forward: pair -> act -> a -> act -> helper(b); plus an unused submodule and a list-returning one.
torch::jit::Module make_cpp_model() {
  torch::jit::Module root("Root");
  torch::jit::Module a = make_matmul("Mat", 1);
  torch::jit::Module b = a.deepcopy();  // shares a's class type (and its graph)
  b.register_parameter("weight", torch::full({6, 6}, 0.25), false);
  torch::jit::Module act("Act");  // parameter-free
  act.define("def forward(self, x):\n  return torch.relu(x)\n");
  torch::jit::Module pair("Pair");  // returns a tuple: hooks see element 0
  pair.define("def forward(self, x):\n  return (x * 2.0, x)\n");
  torch::jit::Module listing("Listing");
  listing.define("def forward(self, x) -> List[Tensor]:\n  return [x + 1.0, x]\n");
  root.register_module("a", a);
  root.register_module("b", b);
  root.register_module("act", act);
  root.register_module("pair", pair);
  root.register_module("listing", listing);
  root.register_module("unused", make_matmul("Unused", 3));
  root.define(R"(
def helper(self, x):
  return self.b.forward(x)

def forward(self, x):
  y, z = self.pair.forward(x)
  y = self.act.forward(self.a.forward(self.act.forward(y)))
  w = self.listing.forward(y)
  return self.helper(w[0]) + z
)");
  return root;
}

struct CppReference {
  at::Tensor pair, act0, a, act1, listing0, b;
};

CppReference cpp_reference(torch::jit::Module& m, const at::Tensor& x) {
  torch::NoGradGuard no_grad;
  CppReference r;
  auto call = [&](const char* name, const at::Tensor& in) { return m.attr(name).toModule().forward({in}); };
  r.pair = call("pair", x).toTupleRef().elements()[0].toTensor();
  r.act0 = call("act", r.pair).toTensor();
  r.a = call("a", r.act0).toTensor();
  r.act1 = call("act", r.a).toTensor();
  r.listing0 = call("listing", r.act1).toTensorVector()[0];
  r.b = call("b", r.listing0).toTensor();
  return r;
}

TEST(ScriptProbesCpp, SharedTypesParameterFreeTuplesListsAndHelperMethods) {
  auto model = make_cpp_model();
  const at::Tensor x = torch::randn({3, 6});
  const auto ref = cpp_reference(model, x);
  auto sink = std::make_shared<RecordingSink>(5);
  ScriptProbes probes(model, {"a", "b", "act", "pair", "listing"}, sink);
  probes.enable(true);
  for (int run = 0; run < 4; ++run) {  // the profiling executor re-plans after the first runs
    SCOPED_TRACE("run " + std::to_string(run));
    sink->clear();
    torch::NoGradGuard no_grad;
    model.forward({x});
    ASSERT_EQ(sink->calls[0].size(), 1u);
    ASSERT_EQ(sink->calls[1].size(), 1u);
    ASSERT_EQ(sink->calls[2].size(), 2u);
    ASSERT_EQ(sink->calls[3].size(), 1u);
    ASSERT_EQ(sink->calls[4].size(), 1u);
    EXPECT_TRUE(sink->calls[0][0].output.equal(ref.a));
    EXPECT_TRUE(sink->calls[1][0].output.equal(ref.b));
    EXPECT_TRUE(sink->calls[2][0].output.equal(ref.act0));
    EXPECT_TRUE(sink->calls[2][1].output.equal(ref.act1));
    EXPECT_TRUE(sink->calls[3][0].output.equal(ref.pair));
    EXPECT_TRUE(sink->calls[4][0].output.equal(ref.listing0));
  }
  EXPECT_EQ(probes.errors(), 0u) << probes.last_error();
}

TEST(ScriptProbesCpp, GradientsThroughSharedTypesMatchRetainGrad) {
  auto model = make_cpp_model();
  for (const auto& p : model.parameters()) p.requires_grad_(true);
  // The input requires grad too: otherwise the first `act` call (on pair(x), no parameter upstream)
  // has no gradient at all, and retain_grad() on it is an error (checked at the end).
  const at::Tensor x = torch::randn({3, 6}).requires_grad_(true);
  // Reference: the same computation op by op with retain_grad().
  auto call = [&](const char* name, const at::Tensor& in) { return model.attr(name).toModule().forward({in}); };
  at::Tensor pair = call("pair", x).toTupleRef().elements()[0].toTensor();
  at::Tensor act0 = call("act", pair).toTensor();
  at::Tensor a = call("a", act0).toTensor();
  at::Tensor act1 = call("act", a).toTensor();
  at::Tensor b = call("b", act1 + 1.0).toTensor();
  at::Tensor z = x;
  for (auto* t : {&a, &b, &act0, &act1}) t->retain_grad();
  (b + z).pow(2).mean().backward();

  auto sink = std::make_shared<RecordingSink>(3);
  ScriptProbes probes(model, {"a", "b", "act"}, sink, /*gradients=*/true);
  probes.enable(true);
  for (int run = 0; run < 4; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    sink->clear();
    model.forward({x}).toTensor().pow(2).mean().backward();
    ASSERT_EQ(sink->calls[2].size(), 2u);
    ASSERT_TRUE(sink->calls[0][0].grad.defined() && sink->calls[1][0].grad.defined());
    EXPECT_TRUE(sink->calls[0][0].grad.equal(a.grad()));
    EXPECT_TRUE(sink->calls[1][0].grad.equal(b.grad()));
    EXPECT_TRUE(sink->calls[2][0].grad.equal(act0.grad()));
    EXPECT_TRUE(sink->calls[2][1].grad.equal(act1.grad()));
  }
  // An input without requires_grad: the first `act` output is not part of the autograd graph, so no
  // gradient comes for it (retain_grad() would refuse it); the others still match.
  const at::Tensor x_plain = x.detach();
  for (int run = 0; run < 3; ++run) {
    SCOPED_TRACE("plain input, run " + std::to_string(run));
    sink->clear();
    model.forward({x_plain}).toTensor().pow(2).mean().backward();
    ASSERT_EQ(sink->calls[2].size(), 2u);
    EXPECT_FALSE(sink->calls[2][0].grad.defined());
    ASSERT_TRUE(sink->calls[0][0].grad.defined() && sink->calls[2][1].grad.defined());
    EXPECT_TRUE(sink->calls[0][0].grad.equal(a.grad()));
    EXPECT_TRUE(sink->calls[2][1].grad.equal(act1.grad()));
  }
  EXPECT_EQ(sink->unmatched_gradients, 0);
  EXPECT_EQ(probes.errors(), 0u) << probes.last_error();
}

TEST(ScriptProbesCpp, ForwardWithoutBackwardChangesNothing) {
  auto model = make_cpp_model();
  for (const auto& p : model.parameters()) p.requires_grad_(true);
  auto sink = std::make_shared<RecordingSink>(1);
  {
    ScriptProbes probes(model, {"a"}, sink, true);
    probes.enable(true);
    for (int i = 0; i < 3; ++i) model.forward({torch::randn({2, 6})});  // outputs dropped, no backward
    EXPECT_EQ(sink->calls[0].size(), 3u);
  }
  EXPECT_EQ(sink->gradients, 0);
}

TEST(ScriptProbesCpp, DetachRestoresGraphsAndSavedModelsAreClean) {
  auto model = make_cpp_model();
  const at::Tensor x = torch::randn({3, 6});
  at::Tensor before;
  {
    torch::NoGradGuard no_grad;
    before = model.forward({x}).toTensor();
  }
  const torch::jit::Function* forward_before = &model.get_method("forward").function();
  const torch::jit::Function* helper_before = &model.get_method("helper").function();
  {
    auto sink = std::make_shared<RecordingSink>(3);
    ScriptProbes probes(model, {"a", "act", "pair"}, sink);
    EXPECT_FALSE(neuronmap::detail::instrumented_methods(model).empty());
    EXPECT_NE(&model.get_method("forward").function(), forward_before);  // a fresh executor while attached
    EXPECT_EQ(model.get_method("forward").function().qualname(), forward_before->qualname());
    probes.enable(true);
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(model.forward({x}).toTensor().equal(before));
  }
  EXPECT_TRUE(neuronmap::detail::instrumented_methods(model).empty());
  EXPECT_EQ(&model.get_method("forward").function(), forward_before);  // the original functions are back
  EXPECT_EQ(&model.get_method("helper").function(), helper_before);
  EXPECT_EQ(model.type()->methods().size(), 2u);
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(model.forward({x}).toTensor().equal(before));
  }
  const std::string path = nm_test::temp_path("detached_model.pt");
  model.save(path);
  auto reloaded = torch::jit::load(path);
  EXPECT_EQ(reloaded.dump_to_str(true, false, false).find("neuronmap"), std::string::npos);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(reloaded.forward({x}).toTensor().equal(before));
  std::filesystem::remove(path);
}

TEST(ScriptProbesCpp, TwoProbeSetsOnOneModel) {
  auto model = make_cpp_model();
  const at::Tensor x = torch::randn({3, 6});
  auto first = std::make_shared<RecordingSink>(2);
  auto second = std::make_shared<RecordingSink>(1);
  auto p1 = std::make_unique<ScriptProbes>(model, std::vector<std::string>{"a", "act"}, first);
  ScriptProbes p2(model, {"a"}, second);
  p1->enable(true);
  p2.enable(true);
  torch::NoGradGuard no_grad;
  model.forward({x});
  EXPECT_EQ(first->calls[0].size(), 1u);
  EXPECT_EQ(first->calls[1].size(), 2u);
  EXPECT_EQ(second->calls[0].size(), 1u);
  p1.reset();
  model.forward({x});
  EXPECT_EQ(first->calls[0].size(), 1u);
  EXPECT_EQ(second->calls[0].size(), 2u);
  EXPECT_FALSE(neuronmap::detail::instrumented_methods(model).empty());
}

TEST(ScriptProbesCpp, UnknownNamesListTheValidOnes) {
  auto model = make_cpp_model();
  auto sink = std::make_shared<RecordingSink>(1);
  try {
    ScriptProbes probes(model, {"aa"}, sink);
    FAIL() << "no exception";
  } catch (const neuronmap::LayerNotFound& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'aa'"), std::string::npos) << what;
    EXPECT_NE(what.find("'listing'"), std::string::npos) << what;
    EXPECT_NE(what.find("neuronmap::layers"), std::string::npos) << what;
  }
  EXPECT_THROW(ScriptProbes(model, {"unused"}, sink), neuronmap::UnsupportedModule);
  EXPECT_THROW(ScriptProbes(model, {"a", "a"}, sink), neuronmap::UsageError);
  EXPECT_THROW(ScriptProbes(model, {}, sink), neuronmap::UsageError);
  EXPECT_TRUE(neuronmap::detail::instrumented_methods(model).empty());
}

TEST(ScriptProbesCpp, LayersDescribesEverySubmodule) {
  auto model = make_cpp_model();
  const auto rows = neuronmap::layers(model);
  ASSERT_EQ(rows.size(), 6u);
  std::map<std::string, neuronmap::LayerDescription> by_name;
  for (const auto& r : rows) by_name[r.name] = r;
  EXPECT_TRUE(by_name["a"].probeable);
  EXPECT_EQ(by_name["a"].parameter_count, 36);
  EXPECT_EQ(by_name["a"].module_type, "Mat");
  EXPECT_TRUE(by_name["act"].probeable);
  EXPECT_FALSE(by_name["unused"].probeable);
  EXPECT_NE(by_name["unused"].why_not.find("never runs"), std::string::npos);

  const auto shaped = neuronmap::layers(model, torch::randn({5, 6}));
  for (const auto& r : shaped) {
    if (!r.probeable) continue;
    EXPECT_EQ(r.output_shape, (std::vector<std::int64_t>{5, 6})) << r.name;
    EXPECT_EQ(r.calls, r.name == "act" ? 2 : 1) << r.name;
  }
  EXPECT_TRUE(neuronmap::detail::instrumented_methods(model).empty());  // it ran on a copy
}

TEST(ScriptProbesPython, LayersWithExampleInputGivesShapesAndNeurons) {
  const PythonCase c("convnet");
  auto model = c.load();
  const auto before = model.attr("features").toModule().attr("1").toModule().attr("running_mean").toTensor().clone();
  const auto rows = neuronmap::layers(model, c.input());
  std::map<std::string, neuronmap::LayerDescription> by_name;
  for (const auto& r : rows) by_name[r.name] = r;
  EXPECT_EQ(by_name["features.0"].output_shape, (std::vector<std::int64_t>{4, 4, 8, 8}));
  EXPECT_EQ(by_name["features.0"].layout, neuronmap::LayerLayout::channels_first);
  EXPECT_EQ(by_name["features.0"].neurons, "[4, 4, 8, 8] -> 4 x 4 (mean over 8x8)");
  EXPECT_EQ(by_name["features.3"].output_shape, (std::vector<std::int64_t>{4, 4, 4, 4}));
  EXPECT_EQ(by_name["fc"].neurons, "[4, 16] as is: 4 x 16");
  EXPECT_EQ(by_name["act"].calls, 2);
  EXPECT_EQ(by_name["blocks"].probeable, false);  // a ModuleList is never called itself
  const auto after = model.attr("features").toModule().attr("1").toModule().attr("running_mean").toTensor();
  EXPECT_TRUE(after.equal(before));

  auto seq = PythonCase("seqnet").load();
  for (const auto& r : neuronmap::layers(seq, PythonCase("seqnet").input())) {
    if (r.name == "lstm") {
      EXPECT_EQ(r.neurons, "[4, 6, 12] -> 24 x 12 (one sample per token)");
    }
  }
}

}  // namespace
