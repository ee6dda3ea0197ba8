// The counter's client protocol (schema/counter.capnp) as plain structs, and its framing: each
// frame is one Cap'n Proto message in standard stream framing, as on peer connections.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <coraft/error.hpp>
#include <coraft/result.hpp>

namespace counter {

enum class Op : std::uint8_t {
  register_session,
  incr,
  get,
  status,
  members,
  add_voter,
  add_learner,
  remove_server,
  transfer,
  close_session,
};

// Where a reply's error code comes from.
enum class Domain : std::uint8_t { none, node, session, request };

// Errors of the protocol itself (Domain::request).
enum class RequestErrc : std::uint16_t {
  malformed = 1,         // the frame is not a well-formed request
  bad_argument = 2,      // a field is missing or out of range
  connections_full = 3,  // the server holds client_connections_max connections
  bad_reply = 4,         // the state machine's reply could not be read
};

struct Request {
  std::uint64_t id = 0;
  Op op = Op::get;
  std::uint64_t session = 0;
  std::uint64_t seq = 0;
  std::uint64_t first_unacked = 0;
  std::int64_t amount = 0;
  bool stale = false;
  std::uint64_t target = 0;
  std::string address;
  bool promote = false;
};

struct Reply {
  std::uint64_t id = 0;
  Domain domain = Domain::none;
  std::uint16_t code = 0;
  bool definite = false;
  bool retryable = false;
  std::string message;
  std::uint64_t leader = 0;
  std::string leader_address;
  std::int64_t value = 0;
  std::uint64_t session = 0;
  std::uint64_t index = 0;
  std::string text;

  [[nodiscard]] bool ok() const noexcept { return domain == Domain::none; }
  [[nodiscard]] bool is(coraft::Errc e) const noexcept {
    return domain == Domain::node && code == static_cast<std::uint16_t>(e);
  }
};

// A reply for a failed request, from the node's error.
[[nodiscard]] Reply error_reply(std::uint64_t id, const coraft::Error& e);

// Frame limits: what a server accepts from a client and a client from a server.
inline constexpr std::size_t request_frame_bytes_max = 64 * 1024;
inline constexpr std::size_t reply_frame_bytes_max = 1 << 20;
inline constexpr std::size_t frame_segments_max = 16;

[[nodiscard]] std::vector<std::byte> encode(const Request& r);
[[nodiscard]] std::vector<std::byte> encode(const Reply& r);

// A frame being read: the first 8 bytes, then the rest of the segment table, then the segments.
// Feed it what it asks for, in order.
class FrameAssembler {
 public:
  explicit FrameAssembler(std::size_t frame_bytes_max) : max_(frame_bytes_max) { reset(); }
  // Where the next bytes go, all of which must be read before filled(); empty once complete.
  [[nodiscard]] std::span<std::byte> want();
  // Marks want() as filled; fails (protocol_error) when the segment table breaks the limits.
  coraft::Result<void> filled();
  [[nodiscard]] bool complete() const noexcept { return stage_ == Stage::done; }
  // The whole frame (word-aligned); call once complete. reset() starts the next one.
  [[nodiscard]] std::span<const std::byte> frame() const noexcept;
  void reset();

 private:
  enum class Stage : std::uint8_t { head, table, body, done };
  std::size_t max_;
  Stage stage_ = Stage::head;
  std::vector<std::uint64_t> words_;  // word-aligned storage for the whole frame
  std::size_t table_bytes_ = 0;
  std::size_t total_bytes_ = 0;
};

[[nodiscard]] coraft::Result<Request> decode_request(std::span<const std::byte> frame);
[[nodiscard]] coraft::Result<Reply> decode_reply(std::span<const std::byte> frame);

[[nodiscard]] const char* to_string(Op op) noexcept;

}  // namespace counter
