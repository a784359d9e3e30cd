// Learning patterns over time: group lineages and MONIC transitions, learning events, loss
// integration, skill categories, learning phases, linear CKA and dormant neurons. Torch-free and pure:
// the snapshot builder (snapshot/builder.hpp) feeds snapshots in, nothing here touches files.
// Formulas: docs/LEARNING.md.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "neuronmap/snapshot.hpp"

namespace neuronmap::detail::learning {

/// Thresholds of the learning-pattern analysis. Every default is justified in docs/LEARNING.md.
struct LearningOptions {
  // Lineages and transitions (MONIC, Spiliopoulou et al. 2006).
  double match_threshold = 0.5;        ///< Jaccard >= this: a group at t continues one at t-1
  double size_change_threshold = 0.2;  ///< |size_t - size_t-1| / size_t-1 >= this: grew / shrank
  double split_fraction = 0.25;        ///< a part must hold >= this fraction of the old group (split)
                                       ///< or of each contributing old group (merge)
  // Events.
  double cohesion_jump_threshold = 0.1;  ///< |delta cohesion| of a lineage >= this is an event
  double cohesion_jump_scale = 0.5;      ///< event strength = min(1, |delta| / scale)
  double dormant_change_threshold = 0.05;  ///< |delta dormant rate| of a layer >= this is an event
  double dormant_change_scale = 0.25;      ///< event strength = min(1, |delta| / scale)
  // Dormant neurons (Sokar et al. 2023).
  double dormant_tau = 0.025;  ///< tau-dormant: score <= tau (tau = 0 is reported as dead as well)
  // Skill categories (class selectivity, Morcos et al. 2018).
  double selectivity_threshold = 0.3;  ///< SI >= this: the top tag's name, else "mixed"
  // Learning phases, from the per-epoch relative loss change r and the CKA to the previous snapshot.
  double rapid_loss_drop = 0.02;     ///< r <= -this: rapid
  double unstable_loss_rise = 0.01;  ///< r >= this: unstable
  double plateau_loss_change = 0.002;  ///< |r| < this and CKA >= plateau_cka: plateau
  double plateau_cka = 0.98;
  double unstable_cka_drop = 0.2;    ///< CKA below the previous interval's CKA by >= this: unstable
};

// Optimal assignment

/// Maximum-weight assignment (Hungarian algorithm, O(n^3) with n = max(rows, cols)) on a row-major
/// rows x cols matrix of weights. Returns per row the assigned column, or -1. Pairs of weight <= 0
/// are never reported as assigned (give ineligible pairs weight 0). Weights must be finite.
std::vector<int> max_weight_assignment(const std::vector<double>& weights, int rows, int cols);

/// |a intersect b| / |a union b| of two neuron sets (any order, duplicates ignored); 0 when both are empty.
double jaccard(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b);

// Lineages and transitions

enum class TransitionKind { emerged, survived, grew, shrank, split, merged, dissolved };
const char* to_string(TransitionKind kind) noexcept;

/// One MONIC transition between the groups of snapshot t-1 ("old") and t ("new") of one layer.
struct Transition {
  TransitionKind kind = TransitionKind::survived;
  std::vector<int> old_group_ids;              ///< group ids at t-1 (split: the one that split)
  std::vector<std::int64_t> old_lineage_ids;   ///< parallel to old_group_ids
  std::vector<int> new_group_ids;              ///< group ids at t (merged: the merged group)
  std::vector<std::int64_t> new_lineage_ids;   ///< parallel to new_group_ids
  /// In [0, 1]. survived/grew/shrank: 1 - Jaccard; split: share of the old group's members found in
  /// the parts; merged: share of the new group's members that came from the merged groups;
  /// emerged/dissolved: the group's cohesion (1 when no cohesion was given).
  double strength = 0.0;
};

/// What one update of a LineageTracker found.
struct LineageUpdate {
  std::vector<std::int64_t> lineage_ids;  ///< per new group, in the order given
  std::vector<int> matched_previous;      ///< per new group: index of the old group it continues, or -1
  std::vector<Transition> transitions;    ///< every old and every new group appears in at least one
};

/// One group as the tracker sees it: an id, its neurons and its cohesion.
struct GroupSet {
  int group_id = 0;
  std::vector<std::int32_t> neurons;
  double cohesion = 1.0;
};

/// Follows one layer's groups across snapshots. Not thread-safe; one per layer.
class LineageTracker {
 public:
  explicit LineageTracker(LearningOptions options = {}) : options_(options) {}

