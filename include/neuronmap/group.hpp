// Groups of co-activating neurons: how a session finds them (Grouping) and what one holds (Group).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace neuronmap {

/// How neurons are grouped at a snapshot.
enum class GroupingMethod {
  correlation,   ///< correlation clustering (CPM): every member's mean r with its group >= threshold
  kmeans,        ///< k-means of the standardised activation profiles
  hierarchical,  ///< average linkage on 1 - r, cut at 1 - threshold (or into n_groups)
  components,    ///< connected components of r >= threshold; chains; for comparison only
};

/// Parameters of the grouping (Options::grouping); the defaults are the reference's (see docs/FORMAT.md).
struct Grouping {
  GroupingMethod method = GroupingMethod::correlation;
  double threshold = 0.6;   ///< correlation r >= threshold joins two neurons (hierarchical: cut at 1 - threshold)
  int min_group_size = 3;   ///< smaller clusters are reported as ungrouped neurons
  int n_groups = 0;         ///< k-means / hierarchical: fixed number of clusters; 0 = automatic
  int n_init = 10;          ///< correlation clustering and k-means: restarts
  std::uint64_t seed = 42;  ///< correlation clustering and k-means: seed of the restarts' random stream
};

const char* to_string(GroupingMethod value) noexcept;

/// A group of co-activating neurons in one layer of one snapshot (the original tool's PyTorchNeuronGroup).
struct Group {
  int group_id = 0;                      ///< position in the layer's group list (ordered by smallest neuron)
  std::string layer_name;
  std::vector<std::int32_t> neuron_indices;  ///< ascending
  double cohesion_score = 0.0;           ///< mean pairwise correlation inside, clipped to [0, 1]
  /// The smallest mean correlation of a member with the rest of its group (NaN: not stored, in files
  /// older than format 4). Correlation clustering keeps it >= its threshold; k-means may not.
  double min_member_correlation = 0.0;
  /// cohesion_score below the grouping threshold (Grouping::threshold): never so with correlation
  /// clustering; k-means (which places every neuron) and components (which chain) can make such groups.
  /// Decided when the snapshot is made and stored with the group, because the threshold is not at hand
  /// wherever groups are read (the run file keeps it only inside options_json, which no reader parses).
  /// False in files older than format 4.
  bool loose = false;
  double mean_activation = 0.0;          ///< mean activation of the members over the captured samples
  std::vector<float> activation_pattern; ///< the group's mean activation per reservoir sample (may be empty)
  double importance = 0.0;               ///< sum of the members' |Taylor importance| (0 without gradients)
  std::int64_t lineage_id = -1;          ///< follows the group across snapshots (-1: not tracked)
  double selectivity = 0.0;              ///< class selectivity index over sample tags (0 without tags)
  double loss_correlation = 0.0;         ///< Pearson r of activation_pattern with the per-sample loss (0 if unknown)
  std::string learning_phase;            ///< filled by the learning-pattern analysis (may be empty)
  std::string skill_category;            ///< filled by the learning-pattern analysis (may be empty)

  std::size_t group_size() const noexcept { return neuron_indices.size(); }
};

}  // namespace neuronmap
