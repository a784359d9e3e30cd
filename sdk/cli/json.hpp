// JSON literals for the verbs' --json output: strings that stay valid UTF-8, numbers without NaN.
// The escaping is the report library's (report/json.hpp), so every JSON the tool writes agrees.
#pragma once

#include <cmath>
#include <string>

#include <fmt/format.h>

#include "report/json.hpp"

namespace neuronmap::cli {

/// A JSON string literal; bytes that are not valid UTF-8 become U+FFFD so the output stays valid JSON.
inline std::string json_string(const std::string& s) { return report::json_quote(s); }

/// JSON has no NaN or infinity: those become null.
inline std::string json_number(double v) { return std::isfinite(v) ? fmt::format("{}", v) : "null"; }

}  // namespace neuronmap::cli
