// What the protocol core asks its caller to do, and the order in which the caller must do it.
//
// The core performs no IO. After any input (tick, step, propose, persisted, applied,
// snapshot_taken, report_snapshot) it may
// have work for its caller, collected in an Output. The caller follows these steps:
//
//  1. Take the work: while `core.has_output()`, call `core.take_output()`. Handle outputs in the
//     order they were taken; the steps below for one output may overlap with later outputs only
//     as far as steps 2 and 4 allow.
//  2. Start the durable write, if the output has any (`has_durable_work()`): first replace the
//     stored hard state with `hard_state` if set; then, if `install_snapshot` is set, make the
//     received snapshot it names the stored snapshot and delete every stored entry at index
//     <= its last_index (appends then continue at last_index + 1); then delete every stored
//     entry at index >= `truncate_from` if set; then append `entries`. Writes must become durable
//     in the order the outputs were taken; a crash may lose a write that is not yet durable, or
//     keep any prefix of it, but never a later write without the earlier ones.
//  3. Send `messages` now, without waiting for the write. (This is how a leader replicates in
//     parallel with its own write, thesis §10.2.1.) No message in `messages` carries a term
//     that is not yet durable on this server.
//  4. Once this output's write and every earlier one are durable: call
//     `core.persisted(write)` with this output's `write` number, and only then send
//     `messages_after_persist`. An output without durable work (`write` == 0) may send its
//     `messages_after_persist` as soon as every earlier write is durable. Acknowledging a write
//     acknowledges every earlier one, so acknowledgements of several writes may be coalesced into
//     one call naming the last of them. Everything that depends on a write travels in
//     `messages_after_persist`: a vote reply, a candidate's vote requests, acknowledgements of
//     entries, and every message of a term this server has not yet seen durable (a sole voter
//     that wins an election replicates only once the new term is stored; the core knows a term
//     is durable once a write carrying it was acknowledged, or a vote of that term was granted
//     to it). For the same reason no `snapshot_sends` entry names a term not yet durable.
//     These rules hold however many inputs the caller gives between two take_output() calls.
//     A leader builds its AppendEntries in take_output(): the proposals and acknowledgements of
//     every input given since the last output leave as one AppendEntries per peer, so a caller
//     that takes outputs less often sends fewer, larger messages.
//  5. If `install_snapshot` is set, load the state machine from that snapshot (it replaces
//     everything applied so far) and call `core.applied(install_snapshot->last_index)`. Apply
//     `committed` to the state machine in order, then call `core.applied(last index)`.
//     Committed entries are handed out only once they are durable on this server, so applying
//     may run in parallel with later writes.
//  6. `soft_state`, when set, reports a change of role, leader or term: use it to redirect
//     clients and to fail proposals that were waiting on a lost leadership.
//  7. For each of `snapshot_sends`, stream this server's stored snapshot (one covering at least
//     `meta.last_index`) to `to` in InstallSnapshot chunks. The receiving node layer writes the
//     chunks durably to a staging area and, once the last chunk is durable, steps its core with
//     one InstallSnapshot message: the stream's term and metadata, `offset` = the total size,
//     empty `data` and `done` = true. The core then either answers with `install_snapshot`
//     (step 2 and 5 above) or ignores a stale snapshot, which the node layer may discard. The
//     core itself refuses chunks (`done` = false): assembling them is the node layer's work.
//     The sender reports the stream's outcome with `core.report_snapshot(to, stream, success)`
//     (a report of a stream the core gave up on, after Config::snapshot_timeout_ticks, is
//     ignored); the
//     receiver's core also answers the leader with an InstallSnapshotResponse (done = true),
//     which the sending node layer steps into its core.
//  8. Snapshots of this server's own state machine: once a snapshot of the applied state up to
//     index i is durable, call `core.snapshot_taken(meta)`. The core forgets entries up to
//     i - Config::snapshot_trailing_entries; stored entries at or below i may be deleted from
//     then on.
// 10. Reads: for each of `reads_ready`, serve the read with that id once the state machine has
//     applied `index` (at once if it already has). Fail each of `reads_dropped`. A read
//     forwarded to the leader whose answer is lost is never reported: the caller bounds its
//     wait with its own timeout and retries.
//  9. After a crash, build a new core from what is durable (the last hard state, the stored
//     snapshot, if any, loaded into the state machine first, and the stored log). Nothing of an
//     output that was not durable counts. The commit index is not part of the hard state: a
//     restarted server learns it again from the leader (everything in the snapshot counts as
//     committed).
//
// Messages to one peer are best sent in the order given; the protocol stays correct when the
// network loses, duplicates or reorders them.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <coraft/entry.hpp>
#include <coraft/hard_state.hpp>
#include <coraft/membership.hpp>
#include <coraft/types.hpp>

#include "core/message.hpp"

namespace coraft::core {

using coraft::HardState;

enum class Role : std::uint8_t { follower, pre_candidate, candidate, leader };

[[nodiscard]] const char* to_string(Role r) noexcept;

// The volatile state a caller may want to observe.
struct SoftState {
  Role role = Role::follower;
  NodeId leader;
  Term term;

  friend bool operator==(const SoftState&, const SoftState&) = default;
};

// A request to stream this server's snapshot to a follower whose log is compacted away.
struct SnapshotSend {
  NodeId to;
  Term term;          // the leader's term, to put in every chunk
  SnapshotMeta meta;  // the snapshot the core last heard of through snapshot_taken()
  // Names this stream in core.report_snapshot(); unique within one core.
  std::uint64_t stream = 0;
};

// A linearizable read that may be served once the state machine applied `index` (§6.4).
struct ReadState {
  std::uint64_t id = 0;  // the caller's identifier given to Core::read_index()
  Index index;

  friend bool operator==(const ReadState&, const ReadState&) = default;
};

struct Output {
  // The number of this output's write, for persisted() (step 4): nonzero exactly when
  // has_durable_work(), increasing by one from write to write of one core.
  std::uint64_t write = 0;
  std::optional<HardState> hard_state;
  // A received snapshot to make durable (step 2) and to load into the state machine (step 5).
  std::optional<SnapshotMeta> install_snapshot;
  std::optional<Index> truncate_from;
  // Invariant: contiguous and, if truncate_from is set, starting at or above it.
  std::vector<Entry> entries;
  // Invariant: an acknowledgement of entries (a successful AppendResponse) in
  // messages_after_persist covers only entries this write and the earlier ones store.
  std::vector<Message> messages;
  std::vector<Message> messages_after_persist;
  // Invariant: contiguous, continuing the previous output's committed entries.
  std::vector<Entry> committed;
  std::optional<SoftState> soft_state;
  std::vector<SnapshotSend> snapshot_sends;
  // Reads confirmed (step 10) and reads this server gave up on (its leadership ended, or the
  // leader refused a forwarded read).
  std::vector<ReadState> reads_ready;
  std::vector<std::uint64_t> reads_dropped;

  // True when the output has a write to make durable and acknowledge (it may store nothing,
  // when the entries it had to write were removed again before it was taken).
  [[nodiscard]] bool has_durable_work() const noexcept {
    return write != 0 || hard_state.has_value() || install_snapshot.has_value() ||
           truncate_from.has_value() || !entries.empty();
  }
};

}  // namespace coraft::core
