// Statistics reduced on the outputs' device: see device_reduction.hpp.
//
// Per batch, with no transfer and no synchronisation: the finite rows' count, mean and centred product
// (one mm), min, max and |a| sums, merged into the running totals with Chan's update, all as float64
// tensors on the device: the same algorithm as Moments::add on a worker. The reservoir is the one
// place that needs rows: a row can enter only if its key is below the reservoir's current threshold,
// and keys depend only on (seed, sample id), so the host picks the candidates without looking at the
// data and the device keeps just those rows. The threshold is the one known at the last take() (exact
// then: it is the largest of the smallest keys of the finite rows seen); it only falls as rows come, so
// the candidates are a superset of the rows the worker path keeps, and the reservoir is identical.
#include "session/device_reduction.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <unordered_map>

#include "stream/accumulator.hpp"
#include "stream/reservoir.hpp"

namespace neuronmap::detail {

struct DeviceReduction::Totals {
  const void* window = nullptr;
  std::int64_t batches = 0;

  // Activations: float64 tensors on the outputs' device, undefined until the first batch.
  std::int64_t neurons = -1;
  at::Tensor count, nonfinite, mean, comoment, min, max, sum_abs;
  std::unordered_map<std::int64_t, std::int64_t> batch_rows;  // ordinal -> rows, as the workers keep it
  std::vector<std::int64_t> output_shape;
  std::vector<at::Tensor> candidates;           // rows the reservoir may keep, float32, on the device
  std::vector<std::int64_t> candidate_ids;      // their sample ids, in the same order
  std::int64_t candidate_rows = 0;

  // Gradients: rows and per-neuron sums over the batches without NaN/Inf.
  at::Tensor gradient_rows, gradient_abs, gradient_product;

  // The smallest keys of the finite rows kept so far in this window (a max-heap of at most
  // reservoir_size): the threshold below which a row is a candidate. Survives take(), not the window.
  std::vector<std::uint64_t> kept_keys;

