// Splits a received byte stream into complete, word-aligned Cap'n Proto frames without copying
// them: bytes are received straight into a refcounted chunk and each frame is handed out as a
// Bytes view that shares that chunk.
//
// Use: write at most prepare().size() bytes into prepare(), commit(n), then call next() until it
// yields no frame. A chunk stays alive while any Bytes view of it (a frame, or a payload decoded
// from one) does; chunks no one holds any more are reused, so steady-state receiving neither
// allocates nor touches fresh pages. A frame that would not fit in the rest of its chunk moves
// with the part of it received so far into a new chunk of at least its own size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include <coraft/bytes.hpp>
#include <coraft/result.hpp>

#include "net/codec.hpp"

namespace coraft::net {

class FrameReader {
 public:
  // `chunk_bytes` is the receive buffer's usual size; larger frames get a chunk of their own.
  explicit FrameReader(const CodecLimits& limits, std::size_t chunk_bytes = std::size_t{1} << 20);

  // Applies new limits and chunk size from the next frame on (for example once a connection's
  // handshake, read under tight limits, has been accepted).
  void reset_limits(const CodecLimits& limits, std::size_t chunk_bytes);

  // Space to receive into; never empty.
  [[nodiscard]] std::span<std::byte> prepare();
  // Marks `n` bytes of prepare()'s span as received. Precondition: n <= prepare().size().
  void commit(std::size_t n);
  // The next complete frame, std::nullopt when more bytes are needed, or protocol_error when
  // the stream announces a frame that breaks frame_bytes_max or segments_max (the stream
  // cannot be resynchronised after that: close the connection).
  [[nodiscard]] Result<std::optional<Bytes>> next();

  // Bytes received but not yet handed out as frames.
  [[nodiscard]] std::size_t buffered_bytes() const noexcept { return end_ - begin_; }
  // The size of the frame being received, once its segment table has arrived; 0 before that
  // (or when the table breaks the limits, which next() reports).
  [[nodiscard]] std::size_t pending_frame_bytes() const;
  // Chunks allocated so far (for tests of reuse).
  [[nodiscard]] std::size_t chunks_allocated() const noexcept { return chunks_allocated_; }

 private:
  using Chunk = std::shared_ptr<std::uint64_t[]>;
  struct Owned {
    Chunk words;
    std::size_t bytes = 0;
  };

  [[nodiscard]] std::byte* base() const noexcept {
    return reinterpret_cast<std::byte*>(chunk_.words.get());
  }
  // Result: the frame's full size once its segment table is complete, 0 before that.
  [[nodiscard]] Result<std::size_t> frame_size() const;
  // Moves the unconsumed bytes into a chunk with room for at least `bytes` from its start.
  void move_to_chunk(std::size_t bytes);
  [[nodiscard]] Owned take_chunk(std::size_t bytes);

  CodecLimits limits_;
  std::size_t chunk_bytes_;
  Owned chunk_;
  std::vector<Owned> spares_;
  std::size_t begin_ = 0;  // start of the first frame not yet handed out
  std::size_t end_ = 0;    // end of the bytes received
  std::size_t chunks_allocated_ = 0;
};

}  // namespace coraft::net
