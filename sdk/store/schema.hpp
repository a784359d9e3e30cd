// The run file's schema: dataset names, chunk sizes and the fixed-size rows, shared by writer and reader.
// docs/FORMAT.md describes the same layout for readers in other languages; keep the two in step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

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
inline constexpr const char* kTagNamesAttr = "tag_names";  // format_version >= 2

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
// format_version >= 2
inline constexpr const char* kReservoir = "/data/reservoir";            // float32
inline constexpr const char* kReservoirIds = "/data/reservoir_ids";     // int64
inline constexpr const char* kReservoirTags = "/data/reservoir_tags";   // int32
inline constexpr const char* kReservoirLoss = "/data/reservoir_loss";   // float32
inline constexpr const char* kEvents = "/data/events";                  // EventRow
inline constexpr const char* kLineages = "/data/lineages";              // int64
inline constexpr const char* kLayerCka = "/data/layer_cka";             // float64
inline constexpr const char* kLossCurve = "/data/loss_curve";           // LossRow
// format_version >= 3
inline constexpr const char* kReference = "/data/reference";            // float32
// format_version >= 5
inline constexpr const char* kHeads = "/data/heads";                    // float64, kHeadFields per head

/// A head's statistics in /data/heads, in this order: queries, entropy_mean, entropy_std, distance_mean,
/// concentration, collapsed_fraction, uniform (0/1), collapsed (0/1), then the weights on offsets
/// -4 ... +4 (HeadStatistics::offset_weight). The role is derived from them when read.
inline constexpr int kHeadOffsets = 9;
inline constexpr int kHeadFields = 8 + kHeadOffsets;

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
  // format_version >= 2 (zero in memory for version 1 files)
  std::uint64_t phase_offset;  // into /data/text
  std::uint32_t phase_len;
  std::uint64_t event_offset;  // rows of /data/events
  std::uint64_t n_events;
  std::uint64_t cka_offset;    // into /data/layer_cka
  std::uint64_t cka_count;     // 0 or L^2
  std::uint64_t loss_offset;   // rows of /data/loss_curve
  std::uint64_t loss_count;
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
  // format_version >= 2 (defaults in memory for version 1 files: see version1_defaults)
  std::uint8_t has_mean_abs;  // 1: the neuron rows' mean_abs hold data
  double dead_rate;
  double dormant_rate;
  double cka_previous;
  std::uint64_t reservoir_offset;       // into /data/reservoir
  std::uint64_t reservoir_count;        // floats: rows x n_neurons
  std::uint64_t reservoir_ids_offset;   // into /data/reservoir_ids
  std::uint64_t reservoir_ids_count;
  std::uint64_t reservoir_tags_offset;  // into /data/reservoir_tags
  std::uint64_t reservoir_tags_count;
  std::uint64_t reservoir_loss_offset;  // into /data/reservoir_loss
  std::uint64_t reservoir_loss_count;
  // format_version >= 3 (zero in memory for older files: see version2_defaults)
  std::uint64_t reference_offset;  // into /data/reference
  std::uint64_t reference_count;   // floats: reference_rows x n_neurons
  std::int64_t reference_rows;
  // format_version >= 5 (zero in memory for older files: see version4_defaults)
  std::int64_t budget_skipped_batches;
  std::uint64_t heads_offset;  // into /data/heads
  std::uint64_t heads_count;   // doubles: heads x kHeadFields (0: not an attention layer)
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
  double mean_abs;       // format_version >= 2; 0 unless LayerRow::has_mean_abs
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
  // format_version >= 2
  std::int64_t lineage_id;
  double selectivity;
  double loss_correlation;
  // format_version >= 4 (NaN and 0 in memory for older files: see version3_defaults)
  double min_member_correlation;
  std::uint8_t loose;  // 1: cohesion below the grouping threshold when the snapshot was made
};

/// One learning event (format_version >= 2). Strings are in /data/text, lineage ids in /data/lineages.
struct EventRow {
  std::uint64_t snapshot;  // row of /snapshots
  std::int64_t epoch;
  std::uint64_t layer_offset;
  std::uint32_t layer_len;
  std::uint64_t kind_offset;
  std::uint32_t kind_len;
  std::uint64_t skill_offset;
  std::uint32_t skill_len;
  std::uint64_t lineages_offset;
  std::uint64_t n_lineages;
  double strength;
  double loss_change;
};

