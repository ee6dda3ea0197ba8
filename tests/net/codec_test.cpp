#include <cstring>
#include <random>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <doctest/doctest.h>

#include "net/codec.hpp"
#include "net/frame_reader.hpp"
#include "net_test_util.hpp"
#include "schema/raft.capnp.h"

using namespace coraft;
using namespace coraft::net;
using coraft::net::test::aligned_frame;

namespace {

Bytes encode_flat(FrameBody body, const CodecLimits& limits = {}) {
  auto frame = encode(std::move(body), limits);
  REQUIRE(frame.ok());
  return aligned_frame(frame->flatten());
}

core::MessageBody decode_message(const Bytes& frame, const CodecLimits& limits = {}) {
  auto body = decode(frame, limits);
  REQUIRE(body.ok());
  REQUIRE(std::holds_alternative<core::MessageBody>(*body));
  return std::get<core::MessageBody>(std::move(*body));
}

bool inside(const Bytes& part, const Bytes& whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

// Builds a frame straight from the schema, for inputs the encoder would never produce.
Bytes raw_frame(const std::function<void(wire::Frame::Builder)>& fill) {
  capnp::MallocMessageBuilder builder;
  fill(builder.initRoot<wire::Frame>());
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return aligned_frame(std::vector<std::byte>(reinterpret_cast<const std::byte*>(bytes.begin()),
                                              reinterpret_cast<const std::byte*>(bytes.end())));
}

}  // namespace

TEST_CASE("every message kind survives an encode and decode round trip") {
  for (const auto& m : test::sample_messages()) {
    CAPTURE(m.index());
    auto back = decode_message(encode_flat(FrameBody(m)));
    CHECK(test::same(m, back));
  }
}

TEST_CASE("handshake and handshake reply survive a round trip") {
  auto h = decode(encode_flat(Handshake{protocol_version, 77, NodeId(3), NodeId(4), 12}), {});
  REQUIRE(h.ok());
  const auto& hs = std::get<Handshake>(*h);
  CHECK(hs.protocol_version == protocol_version);
  CHECK(hs.cluster_id == 77);
  CHECK(hs.sender == NodeId(3));
  CHECK(hs.receiver == NodeId(4));
  CHECK(hs.group_id == 12);

  auto r = decode(encode_flat(HandshakeReply{false, 2, 78, NodeId(4), "wrong cluster", 13}), {});
  REQUIRE(r.ok());
  const auto& reply = std::get<HandshakeReply>(*r);
  CHECK(!reply.accepted);
  CHECK(reply.protocol_version == 2);
  CHECK(reply.cluster_id == 78);
  CHECK(reply.node == NodeId(4));
  CHECK(reply.reason == "wrong cluster");
  CHECK(reply.group_id == 13);
}

TEST_CASE("a keepalive frame survives a round trip and is the schema's keepalive") {
  Bytes frame = encode_flat(Keepalive{});
  auto body = decode(frame, {});
  REQUIRE(body.ok());
  CHECK(std::holds_alternative<Keepalive>(*body));
  CHECK(std::string(frame_kind(*body)) == "keepalive");

  // Cap'n Proto's own reader sees the Frame union's keepalive member.
  kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(frame.data()),
                                        frame.size() / sizeof(capnp::word));
  capnp::FlatArrayMessageReader reader(words);
  CHECK(reader.getRoot<wire::Frame>().which() == wire::Frame::KEEPALIVE);

  // And a keepalive built straight from the schema decodes as one.
  auto raw = decode(raw_frame([](wire::Frame::Builder f) { f.setKeepalive(); }), {});
  REQUIRE(raw.ok());
  CHECK(std::holds_alternative<Keepalive>(*raw));
}

TEST_CASE("decoded entry payloads are views into the frame buffer, not copies") {
  Bytes frame = encode_flat(core::MessageBody(test::append_request(8, 4096)));
  auto m = decode_message(frame);
  const auto& a = std::get<core::AppendRequest>(m);
  REQUIRE(a.entries.size() == 8);
  for (const Entry& e : a.entries) {
    CHECK(inside(e.payload, frame));
    CHECK(e.payload.shares_owner_with(frame));
  }
}

