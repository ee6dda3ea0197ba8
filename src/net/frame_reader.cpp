#include "net/frame_reader.hpp"

#include <algorithm>
#include <cstring>

#include <coraft/assert.hpp>
#include <coraft/text.hpp>

namespace coraft::net {
namespace {

constexpr std::size_t word_bytes = 8;
// Below this much free space a fresh chunk is taken rather than issuing tiny reads.
constexpr std::size_t read_bytes_min = 4096;
// Chunks kept for reuse once nothing refers to them.
constexpr std::size_t spare_chunks_max = 4;

std::uint32_t load_u32(const std::byte* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;  // Cap'n Proto framing is little-endian, like every host coraft supports.
}

std::size_t round_to_words(std::size_t bytes) {
  return (bytes + word_bytes - 1) / word_bytes * word_bytes;
}

}  // namespace

FrameReader::FrameReader(const CodecLimits& limits, std::size_t chunk_bytes)
    : limits_(limits), chunk_bytes_(round_to_words(std::max(chunk_bytes, read_bytes_min * 2))) {}

void FrameReader::reset_limits(const CodecLimits& limits, std::size_t chunk_bytes) {
  limits_ = limits;
  chunk_bytes_ = round_to_words(std::max(chunk_bytes, read_bytes_min * 2));
}

std::size_t FrameReader::pending_frame_bytes() const {
  auto size = frame_size();
  return size ? *size : 0;
}

FrameReader::Owned FrameReader::take_chunk(std::size_t bytes) {
  for (auto it = spares_.begin(); it != spares_.end(); ++it) {
    if (it->words.use_count() == 1 && it->bytes >= bytes) {
      Owned c = std::move(*it);
      spares_.erase(it);
      return c;
    }
  }
  // Default-initialised: fresh pages are touched only as bytes arrive.
  Owned c{Chunk(new std::uint64_t[bytes / word_bytes]), bytes};
  ++chunks_allocated_;
  return c;
}

void FrameReader::move_to_chunk(std::size_t bytes) {
  std::size_t pending = end_ - begin_;
  Owned next = take_chunk(round_to_words(std::max({bytes, chunk_bytes_, pending})));
  if (pending) std::memcpy(next.words.get(), base() + begin_, pending);
  // Keep the old chunk for reuse once the frames that still share it are gone; oversized
  // chunks, made for one large frame, are released instead.
  if (chunk_.words && chunk_.bytes <= chunk_bytes_) {
    if (spares_.size() >= spare_chunks_max) spares_.erase(spares_.begin());
    spares_.push_back(std::move(chunk_));
  }
  chunk_ = std::move(next);
  begin_ = 0;
  end_ = pending;
}

std::span<std::byte> FrameReader::prepare() {
  if (begin_ == end_ && chunk_.words && chunk_.words.use_count() == 1) {
    begin_ = end_ = 0;  // nothing refers to the chunk any more: receive into it from the start
  }
  if (!chunk_.words || chunk_.bytes - end_ < read_bytes_min) {
    auto needed = frame_size();
    std::size_t want = needed && *needed > 0 ? *needed : chunk_bytes_;
    if (!chunk_.words || begin_ > 0 || chunk_.bytes < want) move_to_chunk(want);
  }
  // Only reachable when complete frames were left unconsumed; keep the promise of space anyway.
  if (end_ == chunk_.bytes) move_to_chunk(end_ - begin_ + chunk_bytes_);
  CORAFT_ASSERT(end_ < chunk_.bytes, "prepare() must offer space", end_, chunk_.bytes);
  return {base() + end_, chunk_.bytes - end_};
}

void FrameReader::commit(std::size_t n) {
  CORAFT_REQUIRE(chunk_.words && n <= chunk_.bytes - end_, "commit beyond prepare()", n);
  end_ += n;
}

Result<std::size_t> FrameReader::frame_size() const {
  std::size_t have = end_ - begin_;
  if (have < word_bytes) return std::size_t{0};
  const std::byte* p = base() + begin_;
  std::size_t segments = std::size_t{load_u32(p)} + 1;
  if (segments > limits_.segments_max) {
    return Error(Errc::protocol_error,
                 detail::concat("frame announces ", segments, " segments, above segments_max ",
                                limits_.segments_max));
  }
  std::size_t table_bytes = (segments + 2) / 2 * word_bytes;
  if (have < table_bytes) return std::size_t{0};
  std::uint64_t total = table_bytes;
  for (std::size_t i = 0; i < segments; ++i) {
    total += std::uint64_t{load_u32(p + 4 + 4 * i)} * word_bytes;
  }
  if (total > limits_.frame_bytes_max) {
    return Error(Errc::protocol_error,
                 detail::concat("frame announces ", total, " bytes, above frame_bytes_max ",
                                limits_.frame_bytes_max));
  }
  return static_cast<std::size_t>(total);
}

Result<std::optional<Bytes>> FrameReader::next() {
  auto size = frame_size();
  if (!size) return size.error();
  if (*size == 0 || end_ - begin_ < *size) {
    // Incomplete: make sure the whole frame will fit where it is being received.
    if (*size > 0 && chunk_.bytes - begin_ < *size) move_to_chunk(*size);
    return std::optional<Bytes>();
  }
  std::span<const std::byte> bytes(base() + begin_, *size);
  begin_ += *size;
  return std::optional<Bytes>(Bytes::wrap(chunk_.words, bytes));
}

}  // namespace coraft::net
