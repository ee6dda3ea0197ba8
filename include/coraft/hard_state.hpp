// The hard state: what a server must have made durable before it acts on a term or a vote
// (thesis §3.8). The protocol core hands it out and the storage keeps it; both use this type.
#pragma once

#include <coraft/types.hpp>

namespace coraft {

struct HardState {
  Term term;
  NodeId vote;  // the candidate voted for in `term`, or no_node

  friend bool operator==(const HardState&, const HardState&) = default;
};

}  // namespace coraft