TEST_CASE("decoded snapshot data is a view into the frame buffer") {
  core::InstallSnapshot s{Term(2),
                          SnapshotMeta{Index(9), Term(2), *Configuration::make({NodeId(1)})}, 0,
                          test::pattern_payload(9000), false};
  Bytes frame = encode_flat(core::MessageBody(s));
  auto back = std::get<core::InstallSnapshot>(decode_message(frame));
  CHECK(back.data == s.data);
  CHECK(inside(back.data, frame));
}

TEST_CASE("large payloads are sent from their own memory, small ones are copied into the frame") {
  auto request = test::append_request(2, 65536);
  request.entries.push_back(
      Entry{Index(103), Term(5), EntryType::normal, test::pattern_payload(256)});
  const std::byte* big0 = request.entries[0].payload.data();
  const std::byte* big1 = request.entries[1].payload.data();
  const std::byte* small = request.entries[2].payload.data();
  auto frame = encode(core::MessageBody(std::move(request)), {});
  REQUIRE(frame.ok());
  CHECK(frame->external_payloads() == 2);
  auto points_at = [&](const std::byte* p) {
    for (const auto& b : frame->buffers()) {
      if (b.data() == p) return true;
    }
    return false;
  };
  CHECK(points_at(big0));
  CHECK(points_at(big1));
  CHECK(!points_at(small));
}

TEST_CASE("an unaligned large payload is copied rather than referenced") {
  Bytes whole = test::pattern_payload(70001);
  core::AppendRequest a{Term(1), Index(0), Term(0), Index(0), {}};
  a.entries.push_back(Entry{Index(1), Term(1), EntryType::normal, whole.slice(1)});
  auto frame = encode(core::MessageBody(a), {});
  REQUIRE(frame.ok());
  CHECK(frame->external_payloads() == 0);
  auto back = std::get<core::AppendRequest>(decode_message(aligned_frame(frame->flatten())));
  CHECK(back.entries[0].payload == whole.slice(1));
}

TEST_CASE(
    "a payload whose size is not a whole word is padded with zeros, not with its neighbours") {
  Bytes whole = test::pattern_payload(65536 + 16);
  core::AppendRequest a{Term(1), Index(0), Term(0), Index(0), {}};
  a.entries.push_back(Entry{Index(1), Term(1), EntryType::normal, whole.slice(0, 65536 + 3)});
  auto frame = encode(core::MessageBody(a), {});
  REQUIRE(frame.ok());
  REQUIRE(frame->external_payloads() == 1);
  auto flat = frame->flatten();
  auto back = std::get<core::AppendRequest>(decode_message(aligned_frame(flat)));
  const Bytes& p = back.entries[0].payload;
  REQUIRE(p.size() == 65536 + 3);
  CHECK(p == whole.slice(0, 65536 + 3));
  for (std::size_t i = p.size(); i < 65536 + 8; ++i) CHECK(p.data()[i] == std::byte{0});
}

TEST_CASE("encoding refuses more entries than entries_per_frame_max") {
  CodecLimits limits;
  limits.entries_per_frame_max = 4;
  auto frame = encode(core::MessageBody(test::append_request(5, 10)), limits);
  REQUIRE(!frame.ok());
  CHECK(frame.error().is(Errc::too_large));
}

TEST_CASE("encoding refuses a frame above frame_bytes_max") {
  CodecLimits limits;
  limits.frame_bytes_max = 8192;
  auto frame = encode(core::MessageBody(test::append_request(3, 4000)), limits);
  REQUIRE(!frame.ok());
  CHECK(frame.error().is(Errc::too_large));
  CHECK(frame.error().detail.find("frame_bytes_max") != std::string::npos);
}

TEST_CASE("decoding refuses a frame with more entries than entries_per_frame_max") {
  Bytes frame = encode_flat(core::MessageBody(test::append_request(10, 8)));
  CodecLimits strict;
  strict.entries_per_frame_max = 9;
  auto body = decode(frame, strict);
  REQUIRE(!body.ok());
  CHECK(body.error().is(Errc::protocol_error));
  CHECK(body.error().detail.find("entries_per_frame_max") != std::string::npos);
}

TEST_CASE("decoding refuses a frame above frame_bytes_max") {
  Bytes frame = encode_flat(core::MessageBody(test::append_request(4, 4096)));
  CodecLimits strict;
  strict.frame_bytes_max = 4096;
  auto body = decode(frame, strict);
  REQUIRE(!body.ok());
  CHECK(body.error().detail.find("frame_bytes_max") != std::string::npos);
}

