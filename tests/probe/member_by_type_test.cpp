// A parameter-free member that cannot be found after the sibling registered before it (it is the first
// member of a custom forward) is found by its type when no other module of the model computes its op:
// its op counts only when called from its type's own forward, never when the model calls the same op
// functionally.
#include <ATen/record_function.h>
#include <cxxabi.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "neuronmap/errors.hpp"
#include "probe/call_site.hpp"
#include "probe/module_probes.hpp"
#include "probe_test_util.hpp"

namespace {

namespace nm = neuronmap::detail;
namespace nn = torch::nn;
namespace F = torch::nn::functional;
using namespace neuronmap::test;

std::string demangled(const std::string& symbol) {
  int status = 0;
  char* text = abi::__cxa_demangle(symbol.c_str(), nullptr, nullptr, &status);
  std::string out = status == 0 && text != nullptr ? text : symbol;
  std::free(text);
  return out;
}

// What a thread-local RecordFunction callback saw of each outermost `op` on this thread: the index of
// the frame inside `code`, or -1.
struct FrameLog {
  const char* op = nullptr;
  const nm::CodeRange* code = nullptr;
  std::vector<int> frame_indices;
  int depth = 0;
};
thread_local FrameLog* t_frames = nullptr;

std::unique_ptr<at::ObserverContext> log_frame(const at::RecordFunction& fn) {
  if (t_frames != nullptr && t_frames->depth++ == 0 && std::strcmp(fn.name(), t_frames->op) == 0) {
    t_frames->frame_indices.push_back(nm::frame_index_in(*t_frames->code));
  }
  return nullptr;
}
void end_frame(const at::RecordFunction&, at::ObserverContext*) {
  if (t_frames != nullptr) --t_frames->depth;
}

// The frame indices `call` produced for `op`, one per outermost call.
std::vector<int> frames_of(const char* op, const nm::CodeRange& code, const std::function<void()>& call) {
  FrameLog log{op, &code, {}, 0};
  t_frames = &log;
  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(&log_frame, &end_frame).scopes({at::RecordScope::FUNCTION}));
  call();
  at::removeCallback(handle);
  t_frames = nullptr;
  return log.frame_indices;
}

// What the resolver relies on, checked on this LibTorch: the address taken from the pointer to member
// is the start of the exported function, and a member's call of its op has a frame of it on the stack
// while a functional call of the same op has none.
TEST(CallSite, AMembersOpHasItsForwardOnTheStackAndAFunctionalCallHasNot) {
  const auto relu_code = nm::exported_function_code(nm::member_function_entry(&nn::ReLUImpl::forward));
  ASSERT_FALSE(relu_code.empty());
  EXPECT_EQ(demangled(relu_code.symbol), "torch::nn::ReLUImpl::forward(at::Tensor)");
  const auto drop_code = nm::exported_function_code(nm::member_function_entry(&nn::Dropout2dImpl::forward));
  ASSERT_FALSE(drop_code.empty());
  EXPECT_EQ(demangled(drop_code.symbol), "torch::nn::Dropout2dImpl::forward(at::Tensor)");
  EXPECT_TRUE(nm::exported_function_code(nullptr).empty());
  // Not the start of a function: its size would be another's.
  EXPECT_TRUE(nm::exported_function_code(reinterpret_cast<const void*>(relu_code.begin + 1)).empty());

  nn::ReLU relu;
  nn::ReLU relu_inplace(nn::ReLUOptions(true));
  nn::Sequential seq(nn::Linear(4, 4), nn::ReLU());
  nn::Dropout2d drop(0.5);
  const auto x = torch::randn({3, 4});
  const auto img = torch::randn({2, 3, 4, 4});
  for (bool train : {true, false}) {
    SCOPED_TRACE(train ? "train" : "eval");
    drop->train(train);
    const auto member = frames_of("aten::relu", relu_code, [&] { relu(x); });
    ASSERT_EQ(member.size(), 1u);
    EXPECT_GE(member[0], 0);
    EXPECT_LE(member[0], nm::kCallSiteMaxFrames - 8) << "the frame is too deep for a margin";
    std::printf("ReLUImpl::forward is frame %d of the relu's start callback\n", member[0]);
    const auto inplace = frames_of("aten::relu_", relu_code, [&] { relu_inplace(x.clone()); });
    ASSERT_EQ(inplace.size(), 1u);
    EXPECT_GE(inplace[0], 0);
    const auto in_sequential = frames_of("aten::relu", relu_code, [&] { seq->forward(x); });
    ASSERT_EQ(in_sequential.size(), 1u);
    EXPECT_GE(in_sequential[0], 0);
    EXPECT_EQ(frames_of("aten::relu", relu_code, [&] { torch::relu(x); }), std::vector<int>{-1});
    EXPECT_EQ(frames_of("aten::relu", relu_code, [&] { F::relu(x); }), std::vector<int>{-1});
    EXPECT_EQ(frames_of("aten::relu_", relu_code, [&] {
      auto copy = x.clone();
      torch::relu_(copy);
    }), std::vector<int>{-1});

    const auto drop_member = frames_of("aten::feature_dropout", drop_code, [&] { drop(img); });
    ASSERT_EQ(drop_member.size(), 1u);
    EXPECT_GE(drop_member[0], 0);
    const auto functional_drop = frames_of("aten::feature_dropout", drop_code, [&] {
      F::dropout2d(img, F::Dropout2dFuncOptions().training(train));
    });
    EXPECT_EQ(functional_drop, std::vector<int>{-1});
  }
}

