// coraft's error codes and the Error value returned for expected failures.
#pragma once

#include <string>
#include <system_error>
#include <utility>

#include <coraft/types.hpp>

namespace coraft {

// Expected outcomes a caller must handle. Bugs are never reported this way: they assert.
enum class Errc {
  // Proposals, reads and membership requests.
  not_leader = 1,        // this node is not the leader; Error::leader_hint names the one it knows
  overloaded = 2,        // a named limit (pending proposals, queue bytes) is reached; retry later
  too_large = 3,         // an entry, batch or frame exceeds its configured size limit
  shutting_down = 4,     // the node is stopping; the operation did not happen
  timeout = 5,           // the operation's deadline passed; it may or may not have happened
  cancelled = 6,         // the caller cancelled the operation
  invalid_argument = 7,  // a request that can never succeed as given (bad flag, bad config)
  transfer_in_progress = 8,   // leadership is moving; proposals are refused until it settles
  config_change_pending = 9,  // a membership change is already in progress
  dropped = 10,               // a proposal was lost to a leader change before it committed
  outcome_unknown = 11,       // appended, then leadership was lost: it may or may not commit
  // Storage.
  storage_io = 20,       // a read, write or sync failed; Error::detail names the file
  storage_corrupt = 21,  // checksums or structure are wrong; detail names file and offset
  disk_full = 22,        // ENOSPC: the write failed and the log is left as it was
  // Peer protocol.
  protocol_error = 30,     // a malformed frame or a message that breaks the protocol
  peer_rejected = 31,      // handshake refused: wrong cluster id, version or unknown sender
  connection_closed = 32,  // the peer connection went away
};

}  // namespace coraft

template <>
struct std::is_error_code_enum<coraft::Errc> : std::true_type {};

namespace coraft {

[[nodiscard]] const std::error_category& error_category() noexcept;
[[nodiscard]] std::error_code make_error_code(Errc e) noexcept;

// An expected failure: a code, the leader this node knows of (for not_leader) and a
// human-readable detail such as "segment 00000001-00000400.log offset 8192: bad CRC".
struct Error {
  std::error_code code;
  NodeId leader_hint{};
  std::string leader_address;  // "host:port" of leader_hint when known (not_leader)
  std::string detail;

  Error() = default;
  Error(Errc e) : code(make_error_code(e)) {}  // NOLINT: implicit by design
  Error(std::error_code c) : code(c) {}        // NOLINT: implicit by design
  Error(Errc e, std::string d) : code(make_error_code(e)), detail(std::move(d)) {}
  Error(std::error_code c, std::string d) : code(c), detail(std::move(d)) {}

  [[nodiscard]] static Error not_leader(NodeId leader) {
    Error e(Errc::not_leader);
    e.leader_hint = leader;
    return e;
  }

  [[nodiscard]] bool is(Errc e) const noexcept { return code == make_error_code(e); }
  // True when the failed operation certainly did not take effect (and never will): every
  // code but timeout, outcome_unknown and cancelled. After one of those three, the operation
  // may still take effect; only a read of the state (or an idempotent retry) can tell.
  [[nodiscard]] bool definite() const noexcept;
  // True when the same call may succeed if retried later, here or at the leader: not_leader,
  // overloaded, transfer_in_progress, config_change_pending, disk_full, timeout,
  // outcome_unknown and dropped. A retry after an indefinite outcome must be idempotent.
  [[nodiscard]] bool retryable() const noexcept;
  // "not_leader: ..." with detail and hint, for logs and CLI output.
  [[nodiscard]] std::string message() const;
};

}  // namespace coraft
