// A uniform sample of at most `capacity` rows, chosen by the smallest pseudo-random keys of their
// sample ids (bottom-k sampling). Keys depend only on (seed, id), so every layer of one forward pass
// keeps the same samples, and per-worker reservoirs merge exactly, in any order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace neuronmap::detail {

inline std::uint64_t mix64(std::uint64_t x) noexcept {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// Rows of one batch a sample id can tell apart; the batch's ordinal takes the bits above them.
inline constexpr int sample_row_bits = 24;

/// A sample id: the layer's n-th batch in the window and the row in that batch.
inline std::int64_t sample_id(std::int64_t ordinal, std::int64_t row) noexcept {
  return (ordinal << sample_row_bits) | row;
}

/// The ordinal and row a sample id was made of (the inverse of sample_id).
struct SampleIdParts {
  std::int64_t ordinal = 0;
  std::int64_t row = 0;
};

inline SampleIdParts split_sample_id(std::int64_t id) noexcept {
  return {id >> sample_row_bits, id & ((std::int64_t{1} << sample_row_bits) - 1)};
}

class Reservoir {
 public:
  Reservoir() = default;
  Reservoir(std::int64_t capacity, std::int64_t cols, std::uint64_t seed)
      : capacity_(capacity), cols_(cols), seed_(seed) {}

  /// The key that decides whether a sample id is kept: the smallest keys stay.
  static std::uint64_t key_of(std::uint64_t seed, std::int64_t id) noexcept {
    return mix64(seed ^ mix64(static_cast<std::uint64_t>(id)));
  }

  void offer(std::int64_t id, const float* row) {
    if (capacity_ <= 0) return;
    const std::uint64_t key = key_of(seed_, id);
    if (static_cast<std::int64_t>(entries_.size()) < capacity_) {
      const auto slot = static_cast<std::int64_t>(entries_.size());
      values_.insert(values_.end(), row, row + cols_);
      entries_.push_back({key, id, slot});
      std::push_heap(entries_.begin(), entries_.end());
    } else if (key < entries_.front().key) {
      std::pop_heap(entries_.begin(), entries_.end());
      Entry& e = entries_.back();
      e.key = key;
      e.id = id;
      std::copy(row, row + cols_, values_.begin() + e.slot * cols_);
      std::push_heap(entries_.begin(), entries_.end());
    }
  }

  void merge(const Reservoir& other) {
    if (capacity_ == 0 && cols_ == 0) {
      *this = other;
      return;
    }
    for (const auto& e : other.entries_) offer(e.id, other.values_.data() + e.slot * other.cols_);
  }

  /// The kept rows ordered by sample id (rows x cols, row-major), and their ids.
  std::pair<std::vector<float>, std::vector<std::int64_t>> sorted_rows() const {
    std::vector<Entry> order(entries_);
    std::sort(order.begin(), order.end(), [](const Entry& a, const Entry& b) { return a.id < b.id; });
    std::vector<float> rows;
    std::vector<std::int64_t> ids;
    rows.reserve(order.size() * static_cast<std::size_t>(cols_));
    for (const auto& e : order) {
      rows.insert(rows.end(), values_.begin() + e.slot * cols_, values_.begin() + (e.slot + 1) * cols_);
      ids.push_back(e.id);
    }
    return {std::move(rows), std::move(ids)};
  }

  std::int64_t size() const noexcept { return static_cast<std::int64_t>(entries_.size()); }
  std::int64_t cols() const noexcept { return cols_; }

 private:
  struct Entry {
    std::uint64_t key;
    std::int64_t id;
    std::int64_t slot;
    bool operator<(const Entry& other) const noexcept { return key < other.key; }  // max-heap on key
  };
  std::int64_t capacity_ = 0;
  std::int64_t cols_ = 0;
  std::uint64_t seed_ = 0;
  std::vector<Entry> entries_;
  std::vector<float> values_;
};

}  // namespace neuronmap::detail
