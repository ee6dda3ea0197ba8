#include "core/quorum.hpp"

#include <algorithm>
#include <limits>

#include <coraft/assert.hpp>

namespace coraft::core {

std::size_t majority(std::size_t voters) noexcept {
  return voters == 0 ? 0 : voters / 2 + 1;
}

Index quorum_index(std::span<Index> matches) noexcept {
  if (matches.empty()) return Index(std::numeric_limits<std::uint64_t>::max());
  // Sorted descending, the majority-th largest value is held by at least a majority.
  const std::size_t k = majority(matches.size()) - 1;
  std::nth_element(matches.begin(), matches.begin() + static_cast<std::ptrdiff_t>(k), matches.end(),
                   [](Index a, Index b) { return a > b; });
  return matches[k];
}

Index joint_quorum_index(std::span<Index> incoming, std::span<Index> outgoing) noexcept {
  return std::min(quorum_index(incoming), quorum_index(outgoing));
}

VoteOutcome vote_outcome(std::size_t voters, std::size_t granted, std::size_t rejected) noexcept {
  CORAFT_REQUIRE(granted + rejected <= voters, granted, rejected, voters);
  const std::size_t need = majority(voters);
  if (granted >= need) return VoteOutcome::won;
  if (voters - rejected < need) return VoteOutcome::lost;
  return VoteOutcome::pending;
}

VoteOutcome joint_vote_outcome(VoteOutcome incoming, VoteOutcome outgoing) noexcept {
  if (incoming == VoteOutcome::lost || outgoing == VoteOutcome::lost) return VoteOutcome::lost;
  if (incoming == VoteOutcome::won && outgoing == VoteOutcome::won) return VoteOutcome::won;
  return VoteOutcome::pending;
}

}  // namespace coraft::core
