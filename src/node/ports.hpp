// The small awaitable interfaces the node needs from the outside world. Production wires in
// storage/ and net/; tests wrap them with faults (a stalled or failing disk, a dropping network).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <coraft/entry.hpp>
#include <coraft/result.hpp>
#include <coraft/types.hpp>

#include "core/message.hpp"
#include "core/output.hpp"

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

// What a test may change about a node it starts.
struct Hooks {
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
