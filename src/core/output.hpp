// What the protocol core asks its caller to do, and the order in which the caller must do it.
//
// The core performs no IO. After any input (tick, step, propose, persisted, applied) it may
// have work for its caller, collected in an Output. The caller follows these steps:
//
//  1. Take the work: while `core.has_output()`, call `core.take_output()`. Handle outputs in the
//     order they were taken; the steps below for one output may overlap with later outputs only
//     as far as steps 2 and 4 allow.
//  2. Start the durable write, if the output has any (`has_durable_work()`): first replace the
//     stored hard state with `hard_state` if set, then delete every stored entry at index
//     >= `truncate_from` if set, then append `entries`. Writes must become durable in the order
//     the outputs were taken; a crash may lose a write that is not yet durable, or keep any
//     prefix of it, but never a later write without the earlier ones.
//  3. Send `messages` now, without waiting for the write. (This is how a leader replicates in
//     parallel with its own write, thesis §10.2.1.)
//  4. Once this output's write and every earlier one are durable: if `entries` is not empty,
//     call `core.persisted(entries.back().term, entries.back().index)`, and only then send
//     `messages_after_persist`. An output without durable work may send its
//     `messages_after_persist` as soon as every earlier write is durable. Acknowledging a write
//     acknowledges every earlier one, so acknowledgements of several writes may be coalesced into
//     the last one. A hard state needs no acknowledgement of its own: what depends on it (a vote
//     reply, a candidate's vote requests) travels in `messages_after_persist`.
//  5. Apply `committed` to the state machine in order, then call `core.applied(last index)`.
//     Committed entries are handed out only once they are durable on this server, so applying
//     may run in parallel with later writes.
//  6. `soft_state`, when set, reports a change of role, leader or term: use it to redirect
//     clients and to fail proposals that were waiting on a lost leadership.
//  7. After a crash, build a new core from what is durable (the last hard state and the stored
//     log). Nothing of an output that was not durable counts. The commit index is not part of
//     the hard state: a restarted server learns it again from the leader.
//
// Messages to one peer are best sent in the order given; the protocol stays correct when the
// network loses, duplicates or reorders them.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <coraft/entry.hpp>
#include <coraft/types.hpp>

#include "core/message.hpp"

namespace coraft::core {

// The state that must be durable before a vote or a term is acted on (thesis §3.8).
struct HardState {
  Term term;
  NodeId vote;  // the candidate voted for in `term`, or no_node

  friend bool operator==(const HardState&, const HardState&) = default;
};

enum class Role : std::uint8_t { follower, pre_candidate, candidate, leader };

[[nodiscard]] const char* to_string(Role r) noexcept;

// The volatile state a caller may want to observe.
struct SoftState {
  Role role = Role::follower;
  NodeId leader;
  Term term;

  friend bool operator==(const SoftState&, const SoftState&) = default;
};

struct Output {
  std::optional<HardState> hard_state;
  std::optional<Index> truncate_from;
  // Invariant: contiguous and, if truncate_from is set, starting at or above it.
  std::vector<Entry> entries;
  std::vector<Message> messages;
  std::vector<Message> messages_after_persist;
  // Invariant: contiguous, continuing the previous output's committed entries.
  std::vector<Entry> committed;
  std::optional<SoftState> soft_state;

  [[nodiscard]] bool has_durable_work() const noexcept {
    return hard_state.has_value() || truncate_from.has_value() || !entries.empty();
  }
};

}  // namespace coraft::core
