// Encoding and merging of the ranks' window accumulators (see exchange.hpp).
#include "stream/exchange.hpp"

#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace neuronmap::detail {
namespace {

constexpr std::uint32_t kMagic = 0x4e4d5832;  // "NMX2": version 2 carries the head statistics

class Writer {
 public:
  template <typename T>
  void put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const std::uint8_t*>(&value);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  template <typename T>
  void put_array(const T* data, std::size_t n) {
    put<std::uint64_t>(n);
    const auto* p = reinterpret_cast<const std::uint8_t*>(data);
    bytes.insert(bytes.end(), p, p + n * sizeof(T));
  }
  std::vector<std::uint8_t> bytes;
};

class Reader {
 public:
  explicit Reader(const std::vector<std::uint8_t>& bytes) : bytes_(bytes) {}
  template <typename T>
  T get() {
    T value;
    take(&value, sizeof(T));
    return value;
  }
  template <typename T, typename Vector>
  void get_array(Vector& out) {
    const auto n = get<std::uint64_t>();
    if (n > (bytes_.size() - at_) / sizeof(T)) throw std::runtime_error("distributed snapshot: truncated buffer");
    out.resize(static_cast<std::size_t>(n));
    take(out.data(), static_cast<std::size_t>(n) * sizeof(T));
  }
  bool done() const { return at_ == bytes_.size(); }

 private:
  void take(void* out, std::size_t n) {
    if (n > bytes_.size() - at_) throw std::runtime_error("distributed snapshot: truncated buffer");
    if (n > 0) std::memcpy(out, bytes_.data() + at_, n);
    at_ += n;
  }
  const std::vector<std::uint8_t>& bytes_;
  std::size_t at_ = 0;
};

void put_counters(Writer& w, const Counters& c) {
  for (auto v : {c.captured_batches, c.dropped_batches, c.skipped_batches, c.rows, c.nonfinite_rows, c.errors,
                 c.budget_skipped_batches})
    w.put(v);
}

Counters get_counters(Reader& r) {
  Counters c;
  for (auto* v : {&c.captured_batches, &c.dropped_batches, &c.skipped_batches, &c.rows, &c.nonfinite_rows, &c.errors,
                  &c.budget_skipped_batches})
    *v = r.get<std::int64_t>();
  return c;
}

// The per-head sums of an attention layer (HeadAccumulator), so that rank 0's head statistics cover
// every rank's batches like its moments do.
void put_heads(Writer& w, const HeadAccumulator& h) {
  w.put(h.heads);
  if (h.heads == 0) return;
  w.put<std::uint8_t>(h.self_attention ? 1 : 0);
  w.put_array(h.queries.data(), h.queries.size());
  w.put_array(h.open_queries.data(), h.open_queries.size());
  w.put_array(h.collapsed_queries.data(), h.collapsed_queries.size());
  for (const auto* v : {&h.entropy, &h.entropy_sq, &h.max_weight, &h.distance, &h.offset_sum})
    w.put_array(v->data(), v->size());
  w.put_array(h.offset_count.data(), h.offset_count.size());
}

HeadAccumulator get_heads(Reader& r, std::size_t buffer_size) {
  HeadAccumulator h;
  h.heads = r.get<std::int64_t>();
  if (h.heads == 0) return h;
  if (h.heads < 0 || static_cast<std::uint64_t>(h.heads) > buffer_size)
    throw std::runtime_error("distributed snapshot: bad head count");
  h.self_attention = r.get<std::uint8_t>() != 0;
  r.get_array<std::int64_t>(h.queries);
  r.get_array<std::int64_t>(h.open_queries);
  r.get_array<std::int64_t>(h.collapsed_queries);
  for (auto* v : {&h.entropy, &h.entropy_sq, &h.max_weight, &h.distance, &h.offset_sum}) r.get_array<double>(*v);
  r.get_array<std::int64_t>(h.offset_count);
  const auto n = static_cast<std::size_t>(h.heads);
  bool consistent = h.offset_sum.size() == n * HeadAccumulator::kWidth &&
                    h.offset_count.size() == static_cast<std::size_t>(HeadAccumulator::kWidth);
  for (const auto* v : {&h.queries, &h.open_queries, &h.collapsed_queries}) consistent = consistent && v->size() == n;
  for (const auto* v : {&h.entropy, &h.entropy_sq, &h.max_weight, &h.distance}) consistent = consistent && v->size() == n;
  if (!consistent) throw std::runtime_error("distributed snapshot: inconsistent head statistics");
  return h;
}

}  // namespace

