// UTF-8 well-formedness, for text read from files that may be damaged (names, tags).
#pragma once

#include <cstddef>
#include <string_view>

namespace neuronmap::detail {

/// The length (1 to 4) of the well-formed UTF-8 sequence that starts at s[i], or 0 when the byte at
/// i starts none (a stray continuation byte, a truncated or malformed sequence).
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k)
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return 0;
  return len;
}

}  // namespace neuronmap::detail
