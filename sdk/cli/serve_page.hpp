// The page `neuronmap serve` sends: the report's dashboard with an empty run, plus a script that
// fills it from the API and follows the server's events.
#pragma once

#include <string>

namespace neuronmap::cli {

/// The dashboard page for `run_json` (LiveRun::run_json, or empty before the file exists). `echarts`
/// is the library's text. Throws neuronmap::Error when the dashboard template is unusable.
std::string live_page(const std::string& echarts, const std::string& run_json, const std::string& title);

/// The script behind /assets/live.js.
extern const char* const kLiveScript;

}  // namespace neuronmap::cli
