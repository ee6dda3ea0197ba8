// Quorum arithmetic: majorities, the commit index a set of match indexes supports, and the
// outcome of a vote. Pure functions over plain values, so they can be tested exhaustively.
//
// The joint forms combine two voter sets as joint consensus requires (thesis §4.3): a decision
// needs a majority of each set, and an empty outgoing set imposes no condition.
#pragma once

#include <cstddef>
#include <span>

#include <coraft/types.hpp>

namespace coraft::core {

enum class VoteOutcome { pending, won, lost };

// The smallest number of voters that is a majority of `voters`. majority(0) is 0.
[[nodiscard]] std::size_t majority(std::size_t voters) noexcept;

// The largest index that a majority of the voters hold, given each voter's match index.
// `matches` is reordered. An empty set supports any index (Index max), as an empty outgoing
// configuration must not hold back a joint decision.
[[nodiscard]] Index quorum_index(std::span<Index> matches) noexcept;

// Both sets must support the index.
[[nodiscard]] Index joint_quorum_index(std::span<Index> incoming,
                                       std::span<Index> outgoing) noexcept;

// The outcome of an election among `voters` voters of which `granted` said yes and `rejected`
// said no. Precondition: granted + rejected <= voters. An empty set has won.
[[nodiscard]] VoteOutcome vote_outcome(std::size_t voters, std::size_t granted,
                                       std::size_t rejected) noexcept;

// Won only if won in both sets; lost if lost in either.
[[nodiscard]] VoteOutcome joint_vote_outcome(VoteOutcome incoming, VoteOutcome outgoing) noexcept;

}  // namespace coraft::core
