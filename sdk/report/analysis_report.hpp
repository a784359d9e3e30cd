// The original tool's two reports: pytorch_neuron_group_analysis_report.json and .txt.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "neuronmap/run.hpp"
#include "neuronmap/snapshot.hpp"

namespace neuronmap::report {

/// Files written for one layer of the reported snapshot (empty: not drawn, `why` says why). `heatmap` and
/// `scatter` are the original tool's views (activations by group, samples in PCA); `correlation`,
/// `neuron_scatter` (placed by `scatter_method`) and `network` are ours.
struct LayerFiles {
  std::string heatmap, scatter, correlation, neuron_scatter, scatter_method, network, why;
  bool correlation_stored = false;
};

/// What a run's snapshots say about learning over time, gathered from every snapshot (reported layers
/// only). Values a file does not hold stay NaN or empty.
struct LayerLearning {
  double cka_previous = NAN;  ///< linear CKA to the previous snapshot
  double dormant_rate = NAN;  ///< share of dormant neurons (NaN when the snapshot has no dormant scores)
};
struct SnapshotLearning {
  std::string phase;
  std::int64_t events = 0;
  std::map<std::string, LayerLearning> layers;
};
struct RunLearning {
  std::vector<SnapshotLearning> snapshots;  ///< parallel to the summaries
  std::vector<Event> events;                ///< in snapshot order
  std::vector<std::int64_t> loss_epochs;    ///< the loss of every epoch, where the file holds it
  std::vector<double> losses;
};

struct AnalysisInput {
  const RunInfo* info = nullptr;
  std::string run_path;
  std::int64_t snapshots_in_file = 0;
  std::int64_t snapshot_index = 0;
  const Snapshot* snapshot = nullptr;              ///< only the reported layers
  const std::vector<SnapshotSummary>* summaries = nullptr;  ///< every snapshot, only the reported layers
  const RunLearning* learning = nullptr;
  std::map<std::string, LayerFiles> layer_files;   ///< by layer name
  std::vector<std::string> files;                  ///< every file of this report, relative to the output folder
  std::vector<std::string> notes;
  bool dashboard_written = false;
  std::string dashboard_note;
};

std::string render_json_report(const AnalysisInput& in);
std::string render_text_report(const AnalysisInput& in);

/// ISO 8601 UTC for seconds since the Unix epoch ("" when not finite).
std::string iso_time(double seconds);

}  // namespace neuronmap::report
