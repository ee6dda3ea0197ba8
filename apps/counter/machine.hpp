// The replicated counter: a signed 64-bit value that clients add to, exactly once per command,
// through client sessions (coraft::Sessions).
//
// Every log entry is a session envelope (sessions.hpp). A command's payload is the amount to add,
// 8 bytes little-endian; its reply is the value after the addition. Replies as the state machine
// gives them to the node: a status byte, then the body (see AppliedReply).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include <coraft/bytes.hpp>
#include <coraft/result.hpp>
#include <coraft/sessions.hpp>
#include <coraft/state_machine.hpp>

namespace counter {

// The payload of an increment.
[[nodiscard]] coraft::Bytes encode_amount(std::int64_t amount);

// A reply of the counter's state machine, decoded.
struct AppliedReply {
  enum class Status : std::uint8_t {
    ok = 0,           // `body` is the command's answer
    refused = 1,      // the session table refused the entry: see `session_error`
    bad_command = 2,  // the payload is not an amount: the value did not change (the command's
                      // sequence number is used, and a retry gets bad_command again)
  };
  Status status = Status::ok;
  coraft::SessionErrc session_error{};
  coraft::Bytes body;
};
[[nodiscard]] coraft::Result<AppliedReply> decode_applied(const coraft::Bytes& reply);
// The 8-byte little-endian integer an ok reply's body holds (a value or a session id).
[[nodiscard]] std::optional<std::uint64_t> body_u64(const coraft::Bytes& body);

class CounterMachine final : public coraft::StateMachine {
 public:
  explicit CounterMachine(coraft::SessionLimits limits = {});

  void apply(std::span<const coraft::Command> commands,
             std::vector<coraft::Bytes>& replies) override;
  coraft::Result<void> save(coraft::SnapshotSink& sink) override;
  // The value and the session table are small: copying them is the point-in-time copy.
  std::unique_ptr<coraft::SnapshotCopy> copy_for_snapshot() override;
  coraft::Result<void> restore(coraft::SnapshotSource& source) override;

  // The value after the last entry applied; safe from any thread.
  [[nodiscard]] std::int64_t value() const noexcept {
    return value_.load(std::memory_order_acquire);
  }
  // Live sessions (apply thread only, or once the node has stopped).
  [[nodiscard]] std::size_t sessions() const noexcept { return sessions_.size(); }

  // The snapshot's encoding, shared by save() and the point-in-time copy.
  [[nodiscard]] static std::vector<std::byte> encode_state(std::int64_t value,
                                                           std::span<const std::byte> sessions);

 private:
  std::atomic<std::int64_t> value_{0};
  coraft::Sessions sessions_;
};

}  // namespace counter
