#include "core/quorum.hpp"

#include <doctest/doctest.h>

#include <vector>

using coraft::Index;
using namespace coraft::core;

TEST_CASE("a majority is more than half of the voters") {
  CHECK(majority(1) == 1);
  CHECK(majority(2) == 2);
  CHECK(majority(3) == 2);
  CHECK(majority(4) == 3);
  CHECK(majority(5) == 3);
  CHECK(majority(7) == 4);
  CHECK(majority(0) == 0);
}

TEST_CASE("the quorum index is the largest index a majority holds") {
  std::vector<Index> three{Index(5), Index(9), Index(7)};
  CHECK(quorum_index(three) == Index(7));
  std::vector<Index> five{Index(1), Index(9), Index(3), Index(9), Index(2)};
  CHECK(quorum_index(five) == Index(3));
  std::vector<Index> one{Index(4)};
  CHECK(quorum_index(one) == Index(4));
  std::vector<Index> four{Index(8), Index(8), Index(1), Index(2)};
  CHECK(quorum_index(four) == Index(2));
}

TEST_CASE("a joint quorum index needs both configurations") {
  std::vector<Index> in{Index(10), Index(10), Index(1)};
  std::vector<Index> out{Index(4), Index(3), Index(9)};
  CHECK(joint_quorum_index(in, out) == Index(4));
  std::vector<Index> none;
  CHECK(joint_quorum_index(in, none) == Index(10));
}

TEST_CASE("a vote is won by a majority, lost once a majority is out of reach") {
  CHECK(vote_outcome(3, 2, 0) == VoteOutcome::won);
  CHECK(vote_outcome(3, 1, 1) == VoteOutcome::pending);
  CHECK(vote_outcome(3, 1, 2) == VoteOutcome::lost);
  CHECK(vote_outcome(5, 2, 2) == VoteOutcome::pending);
  CHECK(vote_outcome(5, 2, 3) == VoteOutcome::lost);
  CHECK(vote_outcome(1, 1, 0) == VoteOutcome::won);
  CHECK(vote_outcome(4, 2, 2) == VoteOutcome::lost);
}

TEST_CASE("a joint vote is won in both sets and lost in either") {
  CHECK(joint_vote_outcome(VoteOutcome::won, VoteOutcome::won) == VoteOutcome::won);
  CHECK(joint_vote_outcome(VoteOutcome::won, VoteOutcome::pending) == VoteOutcome::pending);
  CHECK(joint_vote_outcome(VoteOutcome::lost, VoteOutcome::won) == VoteOutcome::lost);
  CHECK(joint_vote_outcome(VoteOutcome::pending, VoteOutcome::lost) == VoteOutcome::lost);
}