  void reset_pending() {
    batches = 0;
    neurons = -1;
    count = nonfinite = mean = comoment = min = max = sum_abs = at::Tensor();
    batch_rows.clear();
    output_shape.clear();
    candidates.clear();
    candidate_ids.clear();
    candidate_rows = 0;
    gradient_rows = gradient_abs = gradient_product = at::Tensor();
  }
};

DeviceReduction::DeviceReduction(Settings settings) : settings_(settings), totals_(std::make_unique<Totals>()) {}
DeviceReduction::~DeviceReduction() = default;

std::int64_t DeviceReduction::pending_batches() const noexcept { return totals_->batches; }
std::int64_t DeviceReduction::pending_candidate_rows() const noexcept { return totals_->candidate_rows; }
const void* DeviceReduction::window() const noexcept { return totals_->window; }

void DeviceReduction::discard() noexcept {
  totals_->reset_pending();
  totals_->kept_keys.clear();
  totals_->window = nullptr;
}

namespace {

// Another window: what is pending belonged to the old one (the caller hands it over first).
void enter_window(DeviceReduction& self, const void* window, const void* current) {
  if (window != current) self.discard();
}

}  // namespace

void DeviceReduction::add(const at::Tensor& rows, std::int64_t ordinal, std::vector<std::int64_t> output_shape,
                          const void* window) {
  auto& t = *totals_;
  enter_window(*this, window, t.window);
  t.window = window;
  if (rows.dim() != 2) throw std::invalid_argument("device reduction: rows must be [samples, neurons]");
  const std::int64_t n_rows = rows.size(0), n = rows.size(1);
  if (t.neurons >= 0 && n != t.neurons)
    throw std::invalid_argument("device reduction: the layer changed from " + std::to_string(t.neurons) + " to " +
                                std::to_string(n) + " neurons within a window");
  const auto f64 = rows.options().dtype(at::kDouble);
  if (t.neurons < 0) {
    t.neurons = n;
    t.count = at::zeros({}, f64);
    t.nonfinite = at::zeros({}, f64);
    t.mean = at::zeros({n}, f64);
    t.comoment = at::zeros({n, n}, f64);
    t.min = at::full({n}, std::numeric_limits<double>::infinity(), f64);
    t.max = at::full({n}, -std::numeric_limits<double>::infinity(), f64);
    t.sum_abs = at::zeros({n}, f64);
  }

  const at::Tensor x = rows.detach().to(at::kDouble);
  const at::Tensor finite = at::isfinite(x).all(1);  // [R]: rows with NaN/Inf are left out
  const at::Tensor keep = finite.unsqueeze(1);
  const at::Tensor zero = at::zeros({}, f64);
  const at::Tensor clean = at::where(keep, x, zero);
  const at::Tensor b = finite.sum().to(at::kDouble);
  const at::Tensor mean_b = clean.sum(0) / b.clamp_min(1.0);
  const at::Tensor centred = at::where(keep, clean - mean_b, zero);
  // Chan's update, as Moments::add_block: the batch's centred product plus the rank-one correction.
  const at::Tensor total = t.count + b;
  const at::Tensor delta = mean_b - t.mean;
  const at::Tensor weight = t.count * b / total.clamp_min(1.0);
  if (settings_.float32_products) {
    const at::Tensor c32 = centred.to(at::kFloat);
    t.comoment.add_(c32.t().mm(c32).to(at::kDouble));
  } else {
    t.comoment.addmm_(centred.t(), centred);
  }
  t.comoment.addmm_((delta * weight).unsqueeze(1), delta.unsqueeze(0));
  t.mean.add_(delta * (b / total.clamp_min(1.0)));
  t.count = total;
  t.nonfinite.add_(static_cast<double>(n_rows) - b);
  const double inf = std::numeric_limits<double>::infinity();
  t.min = at::minimum(t.min, at::where(keep, x, at::full({}, inf, f64)).amin(0));
  t.max = at::maximum(t.max, at::where(keep, x, at::full({}, -inf, f64)).amax(0));
  t.sum_abs.add_(clean.abs().sum(0));
  t.batch_rows[ordinal] = n_rows;
  t.output_shape = std::move(output_shape);

  // The reservoir's candidates, chosen from the keys alone.
  const std::int64_t capacity = settings_.reservoir_size;
  if (capacity > 0 && n_rows > 0) {
    const bool full = static_cast<std::int64_t>(t.kept_keys.size()) >= capacity;
    const std::uint64_t threshold = full ? t.kept_keys.front() : std::numeric_limits<std::uint64_t>::max();
    const std::int64_t sample_ordinal = ordinal * settings_.world + settings_.rank;
    std::vector<std::int64_t> picked;
    for (std::int64_t r = 0; r < n_rows; ++r) {
      const std::int64_t id = sample_id(sample_ordinal, r);
      if (!full || Reservoir::key_of(settings_.seed, id) < threshold) {
        picked.push_back(r);
        t.candidate_ids.push_back(id);
      }
    }
    if (static_cast<std::int64_t>(picked.size()) == n_rows) {
      t.candidates.push_back(rows.detach().to(at::kFloat).clone());
    } else if (!picked.empty()) {
      const at::Tensor index = at::tensor(picked, at::TensorOptions().dtype(at::kLong)).to(rows.device());
      t.candidates.push_back(rows.detach().index_select(0, index).to(at::kFloat));
    }
    t.candidate_rows += static_cast<std::int64_t>(picked.size());
  }
  ++t.batches;
}

void DeviceReduction::add_gradient(const at::Tensor& abs_gradient, const at::Tensor& product, const void* window) {
  auto& t = *totals_;
  enter_window(*this, window, t.window);
  t.window = window;
  const at::Tensor a = abs_gradient.detach().to(at::kDouble);
  const at::Tensor p = product.detach().to(at::kDouble);
  const at::Tensor whole = at::isfinite(a).all().logical_and(at::isfinite(p).all()).to(at::kDouble);
  const at::Tensor zero = at::zeros({}, a.options());
  const at::Tensor sum_a = at::where(whole.to(at::kBool), a.sum(0), zero);
  const at::Tensor sum_p = at::where(whole.to(at::kBool), p.sum(0), zero);
  if (!t.gradient_rows.defined()) {
    t.gradient_rows = whole * static_cast<double>(a.size(0));
    t.gradient_abs = sum_a;
    t.gradient_product = sum_p;
  } else {
    t.gradient_rows.add_(whole * static_cast<double>(a.size(0)));
    t.gradient_abs.add_(sum_a);
    t.gradient_product.add_(sum_p);
  }
  ++t.batches;
}

namespace {

Eigen::VectorXd to_vector(const at::Tensor& tensor) {
  const at::Tensor host = tensor.to(at::kCPU).contiguous();
  Eigen::VectorXd out(host.numel());
  std::copy(host.data_ptr<double>(), host.data_ptr<double>() + host.numel(), out.data());
  return out;
}

std::vector<double> to_std_vector(const at::Tensor& tensor) {
  const at::Tensor host = tensor.to(at::kCPU).contiguous();
  return std::vector<double>(host.data_ptr<double>(), host.data_ptr<double>() + host.numel());
}

}  // namespace

std::shared_ptr<LayerAccumulator> DeviceReduction::take() {
  auto& t = *totals_;
  auto acc = std::make_shared<LayerAccumulator>();
  if (t.neurons >= 0) {
    const std::int64_t n = t.neurons;
    const auto count = static_cast<std::int64_t>(t.count.item<double>());
    const at::Tensor comoment = t.comoment.to(at::kCPU).contiguous();
    const double* c = comoment.data_ptr<double>();
    LargeVector<double> packed(static_cast<std::size_t>(Moments::column_offset(n)));
    for (std::int64_t j = 0; j < n; ++j) {
      double* column = packed.data() + Moments::column_offset(j);
      for (std::int64_t i = 0; i <= j; ++i) column[i] = c[i * n + j];
    }
    acc->moments = Moments::from_state(count, to_vector(t.mean), std::move(packed), to_vector(t.min), to_vector(t.max));
    acc->sum_abs = to_std_vector(t.sum_abs);
    acc->rows = count;
    acc->nonfinite_rows = static_cast<std::int64_t>(t.nonfinite.item<double>());
    acc->batch_rows = std::move(t.batch_rows);
    acc->output_shape = t.output_shape;
    acc->reservoir = Reservoir(settings_.reservoir_size, n, settings_.seed);
    if (!t.candidates.empty()) {
      const at::Tensor rows = at::cat(t.candidates, 0).to(at::kCPU).contiguous();
      const float* data = rows.data_ptr<float>();
      for (std::size_t k = 0; k < t.candidate_ids.size(); ++k) {
        const float* row = data + static_cast<std::int64_t>(k) * n;
        if (!row_is_finite(row, n)) continue;
        const std::int64_t id = t.candidate_ids[k];
        acc->reservoir.offer(id, row);
        // The window's threshold: the largest of the reservoir_size smallest keys seen.
        auto& keys = t.kept_keys;
        const std::uint64_t key = Reservoir::key_of(settings_.seed, id);
        if (static_cast<std::int64_t>(keys.size()) < settings_.reservoir_size) {
          keys.push_back(key);
          std::push_heap(keys.begin(), keys.end());
        } else if (key < keys.front()) {
          std::pop_heap(keys.begin(), keys.end());
          keys.back() = key;
          std::push_heap(keys.begin(), keys.end());
        }
      }
    }
  }
  if (t.gradient_rows.defined()) {
    acc->gradients.rows = static_cast<std::int64_t>(t.gradient_rows.item<double>());
    if (acc->gradients.rows > 0) {
      acc->gradients.sum_abs = to_std_vector(t.gradient_abs);
      acc->gradients.sum_product = to_std_vector(t.gradient_product);
    }
  }
  t.reset_pending();
  return acc;
}

}  // namespace neuronmap::detail