// A ReLU member registered first (nothing before it to chain from), called between functional relus
// of the same op kind on other tensors, in place and not.
struct ReluFirstNet : Recorder {
  nn::ReLU act{nullptr};
  nn::Linear fc{nullptr}, head{nullptr};
  ReluFirstNet() {
    act = register_module("act", nn::ReLU());
    fc = register_module("fc", nn::Linear(5, 6));
    head = register_module("head", nn::Linear(6, 2));
  }
  at::Tensor forward(const at::Tensor& x) {
    auto before = torch::relu(x);                    // the model's input: not act's
    auto h = keep("act", act(fc(x)));
    auto after = torch::relu(h * 2.0);               // consumes act's output: still not act's
    auto in_place = F::relu(h - 0.5, F::ReLUFuncOptions(true));
    h = keep("act", act(head(h)));                   // the member again
    return h.sum() + before.sum() + after.sum() + in_place.sum();
  }
};

TEST(MemberByType, FirstReluMemberBesideFunctionalRelus) {
  torch::manual_seed(31);
  auto model = std::make_shared<ReluFirstNet>();
  const auto x = torch::randn({3, 5});
  // check_struct_model: in every train/eval and autograd mode, exactly the member's two calls are
  // captured, each equal to what it returned.
  check_struct_model<ReluFirstNet>(model, {"act"}, [&](ReluFirstNet& m) { return m.forward(x); });

  const auto layers = nm::describe_layers(*model);
  ASSERT_EQ(layers.size(), 3u);
  EXPECT_EQ(layers[0].name, "act");
  EXPECT_TRUE(layers[0].probeable) << layers[0].why_not;
  EXPECT_EQ(layers[0].layout, neuronmap::LayerLayout::features_last);
}

// pytorch/examples' C++ MNIST network with its Dropout2d member registered first (probe_test_util.hpp).
using MnistDropFirstNet = MnistNet</*kDropFirst=*/true>;

TEST(MemberByType, MnistDropout2dRegisteredFirstInTrainAndEval) {
  torch::manual_seed(32);
  auto model = std::make_shared<MnistDropFirstNet>();
  const auto img = torch::randn({4, 1, 28, 28});
  check_struct_model<MnistDropFirstNet>(model, {"conv2_drop"}, [&](MnistDropFirstNet& m) {
    auto out = m.forward(img);
    if (m.is_training()) {  // channels were zeroed: the capture is the dropped-out tensor
      EXPECT_TRUE((m.seen["conv2_drop"].back().abs().sum({2, 3}) == 0).any().item<bool>());
    }
    return out;
  });
  const auto layers = nm::describe_layers(*model);
  EXPECT_TRUE(layers[0].probeable) << layers[0].why_not;
  EXPECT_EQ(layers[0].layout, neuronmap::LayerLayout::channels_first);
}

