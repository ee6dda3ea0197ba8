// The codec between the core's peer messages and their Cap'n Proto wire form (schema/raft.capnp).
//
// Sending: encode() builds one frame in standard Cap'n Proto stream framing (segment table, then
// segments). Entry payloads and snapshot chunks at least `external_payload_bytes_min` long are
// not copied: each becomes a segment of its own that points at the caller's Bytes, and the
// frame is written as a list of buffers (a gathered write). The frame keeps the message, and so
// every payload it points at, alive until it is destroyed.
//
// Receiving: decode() reads a complete frame in place. The frame must be word-aligned; entry
// payloads and snapshot data come back as Bytes views that share the frame's buffer, so no
// payload byte is copied.
//
// Every size is bounded by CodecLimits. A frame that breaks a limit or is malformed yields
// Errc::protocol_error (or Errc::too_large on the sending side) with a detail naming the problem;
// decode() never reads outside the frame and allocates at most in proportion to its size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include <asio/buffer.hpp>

#include <coraft/bytes.hpp>
#include <coraft/result.hpp>
#include <coraft/types.hpp>

#include "core/message.hpp"

namespace coraft::net {

// Raised whenever the wire format changes incompatibly; peers with another version are refused.
inline constexpr std::uint32_t protocol_version = 1;

struct CodecLimits {
  // The largest frame, segment table included, that is sent or accepted.
  std::size_t frame_bytes_max = std::size_t{64} << 20;
  // The most entries one AppendRequest frame may carry.
  std::size_t entries_per_frame_max = 8192;
  // The most segments one frame may have (each external payload is one).
  std::size_t segments_max = 1024;
  // Cap'n Proto's traversal limit, in words; a frame may never traverse more than its own size.
  std::uint64_t traversal_words_max = std::uint64_t{8} << 20;
  // Cap'n Proto's nesting limit; the schema needs 4 levels.
  int nesting_max = 8;
  // The most node ids in one configuration list.
  std::size_t configuration_ids_max = 4096;
  // Payloads shorter than this are copied into the frame: for small payloads a copy costs less
  // than one more buffer in the gathered write.
  std::size_t external_payload_bytes_min = 1024;
};

// The first frame on a connection, sent by the dialing side.
struct Handshake {
  std::uint32_t protocol_version = 0;
  std::uint64_t cluster_id = 0;
  NodeId sender;
  NodeId receiver;  // no_node accepts whoever answers
  std::uint64_t group_id = 0;
};

// The accepting side's answer. When `accepted` is false the connection closes after it.
struct HandshakeReply {
  bool accepted = false;
  std::uint32_t protocol_version = 0;
  std::uint64_t cluster_id = 0;
  NodeId node;
  std::string reason;
  std::uint64_t group_id = 0;
};

// Sent by a dialer that has had nothing to send for a while, so that the acceptor does not close
// the connection as idle. It carries no message and is never delivered.
struct Keepalive {};

using FrameBody = std::variant<Handshake, HandshakeReply, core::MessageBody, Keepalive>;

// One encoded frame, ready to be written with a gathered write.
class OutFrame {
 public:
  OutFrame(OutFrame&&) noexcept;
  OutFrame& operator=(OutFrame&&) noexcept;
  ~OutFrame();

  // The total size on the wire.
  [[nodiscard]] std::size_t size_bytes() const noexcept { return size_bytes_; }
  // The frame's bytes in order: segment table, then each segment (payloads in place).
  [[nodiscard]] const std::vector<asio::const_buffer>& buffers() const noexcept { return buffers_; }
  // How many payloads are referenced rather than copied.
  [[nodiscard]] std::size_t external_payloads() const noexcept { return external_payloads_; }
  // Copies the whole frame into one contiguous buffer (for captures and tests).
  [[nodiscard]] std::vector<std::byte> flatten() const;

  struct State;

 private:
  friend Result<OutFrame> encode(FrameBody body, const CodecLimits& limits);
  explicit OutFrame(std::unique_ptr<State> state);

  std::unique_ptr<State> state_;
  std::vector<asio::const_buffer> buffers_;
  std::size_t size_bytes_ = 0;
  std::size_t external_payloads_ = 0;
};

// Builds the frame for `body`, which it keeps (with its payloads) until the frame is destroyed.
// Fails with too_large when the frame would break frame_bytes_max or entries_per_frame_max.
[[nodiscard]] Result<OutFrame> encode(FrameBody body, const CodecLimits& limits);

// Decodes one complete frame.
// Precondition: frame.data() is 8-byte aligned and frame holds exactly one frame.
[[nodiscard]] Result<FrameBody> decode(const Bytes& frame, const CodecLimits& limits);

// "appendRequest", "handshake", ...: the frame kind's name, for logs.
[[nodiscard]] const char* frame_kind(const FrameBody& body) noexcept;

}  // namespace coraft::net