TEST_CASE("decoding applies Cap'n Proto's nesting and traversal limits") {
  Bytes frame = encode_flat(core::MessageBody(test::append_request(4, 64)));
  SUBCASE("nesting") {
    CodecLimits strict;
    strict.nesting_max = 1;
    auto body = decode(frame, strict);
    REQUIRE(!body.ok());
    CHECK(body.error().is(Errc::protocol_error));
  }
  SUBCASE("traversal") {
    CodecLimits strict;
    strict.traversal_words_max = 8;
    auto body = decode(frame, strict);
    REQUIRE(!body.ok());
    CHECK(body.error().is(Errc::protocol_error));
  }
}

TEST_CASE("decoding refuses a truncated frame") {
  Bytes frame = encode_flat(core::MessageBody(test::append_request(2, 64)));
  auto body = decode(frame.slice(0, frame.size() - 16), {});
  REQUIRE(!body.ok());
  CHECK(body.error().is(Errc::protocol_error));
}

TEST_CASE("decoding random words fails cleanly") {
  std::mt19937_64 rng(42);
  int failures = 0;
  for (int round = 0; round < 200; ++round) {
    std::vector<std::byte> junk(8 * (1 + rng() % 64));
    for (auto& b : junk) b = std::byte(rng() & 0xff);
    // A small segment table, so that some inputs get past the header.
    std::uint32_t header[2] = {0, static_cast<std::uint32_t>(junk.size() / 8 - 1)};
    std::memcpy(junk.data(), header, sizeof header);
    auto body = decode(aligned_frame(junk), {});
    failures += !body.ok();
  }
  CHECK(failures > 0);
}

TEST_CASE("decoding refuses entries whose indices do not follow prev_log_index") {
  auto a = test::append_request(3, 8);
  a.entries[2].index = Index(500);
  auto body = decode(encode_flat(core::MessageBody(a)), {});
  REQUIRE(!body.ok());
  CHECK(body.error().detail.find("entry index 500") != std::string::npos);
}

TEST_CASE("decoding refuses an unknown entry type") {
  Bytes frame = raw_frame([](wire::Frame::Builder f) {
    auto a = f.initAppendRequest();
    a.setPrevLogIndex(0);
    auto e = a.initEntries(1)[0];
    e.setIndex(1);
    e.setTerm(1);
    e.setType(static_cast<wire::EntryType>(9));
  });
  auto body = decode(frame, {});
  REQUIRE(!body.ok());
  CHECK(body.error().detail.find("unknown type 9") != std::string::npos);
}

TEST_CASE("decoding refuses a snapshot whose configuration breaks its invariant") {
  Bytes frame = raw_frame([](wire::Frame::Builder f) {
    auto s = f.initInstallSnapshot();
    auto conf = s.initMeta().initConfiguration();
    conf.initVoters(1).set(0, 2);
    conf.initLearners(1).set(0, 2);  // a learner may not also vote
  });
  auto body = decode(frame, {});
  REQUIRE(!body.ok());
  CHECK(body.error().detail.find("invalid configuration") != std::string::npos);
}

TEST_CASE("decoding refuses a frame with bytes after its last segment") {
  auto flat = encode(core::MessageBody(core::TimeoutNow{Term(3)}), {})->flatten();
  flat.resize(flat.size() + 8);
  auto body = decode(aligned_frame(flat), {});
  REQUIRE(!body.ok());
  CHECK(body.error().detail.find("after its last segment") != std::string::npos);
}

// ---- FrameReader

namespace {

// Feeds `stream` to `reader` in pieces of `step` bytes, collecting complete frames.
Result<std::vector<Bytes>> feed(FrameReader& reader, const std::vector<std::byte>& stream,
                                std::size_t step) {
  std::vector<Bytes> frames;
  std::size_t pos = 0;
  while (pos < stream.size()) {
    auto space = reader.prepare();
    std::size_t n = std::min({step, space.size(), stream.size() - pos});
    std::memcpy(space.data(), stream.data() + pos, n);
    reader.commit(n);
    pos += n;
    for (;;) {
      auto next = reader.next();
      if (!next) return next.error();
      if (!*next) break;
      frames.push_back(**next);
    }
  }
  return frames;
}

std::vector<std::byte> stream_of(const std::vector<core::MessageBody>& messages) {
  std::vector<std::byte> out;
  for (const auto& m : messages) {
    auto flat = encode(FrameBody(m), {})->flatten();
    out.insert(out.end(), flat.begin(), flat.end());
  }
  return out;
}

}  // namespace