std::vector<std::uint8_t> encode(const RankWindow& part) {
  Writer w;
  w.put(kMagic);
  w.put_array(part.losses.data(), part.losses.size());
  w.put<std::uint64_t>(part.layers.size());
  for (std::size_t l = 0; l < part.layers.size(); ++l) {
    const auto& acc = part.layers[l];
    put_counters(w, l < part.counters.size() ? part.counters[l] : Counters{});
    w.put(acc.rows);
    w.put(acc.nonfinite_rows);
    w.put_array(acc.output_shape.data(), acc.output_shape.size());
    w.put(acc.gradients.rows);
    w.put_array(acc.gradients.sum_abs.data(), acc.gradients.sum_abs.size());
    w.put_array(acc.gradients.sum_product.data(), acc.gradients.sum_product.size());
    w.put<std::uint8_t>(acc.moments ? 1 : 0);
    if (!acc.moments) continue;
    const Moments& m = *acc.moments;
    w.put(m.count());
    w.put_array(m.mean().data(), static_cast<std::size_t>(m.mean().size()));
    w.put_array(m.min().data(), static_cast<std::size_t>(m.min().size()));
    w.put_array(m.max().data(), static_cast<std::size_t>(m.max().size()));
    w.put_array(m.comoment_packed().data(), m.comoment_packed().size());
    w.put_array(acc.sum_abs.data(), acc.sum_abs.size());
    const auto [rows, ids] = acc.reservoir.sorted_rows();
    const auto* observed = l < part.observed.size() ? &part.observed[l] : nullptr;
    w.put(acc.reservoir.cols());
    w.put<std::uint64_t>(ids.size());
    for (std::size_t k = 0; k < ids.size(); ++k) {
      Observed o;
      if (observed != nullptr) {
        if (const auto found = observed->find(ids[k]); found != observed->end()) o = found->second;
      }
      w.put(ids[k]);
      w.put(o.tag);
      w.put(o.loss);
    }
    w.put_array(rows.data(), rows.size());
    put_heads(w, acc.heads);
  }
  return std::move(w.bytes);
}

