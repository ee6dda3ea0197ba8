// coraft's version, as a value the program can check at run time.
#pragma once

#include <string_view>

namespace coraft {

inline constexpr int version_major = 0;
inline constexpr int version_minor = 1;
inline constexpr int version_patch = 0;

// "0.1.0" for the library actually linked, which may differ from the headers compiled against.
[[nodiscard]] std::string_view version() noexcept;

}  // namespace coraft