TEST_CASE("the frame reader splits a stream into frames whatever the read sizes") {
  auto messages = test::sample_messages();
  auto stream = stream_of(messages);
  for (std::size_t step : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, stream.size()}) {
    CAPTURE(step);
    CodecLimits limits;
    FrameReader reader(limits, 16384);
    auto frames = feed(reader, stream, step);
    REQUIRE(frames.ok());
    REQUIRE(frames->size() == messages.size());
    for (std::size_t i = 0; i < messages.size(); ++i) {
      CHECK(reinterpret_cast<std::uintptr_t>((*frames)[i].data()) % 8 == 0);
      CHECK(test::same(messages[i], decode_message((*frames)[i])));
    }
    CHECK(reader.buffered_bytes() == 0);
  }
}

TEST_CASE("the frame reader reuses its buffer once no frame refers to it") {
  CodecLimits limits;
  FrameReader reader(limits, 65536);
  auto stream = stream_of({core::MessageBody(test::append_request(4, 1000))});
  for (int round = 0; round < 100; ++round) {
    auto frames = feed(reader, stream, stream.size());
    REQUIRE(frames.ok());
    REQUIRE(frames->size() == 1);
  }
  CHECK(reader.chunks_allocated() == 1);
}

TEST_CASE("the frame reader keeps buffers alive while payloads refer to them") {
  CodecLimits limits;
  FrameReader reader(limits, 65536);
  auto stream = stream_of({core::MessageBody(test::append_request(4, 2000))});
  std::vector<Bytes> payloads;
  for (int round = 0; round < 50; ++round) {
    auto frames = feed(reader, stream, 3000);
    REQUIRE(frames.ok());
    for (const Bytes& f : *frames) {
      auto a = std::get<core::AppendRequest>(decode_message(f));
      payloads.push_back(a.entries.back().payload);
    }
  }
  for (const Bytes& p : payloads) CHECK(p == test::pattern_payload(2000, 3));
  CHECK(reader.chunks_allocated() > 1);
}

TEST_CASE(
    "the frame reader refuses an announced frame above frame_bytes_max before allocating it") {
  CodecLimits limits;
  limits.frame_bytes_max = 1 << 20;
  FrameReader reader(limits, 8192);
  std::uint32_t header[2] = {0, 0xffffffffu};  // one segment of 32 GiB
  std::vector<std::byte> stream(sizeof header);
  std::memcpy(stream.data(), header, sizeof header);
  auto frames = feed(reader, stream, stream.size());
  REQUIRE(!frames.ok());
  CHECK(frames.error().is(Errc::protocol_error));
  CHECK(frames.error().detail.find("frame_bytes_max") != std::string::npos);
  CHECK(reader.chunks_allocated() == 1);
}

TEST_CASE("the frame reader refuses a segment table above segments_max") {
  CodecLimits limits;
  limits.segments_max = 16;
  FrameReader reader(limits, 8192);
  std::uint32_t header[2] = {100, 1};
  std::vector<std::byte> stream(sizeof header);
  std::memcpy(stream.data(), header, sizeof header);
  auto frames = feed(reader, stream, stream.size());
  REQUIRE(!frames.ok());
  CHECK(frames.error().detail.find("segments_max") != std::string::npos);
}

TEST_CASE("the frame reader offers space even when complete frames were left unconsumed") {
  CodecLimits limits;
  FrameReader reader(limits, 8192);
  auto flat = encode(core::MessageBody(core::TimeoutNow{Term(1)}), {})->flatten();
  std::vector<std::byte> stream;
  for (int i = 0; i < 300; ++i) stream.insert(stream.end(), flat.begin(), flat.end());
  // Receive far more than one chunk without taking any frame out.
  std::size_t pos = 0;
  while (pos < stream.size()) {
    auto space = reader.prepare();
    REQUIRE(!space.empty());
    std::size_t n = std::min(space.size(), stream.size() - pos);
    std::memcpy(space.data(), stream.data() + pos, n);
    reader.commit(n);
    pos += n;
  }
  std::size_t taken = 0;
  for (;;) {
    auto next = reader.next();
    REQUIRE(next.ok());
    if (!*next) break;
    ++taken;
  }
  CHECK(taken == 300);
}