std::string unsupported_message(nn::Module& model, const std::string& name) {
  try {
    nm::ModuleProbes probes(model, {name}, std::make_shared<RecordingSink>());
  } catch (const neuronmap::UnsupportedModule& e) {
    return e.what();
  }
  ADD_FAILURE() << name << " was accepted";
  return "";
}

// Dropout2d and Dropout3d both run aten::feature_dropout: with one of each, neither is the only
// module of its op kind.
struct TwoFeatureDropoutsNet : nn::Module {
  struct Block : nn::Module {
    nn::Dropout3d drop{nullptr};
    nn::Conv3d conv{nullptr};
    Block() {
      drop = register_module("drop", nn::Dropout3d());
      conv = register_module("conv", nn::Conv3d(2, 2, 1));
    }
  };
  nn::Dropout2d drop{nullptr};
  nn::Conv2d conv{nullptr};
  std::shared_ptr<Block> block;
  TwoFeatureDropoutsNet() {
    drop = register_module("drop", nn::Dropout2d());
    conv = register_module("conv", nn::Conv2d(2, 2, 1));
    block = register_module("block", std::make_shared<Block>());
  }
};

TEST(MemberByType, ADropout2dBesideADropout3dIsNotTheOnlyOneOfItsOpKind) {
  TwoFeatureDropoutsNet model;
  auto msg = unsupported_message(model, "drop");
  EXPECT_NE(msg.find("first member of the model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Nor is it found by its type"), std::string::npos) << msg;
  EXPECT_NE(msg.find("another module of that op kind: 'block.drop' (torch::nn::Dropout3dImpl)"), std::string::npos)
      << msg;
  msg = unsupported_message(model, "block.drop");
  EXPECT_NE(msg.find("another module of that op kind: 'drop' (torch::nn::Dropout2dImpl)"), std::string::npos) << msg;
  for (const auto& layer : nm::describe_layers(model)) {
    if (layer.name == "drop" || layer.name == "block.drop") {
      EXPECT_FALSE(layer.probeable) << layer.name;
    }
  }
}

// Two ReLU members: the first, registered first, has no sibling before it, and is not the only ReLU.
// The second is found after the Linear registered before it; a module registered under two names
// counts once.
struct TwoReluMembersNet : nn::Module {
  nn::ReLU relu1{nullptr}, relu2{nullptr};
  nn::Linear fc{nullptr};
  TwoReluMembersNet() {
    relu1 = register_module("relu1", nn::ReLU());
    fc = register_module("fc", nn::Linear(3, 3));
    relu2 = register_module("relu2", nn::ReLU());
  }
};

TEST(MemberByType, TheFirstOfTwoReluMembersCannotBeProbed) {
  TwoReluMembersNet model;
  const auto msg = unsupported_message(model, "relu1");
  EXPECT_NE(msg.find("first member of the model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("another module of that op kind: 'relu2' (torch::nn::ReLUImpl)"), std::string::npos) << msg;
  EXPECT_NO_THROW(nm::ModuleProbes(model, {"relu2"}, std::make_shared<RecordingSink>()));

  struct SharedTwice : nn::Module {
    nn::ReLU act{nullptr};
    nn::Linear fc{nullptr};
    SharedTwice() {
      act = register_module("act", nn::ReLU());
      fc = register_module("fc", nn::Linear(3, 3));
      register_module("act_again", act);
    }
  } shared;
  EXPECT_NO_THROW(nm::ModuleProbes(shared, {"act"}, std::make_shared<RecordingSink>()));
}

// The limit: a module of the same type that is not part of the model, called on the same thread
// while the probes capture, has the same frame on its stack, and is taken for the member.
TEST(MemberByType, AModuleOfTheSameTypeOutsideTheModelIsTakenForTheMember) {
  ReluFirstNet model;
  auto sink = std::make_shared<RecordingSink>();
  nm::ModuleProbes probes(model, {"act"}, sink);
  probes.enable(true);
  nn::ReLU stranger;
  stranger(torch::randn({2, 2}));
  EXPECT_EQ(sink->take(0).size(), 1u);
  probes.enable(false);
  stranger(torch::randn({2, 2}));
  EXPECT_EQ(sink->total(), 0u);
}

}  // namespace
