// pytorch/examples' C++ MNIST network, unchanged in style: parameter-free members (Dropout2d) called
// directly from the model's own forward. `attach(model, {"conv2", "conv2_drop", "fc1"})` probes the
// dropout member too: it is found as the op of its kind on the output of the sibling registered just
// before it (conv2). Trains on random images (no download), 4 epochs, a snapshot every 2.
//
//   neuronmap_mnist_members [RUN.h5]
#include <torch/torch.h>

#include <iostream>
#include <string>

#include "neuronmap/neuronmap.hpp"

struct Net : torch::nn::Module {
  Net()
      : conv1(torch::nn::Conv2dOptions(1, 10, /*kernel_size=*/5)),
        conv2(torch::nn::Conv2dOptions(10, 20, /*kernel_size=*/5)),
        fc1(320, 50),
        fc2(50, 10) {
    register_module("conv1", conv1);
    register_module("conv2", conv2);
    register_module("conv2_drop", conv2_drop);
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }

  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(torch::max_pool2d(conv1->forward(x), 2));
    x = torch::relu(torch::max_pool2d(conv2_drop->forward(conv2->forward(x)), 2));
    x = x.view({-1, 320});
    x = torch::relu(fc1->forward(x));
    x = torch::dropout(x, /*p=*/0.5, /*train=*/is_training());
    x = fc2->forward(x);
    return torch::log_softmax(x, /*dim=*/1);
  }

  torch::nn::Conv2d conv1;
  torch::nn::Conv2d conv2;
  torch::nn::Dropout2d conv2_drop;
  torch::nn::Linear fc1;
  torch::nn::Linear fc2;
};

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "outputs/mnist_members/run.h5";
  torch::manual_seed(1);
  at::set_num_threads(1);
  auto model = std::make_shared<Net>();
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.5));
  std::int64_t errors = 0;
  {
    auto session = neuronmap::attach(*model, {"conv2", "conv2_drop", "fc1"},
                                     neuronmap::Options{}.every(2).file(path).overwrite(true));
    for (int epoch = 1; epoch <= 4; ++epoch) {
      model->train();
      double total = 0;
      for (int b = 0; b < 10; ++b) {
        const auto x = torch::randn({64, 1, 28, 28});
        const auto y = torch::randint(10, {64});
        const auto loss = torch::nll_loss(model->forward(x), y);
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
        total += loss.item<double>();
      }
      session.end_epoch(epoch, total / 10);
    }
    errors = session.counters().errors;
    std::cout << "probe errors: " << errors << "\n";
  }
  const auto run = neuronmap::Run::open(path);
  bool captured = true;
  for (const auto& layer : run.snapshot(run.size() - 1).layers) {
    std::cout << layer.name << ": " << layer.n_neurons << " neurons, " << layer.samples << " samples, "
              << layer.groups.size() << " groups\n";
    captured = captured && layer.samples > 0;
  }
  return errors == 0 && captured ? 0 : 1;  // exit 1 when a probe failed or a layer captured nothing
}