/// One epoch's loss in a snapshot's loss curve (format_version >= 2).
struct LossRow {
  std::int64_t epoch;
  double loss;
};

/// The version-1 values of the fields version 2 added (readers of version 1 files fill them in).
inline void version1_defaults(CommitRow& r) {
  r.phase_offset = r.event_offset = r.cka_offset = r.loss_offset = 0;
  r.phase_len = 0;
  r.n_events = r.cka_count = r.loss_count = 0;
}
inline void version1_defaults(LayerRow& r) {
  r.has_mean_abs = 0;
  r.dead_rate = r.dormant_rate = 0.0;
  r.cka_previous = std::numeric_limits<double>::quiet_NaN();
  r.reservoir_offset = r.reservoir_count = r.reservoir_ids_offset = r.reservoir_ids_count = 0;
  r.reservoir_tags_offset = r.reservoir_tags_count = r.reservoir_loss_offset = r.reservoir_loss_count = 0;
}
inline void version1_defaults(NeuronRow& r) { r.mean_abs = 0.0; }
inline void version1_defaults(GroupRow& r) {
  r.lineage_id = -1;
  r.selectivity = r.loss_correlation = 0.0;
}
inline void version1_defaults(EventRow&) {}  // version 2 rows only
inline void version1_defaults(LossRow&) {}

/// The version-2 values of the fields version 3 added (readers of version 1 and 2 files fill them in).
inline void version2_defaults(LayerRow& r) {
  r.reference_offset = r.reference_count = 0;
  r.reference_rows = 0;
}
template <class Row>
void version2_defaults(Row&) {}

/// The values of the fields version 4 added for files that predate them: older writers did not
/// compute a member's correlation with its group, so it is unknown (NaN), not recomputed from a stored
/// matrix (most runs store none); no group of such a file is marked loose.
inline void version3_defaults(GroupRow& r) {
  r.min_member_correlation = std::numeric_limits<double>::quiet_NaN();
  r.loose = 0;
}
template <class Row>
void version3_defaults(Row&) {}

/// The values of the fields version 5 added: older writers had no overhead budget (nothing was left
/// out for it) and hold no head statistics.
inline void version4_defaults(LayerRow& r) {
  r.budget_skipped_batches = 0;
  r.heads_offset = r.heads_count = 0;
}
template <class Row>
void version4_defaults(Row&) {}

/// Elements per chunk: 1 MiB for the correlation matrices (the notes' measured sweet spot), less for
/// the rest so that a short run stays a small file (every chunk is allocated whole).
inline constexpr std::uint64_t kCommitChunk = 256;       // 97 B rows (packed) -> 24 KiB
inline constexpr std::uint64_t kLayerRowChunk = 256;     // 334 B (v3, packed) -> 84 KiB
inline constexpr std::uint64_t kNeuronChunk = 4096;      // 61 B -> 244 KiB
inline constexpr std::uint64_t kCorrChunk = 262144;      // float32 -> 1 MiB
inline constexpr std::uint64_t kGroupChunk = 512;        // 165 B (v4) -> 83 KiB
inline constexpr std::uint64_t kMembersChunk = 16384;    // int32 -> 64 KiB
inline constexpr std::uint64_t kPatternsChunk = 16384;   // float32 -> 64 KiB
inline constexpr std::uint64_t kTextChunk = 4096;
inline constexpr std::uint64_t kReservoirChunk = 65536;  // float32 -> 256 KiB
inline constexpr std::uint64_t kSampleChunk = 8192;      // reservoir ids (64 KiB), tags, losses (32 KiB)
inline constexpr std::uint64_t kEventChunk = 512;        // 92 B -> 46 KiB
inline constexpr std::uint64_t kLineageChunk = 4096;     // int64 -> 32 KiB
inline constexpr std::uint64_t kLayerCkaChunk = 4096;    // float64 -> 32 KiB
inline constexpr std::uint64_t kLossChunk = 2048;        // 16 B -> 32 KiB
inline constexpr std::uint64_t kReferenceChunk = 65536;  // float32 -> 256 KiB
inline constexpr std::uint64_t kHeadsChunk = 4096;       // float64 -> 32 KiB

}  // namespace neuronmap::detail::schema
