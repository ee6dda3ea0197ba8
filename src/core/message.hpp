// The messages Raft peers exchange, as plain values.
//
// The protocol core consumes and produces these; src/net/ converts them to and from the Cap'n
// Proto wire form (schema/raft.capnp). Entry payloads are shared Bytes views, so a decoded
// frame's payloads reach the core and the log writer without a copy.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include <coraft/entry.hpp>
#include <coraft/membership.hpp>
#include <coraft/types.hpp>

namespace coraft::core {

// RequestVote (thesis §3.4) and PreVote (§9.6). A pre-vote carries the term the candidate would
// campaign in, without having incremented its own.
struct VoteRequest {
  Term term;
  Index last_log_index;
  Term last_log_term;
  bool pre_vote = false;
  // Set when the campaign follows TimeoutNow (§3.10): voters skip the leader-lease check.
  bool leadership_transfer = false;
};

struct VoteResponse {
  Term term;
  bool granted = false;
  bool pre_vote = false;
};

// AppendEntries (§3.5). An empty `entries` list still carries the commit index.
struct AppendRequest {
  Term term;
  Index prev_log_index;
  Term prev_log_term;
  Index leader_commit;
  std::vector<Entry> entries;
};

// On success, `match_index` is the last index the follower now holds from this request.
// On rejection, `match_index` is the request's prev_log_index (the index that did not match),
// and the hint lets the leader skip back a whole term at once (§3.5): `conflict_index` is the
// largest index at or below prev_log_index whose term in the follower's log is at most the
// request's prev_log_term, and `conflict_term` is that term (0 for the empty prefix).
// `last_log_index` is the follower's last index either way. A rejection that only reports a
// newer term (to a stale leader) has success = false, match_index 0 and no hint.
struct AppendResponse {
  Term term;
  bool success = false;
  Index match_index;
  Index last_log_index;
  Term conflict_term;
  Index conflict_index;
};

// A heartbeat asserts leadership and carries the commit index (capped at what the follower is
// known to hold). `read_context` identifies the ReadIndex round it confirms (§6.4); 0 is none.
struct HeartbeatRequest {
  Term term;
  Index leader_commit;
  std::uint64_t read_context = 0;
};

struct HeartbeatResponse {
  Term term;
  std::uint64_t read_context = 0;
};

// One chunk of a snapshot stream. Chunks arrive in offset order; `done` marks the last one.
// The metadata travels with every chunk so that a receiver can validate a stream it joins late.
struct InstallSnapshot {
  Term term;
  SnapshotMeta meta;
  std::uint64_t offset = 0;
  Bytes data;
  bool done = false;
  // The sender's id of this stream: chunks and acknowledgements of an earlier stream of the same
  // snapshot are told apart from this one's. The node layer's; the core ignores it.
  std::uint64_t stream = 0;
  // The receiver makes everything up to this chunk durable and acknowledges it (the last chunk
  // always is); the sender asks often enough to keep its window moving.
  bool sync = false;
};

// `next_offset` is the byte the receiver expects next. `success` is false if the receiver
// rejected or lost the stream; the sender then restarts it from offset 0.
struct InstallSnapshotResponse {
  Term term;
  Index last_index;  // the snapshot's last_index, to match the response to its stream
  std::uint64_t next_offset = 0;
  bool success = false;
  bool done = false;
  std::uint64_t stream = 0;  // echoes InstallSnapshot::stream
};

// Tells the target to start an election at once (§3.10, leadership transfer).
struct TimeoutNow {
  Term term;
};

// A follower asks the leader for a read index on behalf of its own clients (§6.4.1).
// `context` is the follower's identifier for the read, returned unchanged.
struct ReadIndexRequest {
  Term term;
  std::uint64_t context = 0;
};

// The leader's answer. On success, a read issued before the request is linearizable once the
// asking server has applied `read_index`. On failure (not leader, or no entry of its term
// committed yet) the asker retries elsewhere or later.
struct ReadIndexResponse {
  Term term;
  std::uint64_t context = 0;
  Index read_index;
  bool success = false;
};

using MessageBody =
    std::variant<VoteRequest, VoteResponse, AppendRequest, AppendResponse, HeartbeatRequest,
                 HeartbeatResponse, InstallSnapshot, InstallSnapshotResponse, TimeoutNow,
                 ReadIndexRequest, ReadIndexResponse>;

struct Message {
  NodeId from;
  NodeId to;
  MessageBody body;
};

// The term a message carries, whatever its kind.
[[nodiscard]] inline Term term_of(const MessageBody& body) {
  return std::visit([](const auto& m) { return m.term; }, body);
}

}  // namespace coraft::core