  /// Matches `groups` (snapshot t) to the previous call's groups and remembers them for the next call.
  /// The first call has no previous groups: every group emerges with a new lineage id.
  LineageUpdate update(const std::vector<GroupSet>& groups);
  /// The same for a snapshot's groups (ids: Group::group_id, cohesion: Group::cohesion_score).
  LineageUpdate update(const std::vector<Group>& groups);

  std::int64_t next_lineage_id() const noexcept { return next_lineage_id_; }
  const std::vector<GroupSet>& previous_groups() const noexcept { return previous_; }
  const std::vector<std::int64_t>& previous_lineage_ids() const noexcept { return previous_lineage_ids_; }

 private:
  LearningOptions options_;
  std::int64_t next_lineage_id_ = 0;
  std::vector<GroupSet> previous_;
  std::vector<std::int64_t> previous_lineage_ids_;
};

/// The transitions between two lists of groups, with given lineage ids for the old ones; new groups
/// without a match get ids from `next_lineage_id` (incremented). The core of LineageTracker::update.
LineageUpdate match_groups(const std::vector<GroupSet>& previous, const std::vector<std::int64_t>& previous_lineage_ids,
                           const std::vector<GroupSet>& current, std::int64_t& next_lineage_id,
                           const LearningOptions& options);

// Learning events

enum class EventKind { emerged, grew, shrank, split, merged, dissolved, cohesion_jump, dormant_change };
const char* to_string(EventKind kind) noexcept;

struct LearningEvent {
  std::int64_t epoch = 0;           ///< the snapshot epoch at which the change was seen (t)
  std::int64_t previous_epoch = 0;  ///< the snapshot before (t-1)
  std::string layer;
  EventKind kind = EventKind::emerged;
  std::vector<int> old_group_ids, new_group_ids;
  std::vector<std::int64_t> lineage_ids;  ///< the lineages involved, old ones first, without repeats
  double strength = 0.0;                  ///< in [0, 1]
  double change = 0.0;                    ///< signed: delta cohesion / delta dormant rate; 0 for transitions
  std::string skill_category;             ///< of the group concerned; empty for layer events (dormant_change)
  double loss_change = std::numeric_limits<double>::quiet_NaN();  ///< loss(t) - loss(t-1); NaN if unknown
};

/// One layer's state between two snapshots, as the event detection needs it.
struct EventContext {
  std::string layer;
  std::int64_t previous_epoch = 0, epoch = 0;
  double loss_change = std::numeric_limits<double>::quiet_NaN();
  double previous_dormant_rate = std::numeric_limits<double>::quiet_NaN();  ///< NaN: no dormant event
  double dormant_rate = std::numeric_limits<double>::quiet_NaN();
};

/// Events of one layer between two snapshots: every transition except survived, every cohesion jump of
/// a continued lineage, and a change of the dormant rate. `previous`/`current` are the groups given to
/// the tracker (their cohesion and skill_category are read), `update` what it returned.
std::vector<LearningEvent> detect_events(const EventContext& context, const std::vector<Group>& previous,
                                         const std::vector<Group>& current, const LineageUpdate& update,
                                         const LearningOptions& options);

/// The report's summary, as in the original tool's "learning_patterns".
struct LearningSummary {
  std::int64_t total_events = 0;
  std::map<std::string, std::int64_t> events_per_kind;
  std::map<std::string, std::int64_t> skill_distribution;  ///< events with a skill category
  double average_strength = 0.0;                           ///< 0 without events
};
LearningSummary summarize(const std::vector<LearningEvent>& events);

// Per-sample measures over the reservoir

/// Pearson correlation of a group's activation pattern with the per-sample loss of the same reservoir
/// rows. Pairs where either value is not finite are skipped; 0 when undefined (< 2 pairs, or no
/// variance). Throws std::invalid_argument when the lengths differ.
double loss_correlation(const std::vector<float>& activation_pattern, const std::vector<double>& sample_loss);
double loss_correlation(const std::vector<float>& activation_pattern, const std::vector<float>& sample_loss);

struct Selectivity {
  double index = 0.0;                ///< class selectivity index SI in [0, 1]
  int top_tag = -1;                  ///< tag with the highest (shifted) mean; -1 without tags
  std::vector<double> tag_means;     ///< per tag id: mean activation (unshifted); NaN for tags without samples
  std::string category;              ///< top tag's name, "mixed" or "untagged"
};

/// Class selectivity (Morcos et al. 2018) of a group's activation pattern from per-sample tags (-1 =
/// untagged) and tag names: SI = (mu_max - mu_rest) / (mu_max + mu_rest) over the tag-conditional means,
/// after shifting a signed pattern by its minimum (docs/LEARNING.md). Throws std::invalid_argument when
/// the lengths differ or a tag id has no name.
Selectivity class_selectivity(const std::vector<float>& activation_pattern, const std::vector<std::int32_t>& sample_tags,
                              const std::vector<std::string>& tag_names, const LearningOptions& options);

// Representations

/// A row-major matrix borrowed from its owner: rows = samples, cols = neurons.
template <typename T>
struct MatrixView {
  const T* data = nullptr;
  std::int64_t rows = 0, cols = 0;
};

/// Linear CKA (Kornblith et al. 2019) of two representations of the same n samples (n x p and n x q):
/// ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) after centring the columns, in float64. Uses the n x n Gram
/// form when it is cheaper. Rows with a non-finite value in either matrix are dropped. NaN when undefined
/// (< 2 rows, or a representation without variance). Throws std::invalid_argument when the row counts differ.
double linear_cka(MatrixView<float> x, MatrixView<float> y);
double linear_cka(MatrixView<double> x, MatrixView<double> y);

struct DormantNeurons {
  std::vector<double> scores;  ///< per neuron: E|h_i| / mean_k E|h_k| (NaN where E|h_i| is not finite)
  std::int64_t dead_count = 0, dormant_count = 0, counted = 0;  ///< counted: neurons with a finite E|h|
  double dead_rate = 0.0;     ///< share with score <= 0 (tau = 0)
  double dormant_rate = 0.0;  ///< share with score <= options.dormant_tau
};

/// tau-dormant neurons (Sokar et al. 2023) from per-neuron E|h_i| over the captured samples.
DormantNeurons dormant_neurons(const std::vector<double>& mean_abs_activation, const LearningOptions& options);

/// E|h| per neuron from a snapshot's moments: the mean where the neuron never changes sign
/// (min >= 0 or max <= 0, exact), else the folded-normal estimate from mean and stddev (approximate).
/// The engine should prefer an accumulated E|h| where it has one.
std::vector<double> mean_abs_from_moments(const LayerSnapshot& layer);

// Learning phases

enum class LearningPhase { unknown, rapid, refinement, plateau, unstable };
const char* to_string(LearningPhase phase) noexcept;

/// One interval between two snapshots.
struct PhaseInput {
  std::int64_t previous_epoch = 0, epoch = 0;
  double previous_loss = std::numeric_limits<double>::quiet_NaN();
  double loss = std::numeric_limits<double>::quiet_NaN();
  double cka = std::numeric_limits<double>::quiet_NaN();           ///< CKA(representation t-1, t)
  double previous_cka = std::numeric_limits<double>::quiet_NaN();  ///< the interval before's CKA
};

/// Relative loss change per epoch: (loss - previous_loss) / (|previous_loss| * (epoch - previous_epoch));
/// NaN when a loss is not finite, previous_loss is 0 or the epochs do not increase.
double relative_loss_change_per_epoch(const PhaseInput& input) noexcept;

/// The phase of an interval; rules in docs/LEARNING.md ("Learning phases").
LearningPhase classify_phase(const PhaseInput& input, const LearningOptions& options) noexcept;

// Everything per layer, one call per snapshot

/// What one snapshot brought for one layer.
struct LayerStep {
  std::vector<std::int64_t> lineage_ids;  ///< per group, in the order given
  std::vector<Transition> transitions;
  std::vector<LearningEvent> events;      ///< none at the first snapshot (the baseline)
  LearningPhase phase = LearningPhase::unknown;
  double dormant_rate = std::numeric_limits<double>::quiet_NaN();
};

/// Lineages, events and the phase of one layer across snapshots. Not thread-safe; one per layer.
class LayerLearning {
 public:
  explicit LayerLearning(std::string layer, LearningOptions options = {})
      : layer_(std::move(layer)), options_(options), tracker_(options) {}

