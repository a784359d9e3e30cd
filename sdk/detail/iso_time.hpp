// The current time as the run file's `created` attribute writes it: ISO 8601, UTC, to the second.
#pragma once

#include <ctime>
#include <string>

namespace neuronmap::detail {

inline std::string iso_utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

}  // namespace neuronmap::detail
