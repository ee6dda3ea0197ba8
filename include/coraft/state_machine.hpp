// The replicated state machine a service implements, and the byte streams its snapshots use.
//
// Threads: a node calls apply() and save() from one thread of its own, the apply thread, never
// from the node's executor and never from two threads at once; restore() runs once, on the
// node's executor while Node::start opens the node, before any apply(). The three therefore
// never overlap, and a slow apply() delays only later applies: the node's executor keeps
// sending heartbeats, replicating and committing meanwhile (proposals get `overloaded` once the
// applied index falls apply_lag_entries_max behind the commit index). With
// NodeConfig::apply_inline, apply() runs on the node's executor instead (save() stays on the
// apply thread); it must then never block.
//
// Reads: after Node::read_barrier() completes, every entry committed before the call has been
// applied, so a read of the state machine made from then on is linearizable. Such a read runs on
// the caller's thread while apply() may run on the apply thread: guard the state the two share
// (a mutex, or an atomic snapshot pointer).
//
// Snapshots: save() runs on the apply thread between two apply() calls, so it sees exactly the
// state after the last entry applied (a point-in-time copy needs nothing more). A state machine
// whose save() is slow and that wants applies to go on meanwhile copies (or forks a persistent
// structure of) its state in save() and writes the copy out there.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include <coraft/bytes.hpp>
#include <coraft/result.hpp>
#include <coraft/types.hpp>

namespace coraft {

// A command as the state machine sees it: committed, in log order.
struct Command {
  Index index;
  Term term;
  Bytes payload;
};

// Where save() writes a snapshot. Errors from write() must be returned by save() unchanged.
class SnapshotSink {
 public:
  virtual ~SnapshotSink() = default;
  virtual Result<void> write(std::span<const std::byte> data) = 0;
};

// Where restore() reads a snapshot from: read() fills up to out.size() bytes and returns how
// many it filled; 0 means the end of the snapshot.
class SnapshotSource {
 public:
  virtual ~SnapshotSource() = default;
  virtual Result<std::size_t> read(std::span<std::byte> out) = 0;
  // The snapshot's size in bytes.
  [[nodiscard]] virtual std::uint64_t size() const noexcept = 0;
};

class StateMachine {
 public:
  virtual ~StateMachine() = default;

  // Applies `commands` in order and appends exactly one reply per command to `replies` (an
  // empty Bytes when there is nothing to say). Never fails: a command the service cannot carry
  // out is answered with a reply that says so, because every replica must reach the same state.
  // The payloads stay valid after the call (they are shared views; keep them if needed).
  virtual void apply(std::span<const Command> commands, std::vector<Bytes>& replies) = 0;

  // Writes the state reached after the last command applied.
  virtual Result<void> save(SnapshotSink& sink) = 0;

  // Replaces the whole state with the one a save() wrote. Called at start with the newest
  // stored snapshot, before any apply().
  virtual Result<void> restore(SnapshotSource& source) = 0;
};

}  // namespace coraft
