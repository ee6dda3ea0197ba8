// What a leader knows about each follower's log, and the flow-control window of AppendEntries
// in flight to it (thesis §3.5; the probe/replicate states follow etcd's progress tracker).
#pragma once

#include <cstdint>
#include <vector>

#include <coraft/types.hpp>

namespace coraft::core {

// A ring of the AppendEntries messages in flight to one follower, oldest first, bounded by a
// message count and by payload bytes.
class Inflights {
 public:
  Inflights(std::uint32_t msgs_max, std::uint64_t bytes_max);

  // Full when either bound is reached; a full window sends nothing more.
  [[nodiscard]] bool full() const noexcept {
    return count_ >= ring_.size() || bytes_ >= bytes_max_;
  }
  [[nodiscard]] std::uint32_t count() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t bytes() const noexcept { return bytes_; }
  // Records a message whose last entry is `last`. Precondition: !full(), last above every
  // recorded message's last.
  void add(Index last, std::uint64_t bytes);
  // Forgets every message whose last entry is <= `index`: the follower holds them.
  void free_to(Index index);
  void reset() noexcept;

 private:
  struct Slot {
    Index last;
    std::uint64_t bytes;
  };
  std::vector<Slot> ring_;
  std::uint64_t bytes_max_;
  std::uint32_t start_ = 0;
  std::uint32_t count_ = 0;
  std::uint64_t bytes_ = 0;
};

struct Progress {
  enum class State : std::uint8_t {
    // The leader does not know where the logs agree: one AppendEntries at a time, then wait
    // for the answer or the next heartbeat response.
    probe,
    // The logs agree up to match_index: stream optimistically within the window.
    replicate,
    // The entries the follower needs are compacted away: a snapshot is being sent, and nothing
    // else goes out until it succeeds or fails (thesis §5.3).
    snapshot,
  };

  Progress(NodeId id, Index next, std::uint32_t msgs_max, std::uint64_t bytes_max)
      : id(id), next_index(next), inflights(msgs_max, bytes_max) {}

  NodeId id;
  // Invariant: match_index < next_index.
  Index match_index;
  Index next_index;
  State state = State::probe;
  // In probe state: an AppendEntries is out and unanswered.
  bool probe_sent = false;
  // Heard from this follower since the last CheckQuorum round.
  bool recent_active = false;
  // The highest commit index sent to this follower.
  Index commit_sent;
  // In snapshot state: the last index of the snapshot being sent, the stream's number
  // (SnapshotSend::stream) and the ticks since it started.
  Index pending_snapshot;
  std::uint64_t snapshot_stream = 0;
  std::uint32_t snapshot_ticks = 0;
  // The newest heartbeat round (read context) this follower answered.
  std::uint64_t read_acked = 0;
  // Ticks since the last acknowledgement that moved match_index, while messages are in flight.
  std::uint32_t stall_ticks = 0;
  Inflights inflights;

  [[nodiscard]] bool paused() const noexcept {
    switch (state) {
      case State::probe: return probe_sent;
      case State::replicate: return inflights.full();
      case State::snapshot: return true;
    }
    return true;
  }
  void become_probe() noexcept;
  // Precondition: snapshot_index > match_index.
  void become_snapshot(Index snapshot_index) noexcept;
  void become_replicate() noexcept;
  // A success acknowledgement up to `index`. Returns true when match_index moved.
  bool acknowledge(Index index) noexcept;
};

}  // namespace coraft::core