RankWindow decode(const std::vector<std::uint8_t>& bytes, std::int64_t reservoir_size, std::uint64_t seed) {
  Reader r(bytes);
  if (r.get<std::uint32_t>() != kMagic)
    throw std::runtime_error("distributed snapshot: a rank sent a buffer that is not NeuronMap's of this version "
                             "(every rank must run the same NeuronMap build)");
  RankWindow part;
  r.get_array<double>(part.losses);
  const auto n_layers = static_cast<std::size_t>(r.get<std::uint64_t>());
  if (n_layers > bytes.size()) throw std::runtime_error("distributed snapshot: bad layer count");
  part.layers.resize(n_layers);
  part.counters.resize(n_layers);
  part.observed.resize(n_layers);
  for (std::size_t l = 0; l < n_layers; ++l) {
    auto& acc = part.layers[l];
    part.counters[l] = get_counters(r);
    acc.rows = r.get<std::int64_t>();
    acc.nonfinite_rows = r.get<std::int64_t>();
    r.get_array<std::int64_t>(acc.output_shape);
    acc.gradients.rows = r.get<std::int64_t>();
    r.get_array<double>(acc.gradients.sum_abs);
    r.get_array<double>(acc.gradients.sum_product);
    if (r.get<std::uint8_t>() == 0) continue;
    const auto count = r.get<std::int64_t>();
    Eigen::VectorXd mean, min, max;
    LargeVector<double> packed;
    r.get_array<double>(mean);
    r.get_array<double>(min);
    r.get_array<double>(max);
    r.get_array<double>(packed);
    const auto n = static_cast<std::int64_t>(mean.size());
    if (static_cast<std::int64_t>(min.size()) != n || static_cast<std::int64_t>(max.size()) != n ||
        static_cast<std::int64_t>(packed.size()) != Moments::column_offset(n))
      throw std::runtime_error("distributed snapshot: inconsistent moments");
    acc.moments = Moments::from_state(count, std::move(mean), std::move(packed), std::move(min), std::move(max));
    r.get_array<double>(acc.sum_abs);
    const auto cols = r.get<std::int64_t>();
    const auto kept = static_cast<std::size_t>(r.get<std::uint64_t>());
    if (cols != n || kept > bytes.size()) throw std::runtime_error("distributed snapshot: inconsistent reservoir");
    std::vector<std::int64_t> ids(kept);
    for (std::size_t k = 0; k < kept; ++k) {
      ids[k] = r.get<std::int64_t>();
      Observed o;
      o.tag = r.get<std::int32_t>();
      o.loss = r.get<float>();
      part.observed[l].emplace(ids[k], o);
    }
    std::vector<float> rows;
    r.get_array<float>(rows);
    if (rows.size() != kept * static_cast<std::size_t>(cols)) throw std::runtime_error("distributed snapshot: inconsistent reservoir");
    acc.reservoir = Reservoir(reservoir_size, cols, seed);
    for (std::size_t k = 0; k < kept; ++k) acc.reservoir.offer(ids[k], rows.data() + k * static_cast<std::size_t>(cols));
    acc.heads = get_heads(r, bytes.size());
    if (acc.heads.heads != 0 && acc.heads.heads != n)
      throw std::runtime_error("distributed snapshot: head statistics of another width");
  }
  if (!r.done()) throw std::runtime_error("distributed snapshot: trailing bytes");
  return part;
}

void merge_into(RankWindow& into, RankWindow&& other) {
  if (other.layers.size() != into.layers.size())
    throw std::runtime_error("distributed snapshot: the ranks probe " + std::to_string(into.layers.size()) + " and " +
                             std::to_string(other.layers.size()) + " layers");
  into.counters.resize(into.layers.size());
  into.observed.resize(into.layers.size());
  for (std::size_t l = 0; l < into.layers.size(); ++l) {
    merge_accumulator(into.layers[l], std::move(other.layers[l]));
    if (l < other.counters.size()) into.counters[l] += other.counters[l];
    if (l < other.observed.size()) into.observed[l].insert(other.observed[l].begin(), other.observed[l].end());
  }
  if (other.losses.size() == into.losses.size()) {
    for (std::size_t i = 0; i < into.losses.size(); ++i) into.losses[i] += other.losses[i];
    into.loss_ranks += other.loss_ranks;
  }
}

std::optional<RankWindow> gather_windows(Communicator& communicator, RankWindow&& part, std::int64_t reservoir_size,
                                         std::uint64_t seed) {
  const int rank = communicator.rank();
  const int world = communicator.size();
  std::vector<std::vector<std::uint8_t>> parts = communicator.gather(rank == 0 ? std::vector<std::uint8_t>{} : encode(part));
  if (rank != 0) return std::nullopt;
  if (static_cast<int>(parts.size()) != world) throw std::runtime_error("the gather returned the wrong number of parts");
  for (int r = 1; r < world; ++r) merge_into(part, decode(parts[static_cast<std::size_t>(r)], reservoir_size, seed));
  for (auto& loss : part.losses) loss /= part.loss_ranks;  // the mean over the ranks
  return std::move(part);
}

}  // namespace neuronmap::detail
