// The TorchScript networks that bench/torchscript and bench/training/bench_paired_step measure, built
// with Module::define: the same MLP 784-512-512-10 and small CNN as bench/training/models.hpp.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

namespace bench_script {

inline torch::jit::Module parametric(const std::string& type, std::vector<std::int64_t> weight_shape, std::int64_t out,
                              const std::string& body) {
  torch::jit::Module m(type);
  const double fan_in = static_cast<double>(weight_shape[1] * (weight_shape.size() > 2 ? weight_shape[2] * weight_shape[3] : 1));
  m.register_parameter("weight", (torch::rand(weight_shape) * 2 - 1).mul_(1.0 / std::sqrt(fan_in)).requires_grad_(), false);
  m.register_parameter("bias", torch::zeros({out}).requires_grad_(), false);
  m.define("def forward(self, x):\n  return " + body + "\n");
  return m;
}

inline torch::jit::Module linear(std::int64_t in, std::int64_t out) {
  return parametric("Linear", {out, in}, out, "torch.linear(x, self.weight, self.bias)");
}
inline torch::jit::Module conv(std::int64_t in, std::int64_t out) {
  return parametric("Conv2d", {out, in, 3, 3}, out, "torch.conv2d(x, self.weight, self.bias, [1, 1], [1, 1])");
}
inline torch::jit::Module relu() {
  torch::jit::Module m("ReLU");
  m.define("def forward(self, x):\n  return torch.relu(x)\n");
  return m;
}

inline torch::jit::Module make_mlp() {
  torch::jit::Module m("Mlp");
  m.register_module("fc1", linear(784, 512));
  m.register_module("relu1", relu());
  m.register_module("fc2", linear(512, 512));
  m.register_module("relu2", relu());
  m.register_module("fc3", linear(512, 10));
  m.define("def forward(self, x):\n  return self.fc3.forward(self.relu2.forward(self.fc2.forward(self.relu1.forward(self.fc1.forward(x)))))\n");
  return m;
}

inline torch::jit::Module make_cnn() {
  torch::jit::Module m("Cnn");
  m.register_module("conv1", conv(3, 16));
  m.register_module("conv2", conv(16, 32));
  m.register_module("fc1", linear(32 * 8 * 8, 128));
  m.register_module("fc2", linear(128, 10));
  m.define(R"(
def forward(self, x):
  h = torch.max_pool2d(torch.relu(self.conv1.forward(x)), [2, 2])
  h = torch.max_pool2d(torch.relu(self.conv2.forward(h)), [2, 2])
  return self.fc2.forward(torch.relu(self.fc1.forward(torch.flatten(h, 1))))
)");
  return m;
}

}  // namespace bench_script
