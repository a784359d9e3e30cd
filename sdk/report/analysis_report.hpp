// The original tool's two reports: pytorch_neuron_group_analysis_report.json and .txt.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "neuronmap/run.hpp"
#include "neuronmap/snapshot.hpp"

namespace neuronmap::report {

/// Files written for one layer of the reported snapshot (empty: not drawn, `why` says why).
struct LayerFiles {
  std::string heatmap, scatter, scatter_method, why;
  bool correlation_stored = false;
};

struct AnalysisInput {
  const RunInfo* info = nullptr;
  std::string run_path;
  std::int64_t snapshots_in_file = 0;
  std::int64_t snapshot_index = 0;
  const Snapshot* snapshot = nullptr;              ///< only the reported layers
  const std::vector<SnapshotSummary>* summaries = nullptr;  ///< every snapshot, only the reported layers
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
