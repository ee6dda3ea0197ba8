// The small awaitable interfaces the node needs from the outside world. Production wires in
// storage/, net/ and the steady clock; tests wrap them with faults (a stalled or failing disk, a
// dropping network) or replace them whole (the simulator's disk, network and clock).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <coraft/entry.hpp>
#include <coraft/membership.hpp>
#include <coraft/result.hpp>
#include <coraft/types.hpp>

#include "core/message.hpp"
#include "core/output.hpp"
#include "net/transport.hpp"
#include "storage/file_worker.hpp"

namespace coraft::node {

// The node's durable stream: the hard state and the log, in one order. Calls are made on the
// node's executor. In production both go through the one disk backend (an io_uring, or a writer
// thread) and the one file worker that every node on the io_context shares. The node issues at most
// one hard-state save at a time and only when no append is in flight, so a save is durable before
// any later append and after every earlier one; appends and truncations are ordered by the log
// itself.
class DurablePort {
 public:
  virtual ~DurablePort() = default;
  virtual asio::awaitable<Result<void>> save_hard_state(core::HardState hs) = 0;
  virtual asio::awaitable<Result<void>> append(std::vector<Entry> entries) = 0;
  virtual asio::awaitable<Result<void>> truncate_suffix(Index from) = 0;
  virtual asio::awaitable<Result<void>> compact_prefix(Index upto) = 0;
  // Removes every entry, durably, after the appends before it: the next append may start at any
  // index (a snapshot installed over a log that does not hold its last entry).
  virtual asio::awaitable<Result<void>> clear_log() = 0;
  // Fails every call still waiting with shutting_down and waits for the write in flight.
  virtual void close() = 0;
};

// The node's sense of time: what its ticks, timeouts and retry delays are measured with. The
// default (no TimePort) is std::chrono::steady_clock and asio::steady_timer; a simulator gives a
// clock that moves only when it says so.
class TimePort {
 public:
  virtual ~TimePort() = default;
  [[nodiscard]] virtual std::chrono::steady_clock::time_point now() const = 0;
  // Completes once now() reached `at` (without suspending if it has). Called on the node's
  // executor; completes there.
  virtual asio::awaitable<void> sleep_until(std::chrono::steady_clock::time_point at) = 0;
};

// What a node finds durable when it opens storage that is not the data directory's: the hard
// state and the stored log, and the stream that continues them. Snapshots stay in the data
// directory's snapshot store, which the node opens and restores from as usual.
struct OpenedStorage {
  core::HardState hard_state;
  std::vector<Entry> entries;  // contiguous; empty when the log is
  std::unique_ptr<DurablePort> durable;
};

// What a test may change about a node it starts.
struct Hooks {
  // Replaces the data directory's log and hard state (its snapshot store is still used).
  std::function<Result<OpenedStorage>()> open_storage;
  // Runs the node's snapshot file work (staging received chunks, checking and adopting a
  // received file, reading its own for a stream) in place of the shared file worker thread.
  // Jobs must run one at a time in the order submitted, and each `done` must be called, on the
  // node's executor (a node stopping waits for the coroutine that waits for it).
  std::function<void(storage::FileWorker::Job job, storage::FileWorker::Done done)> file_jobs;
  // Called once a snapshot is the node's durable stored one: taken and saved, or received and
  // adopted (before the log is compacted or cleared behind it).
  std::function<void(const SnapshotMeta&)> snapshot_stored;
  // The time loading a received snapshot into the state machine takes, waited out (on the
  // node's clock) before it is loaded: a slow restore.
  std::function<std::chrono::nanoseconds()> restore_delay;
  // Replaces the TCP transport: given the transport's configuration and the handler that
  // delivers received messages to the node, returns the transport to send with.
  std::function<std::unique_ptr<net::Transport>(const net::TransportConfig&, net::ReceiveHandler)>
      make_transport;
  // Replaces the steady clock.
  std::shared_ptr<TimePort> time;
  // The time the state machine takes over a batch of `commands`, waited out (on the node's
  // clock) before the batch is applied: a slow state machine.
  std::function<std::chrono::nanoseconds(std::size_t commands)> apply_delay;
  // Wraps the real durable stream (fault injection).
  std::function<std::unique_ptr<DurablePort>(std::unique_ptr<DurablePort>)> wrap_durable;
  // Returns true to drop an outgoing message (partitions).
  std::function<bool(const core::Message&)> drop_outgoing;
  // May change a snapshot chunk before it is sent (corruption on the way).
  std::function<void(core::Message&)> tamper_outgoing;
  // Returns true to drop an incoming message.
  std::function<bool(const core::Message&)> drop_incoming;
};

}  // namespace coraft::node
