// Trains two epochs of a tiny model with probes attached, through the installed SDK.
#include <neuronmap/neuronmap.hpp>
#include <torch/torch.h>

int main(int argc, char** argv) {
  torch::nn::Sequential model(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(8, 2));
  auto session = neuronmap::attach(*model, {"0", "2"}, neuronmap::Options{}.every(1).file(argv[1]).overwrite(true));
  for (int epoch = 1; epoch <= 2; ++epoch) {
    model->forward(torch::randn({16, 4}));
    session.end_epoch(epoch, 1.0);
  }
  session.close();
  return session.snapshots_written() == 2 && session.last_error().empty() ? 0 : 1;
}
