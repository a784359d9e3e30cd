// `neuronmap report`: the original tool's reports, pictures and dashboard, drawn from a run file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "neuronmap/run.hpp"

namespace neuronmap::report {

enum class ImageFormat { png, svg };

struct ReportOptions {
  std::string out_dir;
  std::optional<std::int64_t> epoch;  ///< the snapshot with this epoch; default: the latest
  bool all = false;                   ///< every snapshot, files suffixed `_e<epoch>`
  std::vector<std::string> layers;    ///< empty: every layer
  ImageFormat format = ImageFormat::png;
  bool tsne = false;                  ///< scatter by t-SNE instead of PCA
  std::uint64_t seed = 42;            ///< for t-SNE and the randomised PCA of large layers
  bool dashboard = true;
  bool progress = false;              ///< a progress line on stderr (the CLI sets it when stderr is a TTY)
  std::string run_path;               ///< shown in the reports
};

struct ReportResult {
  std::vector<std::string> files;     ///< every file written, in order
  std::vector<std::string> notes;     ///< what was skipped and why (also in the reports)
  bool dashboard_written = false;
};

/// What a report reads. neuronmap::Run is one (through the overload below); tests use in-memory runs.
class RunSource {
 public:
  virtual ~RunSource() = default;
  virtual const RunInfo& info() const = 0;
  virtual std::int64_t size() const = 0;
  virtual SnapshotSummary summary(std::int64_t index) const = 0;
  virtual Snapshot snapshot(std::int64_t index) const = 0;
};

/// Writes everything into options.out_dir (created if missing). Throws neuronmap::Error with a
/// message that says what to do (unknown epoch or layer, empty run, unwritable directory).
ReportResult write_report(const RunSource& run, const ReportOptions& options);
ReportResult write_report(const Run& run, const ReportOptions& options);

/// Where the dashboard's ECharts comes from: $NEURONMAP_ECHARTS_JS, next to the executable
/// (`echarts.min.js`, `../share/neuronmap/echarts.min.js`), then the build directory. Empty if none.
std::string find_echarts();

/// A layer name made safe for a file name: every character outside [A-Za-z0-9_-] becomes '_'.
std::string sanitize_file_part(const std::string& name);

}  // namespace neuronmap::report
