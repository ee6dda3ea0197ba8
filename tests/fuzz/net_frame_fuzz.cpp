// libFuzzer target for the receiving side of the peer protocol: the frame reader and the codec.
//
// Input: one byte choosing how many bytes each simulated socket read delivers, then the byte
// stream a peer would send. Every frame the reader yields is decoded; every message that
// decodes is encoded again and decoded once more, and must come back the same size. Nothing may
// crash, read out of bounds, leak, or allocate beyond the limits.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "net/codec.hpp"
#include "net/frame_reader.hpp"

namespace {

using namespace coraft;
using namespace coraft::net;

CodecLimits fuzz_limits() {
  CodecLimits limits;
  // Small enough for inputs of -max_len=70000 to reach it, larger than the reader's chunk.
  limits.frame_bytes_max = std::size_t{64} << 10;
  limits.entries_per_frame_max = 1024;
  limits.segments_max = 64;
  limits.configuration_ids_max = 256;
  limits.external_payload_bytes_min = 64;
  return limits;
}

void check_round_trip(const FrameBody& body, const CodecLimits& limits) {
  auto again = encode(body, limits);
  if (!again) return;  // a decoded message may still be too large to send under these limits
  auto flat = again->flatten();
  std::shared_ptr<std::uint64_t[]> words(new std::uint64_t[(flat.size() + 7) / 8]);
  std::memcpy(words.get(), flat.data(), flat.size());
  Bytes frame = Bytes::wrap(words, {reinterpret_cast<const std::byte*>(words.get()), flat.size()});
  auto back = decode(frame, limits);
  if (!back || back->index() != body.index()) __builtin_trap();
  auto again2 = encode(*back, limits);
  if (!again2 || again2->size_bytes() != again->size_bytes()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static const CodecLimits limits = fuzz_limits();
  std::size_t step = std::size_t{data[0]} + 1;
  ++data;
  --size;
  FrameReader reader(limits, 8192);
  std::size_t pos = 0;
  while (pos < size) {
    auto space = reader.prepare();
    std::size_t n = std::min({step, space.size(), size - pos});
    std::memcpy(space.data(), data + pos, n);
    reader.commit(n);
    pos += n;
    for (;;) {
      auto next = reader.next();
      if (!next) return 0;  // the connection would be closed here
      if (!*next) break;
      auto body = decode(**next, limits);
      if (body) check_round_trip(*body, limits);
    }
  }
  return 0;
}
