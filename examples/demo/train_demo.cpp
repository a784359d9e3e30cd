// The demo: trains a small network in C++ on a synthetic task with four task families ("skills"),
// with NeuronMap probes on four layers and a snapshot every 5 epochs, writing outputs/demo/run.h5.
//
// Each sample is 32 features plus a one-hot family code (amplitude 4); its class (of 8) follows a
// rule that depends on the family, so different parts of the network have reason to specialise:
//   mathematical: the sum of features 0..7, bucketed        linguistic: the sign pattern of 8..10
//   logical:      XOR-style parity of signs of 16..18       memory:     the nearest of 8 prototypes
#include <neuronmap/neuronmap.hpp>

#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace {

constexpr int kFeatures = 32;
constexpr int kFamilies = 4;
constexpr int kClasses = 8;
constexpr double kCodeScale = 4.0;
const char* const kFamilyNames[kFamilies] = {"mathematical", "linguistic", "logical", "memory"};

struct Dataset {
  torch::Tensor inputs;   // [N, kFeatures + kFamilies]
  torch::Tensor targets;  // [N] class ids
  torch::Tensor family;   // [N] family ids (the sample tags)
};

Dataset make_dataset(int samples, std::uint64_t seed) {
  torch::manual_seed(static_cast<std::int64_t>(seed));
  auto x = torch::randn({samples, kFeatures});
  auto family = torch::randint(0, kFamilies, {samples}, torch::kLong);
  auto prototypes = torch::randn({kClasses, kFeatures}, torch::TensorOptions().dtype(torch::kFloat));
  auto targets = torch::empty({samples}, torch::kLong);

  auto math = x.slice(1, 0, 8).sum(1);
  auto math_class = ((math / 8.0 + 0.5).clamp(0, 0.999) * kClasses).floor().to(torch::kLong);
  auto signs = (x > 0).to(torch::kLong);
  auto ling_class = signs.select(1, 8) + 2 * signs.select(1, 9) + 4 * signs.select(1, 10);
  auto parity = (signs.select(1, 16) ^ signs.select(1, 17)) + 2 * (signs.select(1, 17) ^ signs.select(1, 18)) +
                4 * (signs.select(1, 16) ^ signs.select(1, 18) ^ signs.select(1, 19));
  auto memory_class = torch::cdist(x, prototypes).argmin(1);

  targets = torch::where(family == 0, math_class,
            torch::where(family == 1, ling_class, torch::where(family == 2, parity, memory_class)));
  // The family code is a strong cue (amplitude kCodeScale against unit-variance features), so that
  // first-layer ReLU units learn to gate on one family: with amplitude 1 the network keeps most units
  // shared and only some families get groups of their own (docs/LEARNING.md, "The demo").
  auto code = torch::one_hot(family, kFamilies).to(torch::kFloat) * kCodeScale;
  return {torch::cat({x, code}, 1), targets, family};
}

struct NetImpl : torch::nn::Module {
  NetImpl() {
    features = register_module("features", torch::nn::Sequential(
                                               torch::nn::Linear(kFeatures + kFamilies, 128), torch::nn::ReLU(),
                                               torch::nn::Linear(128, 64), torch::nn::ReLU()));
    head = register_module("head", torch::nn::Linear(64, kClasses));
  }
  torch::Tensor forward(const torch::Tensor& x) { return head(features->forward(x)); }
  torch::nn::Sequential features{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(Net);

}  // namespace

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : "outputs/demo/run.h5";
  const int epochs = argc > 2 ? std::stoi(argv[2]) : 20;
  // Optional third argument "float32": Options::products(float32) (docs/PERFORMANCE.md).
  const auto products = argc > 3 && std::string(argv[3]) == "float32" ? neuronmap::Products::float32
                                                                        : neuronmap::Products::float64;
  torch::set_num_threads(2);

  const auto train = make_dataset(8192, 1);
  Net net;
  torch::optim::Adam optimizer(net->parameters(), torch::optim::AdamOptions(2e-3));

  // The one line: probes on four layers (one parameter-free), a snapshot every 5 epochs.
  auto session = neuronmap::attach(
      *net, {"features.0", "features.1", "features.2", "head"},
      neuronmap::Options{}
          .every(5)
          .file(out)
          .overwrite(true)
          .products(products)
          .tag_names({kFamilyNames[0], kFamilyNames[1], kFamilyNames[2], kFamilyNames[3]}));
  // A fixed reference batch, evaluated at every snapshot: the CKA between snapshots is measured on it.
  const auto reference = make_dataset(256, 99);
  session.set_reference([&] { net->forward(reference.inputs); });

  std::printf("demo: %d epochs, %lld samples of %d task families (%s, %s, %s, %s); probes on %zu layers; run file %s\n",
              epochs, static_cast<long long>(train.inputs.size(0)), kFamilies, kFamilyNames[0], kFamilyNames[1],
              kFamilyNames[2], kFamilyNames[3], session.layers().size(), out.c_str());
  const auto start = std::chrono::steady_clock::now();
  const std::int64_t batch_size = 128;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    net->train();
    auto order = torch::randperm(train.inputs.size(0), torch::kLong);
    double loss_sum = 0.0;
    std::int64_t correct = 0, batches = 0;
    for (std::int64_t begin = 0; begin < train.inputs.size(0); begin += batch_size) {
      auto idx = order.slice(0, begin, std::min(begin + batch_size, train.inputs.size(0)));
      auto x = train.inputs.index_select(0, idx);
      auto y = train.targets.index_select(0, idx);
      optimizer.zero_grad();
      auto logits = net->forward(x);
      auto per_sample = torch::nn::functional::cross_entropy(
          logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
      // Which family each sample came from, and its loss: which groups answer to which skill.
      if (session.capturing()) {
        auto tags = train.family.index_select(0, idx).to(torch::kInt);
        session.observe(per_sample, std::vector<std::int32_t>(tags.data_ptr<std::int32_t>(),
                                                               tags.data_ptr<std::int32_t>() + tags.numel()));
      }
      auto loss = per_sample.mean();
      loss.backward();
      optimizer.step();
      loss_sum += loss.item<double>();
      correct += (logits.argmax(1) == y).sum().item<std::int64_t>();
      ++batches;
    }
    const double mean_loss = loss_sum / static_cast<double>(batches);
    session.end_epoch(epoch, mean_loss);  // the epoch callback
    std::printf("epoch %2d/%d  loss %.4f  accuracy %.3f%s\n", epoch, epochs, mean_loss,
                static_cast<double>(correct) / static_cast<double>(train.inputs.size(0)),
                epoch % 5 == 0 ? "  [snapshot]" : "");
    std::fflush(stdout);
  }
  session.close();
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto counters = session.counters();
  std::printf("demo: %.1f s; %lld snapshots in %s; captured %lld batches, %lld rows, dropped %lld\n", seconds,
              static_cast<long long>(session.snapshots_written()), out.c_str(),
              static_cast<long long>(counters.captured_batches), static_cast<long long>(counters.rows),
              static_cast<long long>(counters.dropped_batches));
  if (!session.last_error().empty()) {
    std::fprintf(stderr, "demo: NeuronMap reported: %s\n", session.last_error().c_str());
    return 1;
  }
  return 0;
}
