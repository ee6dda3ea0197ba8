// The replicated state machine a service implements, and the byte streams its snapshots use.
//
// Threads: a node calls apply(), save(), copy_for_snapshot() and restore() of a snapshot
// received from the leader from one thread of its own, the apply thread, never from the node's
// executor and never from two threads at once. restore() of the node's own stored snapshot runs
// once, on the node's executor while Node::start opens the node, before any apply(). A slow
// apply() delays only later applies: the node's executor keeps sending heartbeats, replicating
// and committing meanwhile (proposals get `overloaded` once the applied index falls
// apply_lag_entries_max behind the commit index). With NodeConfig::apply_inline, apply(),
// restore() and save() run on the node's executor instead; they must then never block.
//
// Reads: after Node::read_barrier() completes, every entry committed before the call has been
// applied, so a read of the state machine made from then on is linearizable. Such a read runs on
// the caller's thread while apply() may run on the apply thread: guard the state the two share
// (a mutex, or an atomic snapshot pointer).
//
// Snapshots: the node takes one every NodeConfig::snapshot_threshold_entries (or _bytes)
// applied, and on Node::snapshot_now(). It first asks copy_for_snapshot(), on the apply thread
// between two apply() calls. A state machine that can make a cheap point-in-time copy (a
// persistent structure, copy-on-write pages, a storage engine's snapshot handle) returns it, and
// the node writes it out with SnapshotCopy::save() on a thread of its own while apply() goes on.
// One that cannot returns nullptr (the default): the node then calls save() where apply() runs,
// which sees exactly the state after the last entry applied, and applies wait until it returns.
#pragma once

#include <cstddef>
#include <memory>
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

// A point-in-time copy of a state machine's state, written out off the apply thread.
class SnapshotCopy {
 public:
  virtual ~SnapshotCopy() = default;
  // Writes the copied state, as StateMachine::save() would have at the moment of the copy. Runs
  // on a thread of its own, concurrently with apply().
  virtual Result<void> save(SnapshotSink& sink) = 0;
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

  // A point-in-time copy of the state reached after the last command applied, to be written out
  // while apply() goes on; nullptr to have save() called instead (see "Snapshots" above).
  virtual std::unique_ptr<SnapshotCopy> copy_for_snapshot() { return nullptr; }

  // Replaces the whole state with the one a save() wrote: at start with the newest stored
  // snapshot, before any apply(), and when the node installs a snapshot received from the
  // leader (its log was too far behind), between two apply() calls.
  virtual Result<void> restore(SnapshotSource& source) = 0;
};

}  // namespace coraft
