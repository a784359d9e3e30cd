// The run file's schema: dataset names, chunk sizes and the fixed-size rows, shared by writer and reader.
// docs/FORMAT.md describes the same layout for readers in other languages; keep the two in step.
#pragma once

#include <cstddef>
#include <cstdint>

namespace neuronmap::detail::schema {

// Root attributes (static, written before the file is renamed into place).
inline constexpr const char* kFormatVersionAttr = "format_version";
inline constexpr const char* kLibraryVersionAttr = "library_version";
inline constexpr const char* kTorchVersionAttr = "torch_version";
inline constexpr const char* kDeviceAttr = "device";
inline constexpr const char* kCreatedAttr = "created";
inline constexpr const char* kOptionsJsonAttr = "options_json";
inline constexpr const char* kLayerNamesAttr = "layer_names";
inline constexpr const char* kLayerTypesAttr = "layer_types";
inline constexpr const char* kLayerReductionsAttr = "layer_reductions";

// Datasets: all 1-D, chunked, unlimited, append-only.
inline constexpr const char* kSnapshots = "/snapshots";    // CommitRow, written last
inline constexpr const char* kLayerRows = "/layer_rows";   // LayerRow
inline constexpr const char* kDataGroup = "/data";
inline constexpr const char* kNeurons = "/data/neuron";    // NeuronRow
inline constexpr const char* kCorr = "/data/corr";         // float32
inline constexpr const char* kGroups = "/data/groups";     // GroupRow
inline constexpr const char* kMembers = "/data/members";   // int32
inline constexpr const char* kPatterns = "/data/patterns"; // float32
inline constexpr const char* kText = "/data/text";         // uint8 (UTF-8 bytes, no terminator)

inline constexpr int kMaxDims = 8;
inline constexpr int kLabelLen = 32;  // learning_phase / skill_category: NUL-padded, longer is truncated

/// One committed snapshot. Its existence is the commit: readers use only rows below the first one
/// whose `committed` is not 1 (a row's bytes are zero until written).
struct CommitRow {
  std::int64_t epoch;
  double loss;
  double timestamp;
  std::uint64_t layer_rows_offset;
  std::uint32_t n_layers;
  std::uint8_t committed;
};

/// One layer of one snapshot; locates the layer's data through offsets into the /data datasets.
struct LayerRow {
  std::uint64_t snapshot;
  std::int32_t layer;  // index into the root attribute layer_names, -1 if the name is not listed there
  std::uint64_t name_offset;  // into /data/text
  std::uint32_t name_len;
  std::int64_t n_neurons;
  std::int64_t samples;
  std::int32_t ndim;
  std::int64_t output_shape[kMaxDims];
  std::int64_t captured_batches;
  std::int64_t dropped_batches;
  std::int64_t skipped_batches;
  std::int64_t rows;
  std::int64_t nonfinite_rows;
  std::int64_t errors;
  std::uint64_t neuron_offset;  // n_neurons rows of /data/neuron
  std::uint64_t corr_offset;
  std::uint64_t corr_count;     // 0 or n_neurons^2
  std::uint64_t group_offset;
  std::uint64_t n_groups;
  double mean_cohesion;
  std::int64_t dead_count;
  std::int64_t gradient_samples;
  std::uint8_t gradients;  // kHasGradMeanAbs | kHasTaylor: which gradient fields of the neuron rows hold data
};

inline constexpr std::uint8_t kHasGradMeanAbs = 1;
inline constexpr std::uint8_t kHasTaylor = 2;

struct NeuronRow {
  double mean;
  double stddev;
  double min;
  double max;
  std::uint8_t dead;
  std::int32_t label;
  double grad_mean_abs;  // 0 unless LayerRow::gradients has kHasGradMeanAbs
  double taylor;         // 0 unless LayerRow::gradients has kHasTaylor
};

struct GroupRow {
  std::int32_t group_id;
  std::uint64_t layer_row;  // global index into /layer_rows
  std::int64_t size;        // members in /data/members from members_offset
  double cohesion;
  double mean_activation;
  double importance;
  std::uint64_t members_offset;
  std::uint64_t pattern_offset;
  std::uint64_t pattern_len;
  char learning_phase[kLabelLen];
  char skill_category[kLabelLen];
};

/// Elements per chunk: 1 MiB for the correlation matrices (the notes' measured sweet spot), less for
/// the rest so that a short run stays a small file (every chunk is allocated whole).
inline constexpr std::uint64_t kCommitChunk = 256;       // 37 B rows (packed) -> 9 KiB
inline constexpr std::uint64_t kLayerRowChunk = 256;     // 229 B -> 57 KiB
inline constexpr std::uint64_t kNeuronChunk = 4096;      // 53 B -> 212 KiB
inline constexpr std::uint64_t kCorrChunk = 262144;      // float32 -> 1 MiB
inline constexpr std::uint64_t kGroupChunk = 512;        // 132 B -> 66 KiB
inline constexpr std::uint64_t kMembersChunk = 16384;    // int32 -> 64 KiB
inline constexpr std::uint64_t kPatternsChunk = 16384;   // float32 -> 64 KiB
inline constexpr std::uint64_t kTextChunk = 4096;

}  // namespace neuronmap::detail::schema
