// How a layer is laid out for pictures: neurons ordered by group, matrices reduced to a drawable size.
#pragma once

#include <cstdint>
#include <vector>

#include "neuronmap/snapshot.hpp"

namespace neuronmap::report {

/// Neurons ordered group by group (members ascending), the ungrouped ones last (dead ones at the end).
struct GroupOrder {
  struct Block {
    int group_id;  ///< -1: the ungrouped neurons
    std::int64_t begin, end;  ///< positions [begin, end)
  };
  std::vector<std::int32_t> order;  ///< position -> neuron index
  std::vector<std::int32_t> label;  ///< position -> group id, -1 when ungrouped
  std::vector<Block> blocks;
  /// Per neuron: its group id or -1 (from the groups' member lists, which are authoritative).
  std::vector<std::int32_t> group_of;
};
GroupOrder order_by_group(const LayerSnapshot& layer);

/// The correlation matrix in group order, averaged over square blocks of positions when the layer
/// has more neurons than `max_cells`. Undefined entries (NaN) are left out of the averages.
struct ReducedMatrix {
  std::int64_t n = 0;                 ///< neurons
  std::int64_t cells = 0;             ///< cells per side (n when not reduced)
  std::vector<std::int64_t> edges;    ///< cell k covers positions [edges[k], edges[k+1])
  std::vector<float> values;          ///< cells x cells, row-major; NaN when a cell has no finite entry
  bool any_nan = false;
};
/// Empty (cells == 0) when the layer stores no correlation matrix.
ReducedMatrix reduce_matrix(const LayerSnapshot& layer, const GroupOrder& order, std::int64_t max_cells);

}  // namespace neuronmap::report