  /// Feeds one snapshot. `groups` should carry their skill_category already (class_selectivity);
  /// `dormant_rate` may be NaN (no dormant event), `cka_to_previous` is CKA between this snapshot's
  /// reservoir activations and the previous ones (NaN when unknown).
  LayerStep update(std::int64_t epoch, double loss, const std::vector<Group>& groups,
                   double dormant_rate = std::numeric_limits<double>::quiet_NaN(),
                   double cka_to_previous = std::numeric_limits<double>::quiet_NaN());

  /// The same from a snapshot's layer (annotate_layer first): reads its groups, dormant_rate and
  /// cka_previous, and writes each group's lineage_id.
  LayerStep update(std::int64_t epoch, double loss, LayerSnapshot& layer);

  const std::string& layer() const noexcept { return layer_; }

 private:
  std::string layer_;
  LearningOptions options_;
  LineageTracker tracker_;
  bool first_ = true;
  std::int64_t previous_epoch_ = 0;
  double previous_loss_ = std::numeric_limits<double>::quiet_NaN();
  double previous_dormant_rate_ = std::numeric_limits<double>::quiet_NaN();
  double previous_cka_ = std::numeric_limits<double>::quiet_NaN();
  std::vector<Group> previous_groups_;
};

// Applied to snapshots (neuronmap/snapshot.hpp)

/// Linear CKA between two reservoirs (LayerSnapshot::reservoir, rows identified by reservoir_ids), on the
/// samples both hold (first occurrence of an id), in the first one's order. Works for one layer at two
/// snapshots (cka_previous) and for two layers at one snapshot (Snapshot::layer_cka). NaN when fewer than
/// 2 samples are shared or CKA is undefined. Throws std::invalid_argument when a reservoir's size is not
/// reservoir_ids.size() x n_neurons.
double reservoir_cka(const LayerSnapshot& a, const LayerSnapshot& b);

/// Fills what can be computed from one layer alone: per group selectivity, skill_category (from
/// activation_pattern and reservoir_tags; tag ids without a name count as untagged, a group without a
/// pattern is "untagged") and loss_correlation (with reservoir_loss); the layer's dead_rate and
/// dormant_rate from mean_abs (from mean_abs_from_moments when mean_abs is empty).
void annotate_layer(LayerSnapshot& layer, const std::vector<std::string>& tag_names, const LearningOptions& options);

/// The smallest finite cka_previous over a snapshot's layers (NaN if none): the model-wide CKA.
double min_layer_cka(const Snapshot& snapshot) noexcept;

/// The phase of the interval ending at `current`: the two snapshots' losses and epochs, min_layer_cka of
/// both as cka and previous_cka.
LearningPhase snapshot_phase(const Snapshot& previous, const Snapshot& current, const LearningOptions& options) noexcept;

/// The run file's event record (neuronmap::Event); loss_change stays NaN when unknown.
Event to_event(const LearningEvent& event);

}  // namespace neuronmap::detail::learning
