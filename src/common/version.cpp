#include <coraft/version.hpp>

namespace coraft {

#define CORAFT_STR2(x) #x
#define CORAFT_STR(x) CORAFT_STR2(x)

std::string_view version() noexcept {
  static_assert(CORAFT_VERSION_MAJOR == version_major && CORAFT_VERSION_MINOR == version_minor &&
                    CORAFT_VERSION_PATCH == version_patch,
                "include/coraft/version.hpp disagrees with the build's project version");
  return CORAFT_STR(CORAFT_VERSION_MAJOR) "." CORAFT_STR(CORAFT_VERSION_MINOR) "." CORAFT_STR(
      CORAFT_VERSION_PATCH);
}

}  // namespace coraft
