// The replicated counter's parts on their own: the state machine with its sessions, and the
// client protocol's encoding and framing.
#include <cstring>
#include <vector>

#include <doctest/doctest.h>

#include <coraft/sessions.hpp>

#include "machine.hpp"
#include "protocol.hpp"

using namespace counter;
using coraft::Bytes;
using coraft::Command;
using coraft::EnvelopeKind;
using coraft::Index;
using coraft::SessionEnvelope;
using coraft::SessionId;
using coraft::Term;

namespace {

struct Applier {
  CounterMachine machine;
  std::uint64_t index = 0;

  AppliedReply apply(const SessionEnvelope& e) { return apply_raw(coraft::encode_envelope(e)); }
  AppliedReply apply_raw(Bytes entry) {
    std::vector<Command> commands{Command{Index(++index), Term(1), std::move(entry)}};
    std::vector<Bytes> replies;
    machine.apply(commands, replies);
    REQUIRE(replies.size() == 1);
    auto r = decode_applied(replies[0]);
    REQUIRE(r.ok());
    return *r;
  }
  SessionId open() {
    SessionEnvelope e;
    e.kind = EnvelopeKind::register_session;
    e.time_ms = 1000;
    auto r = apply(e);
    REQUIRE(r.status == AppliedReply::Status::ok);
    return SessionId(body_u64(r.body).value());
  }
  AppliedReply incr(SessionId s, std::uint64_t seq, std::int64_t amount) {
    SessionEnvelope e;
    e.kind = EnvelopeKind::command;
    e.session = s;
    e.seq = seq;
    e.first_unacked = seq;
    e.time_ms = 1000 + index;
    e.payload = encode_amount(amount);
    return apply(e);
  }
};

std::int64_t value_of(const AppliedReply& r) {
  REQUIRE(r.status == AppliedReply::Status::ok);
  return static_cast<std::int64_t>(body_u64(r.body).value());
}

class VectorSink final : public coraft::SnapshotSink {
 public:
  coraft::Result<void> write(std::span<const std::byte> data) override {
    bytes.insert(bytes.end(), data.begin(), data.end());
    return {};
  }
  std::vector<std::byte> bytes;
};

class VectorSource final : public coraft::SnapshotSource {
 public:
  explicit VectorSource(std::vector<std::byte> b) : bytes(std::move(b)) {}
  coraft::Result<std::size_t> read(std::span<std::byte> out) override {
    const std::size_t n = std::min(out.size(), bytes.size() - at);
    std::memcpy(out.data(), bytes.data() + at, n);
    at += n;
    return n;
  }
  [[nodiscard]] std::uint64_t size() const noexcept override { return bytes.size(); }
  std::vector<std::byte> bytes;
  std::size_t at = 0;
};

}  // namespace

TEST_CASE(
    "the counter applies a retried increment once and answers the retry with the same value") {
  Applier a;
  const SessionId s = a.open();
  CHECK(value_of(a.incr(s, 1, 5)) == 5);
  CHECK(value_of(a.incr(s, 1, 5)) == 5);  // the same command again: the saved reply
  CHECK(a.machine.value() == 5);
  CHECK(value_of(a.incr(s, 2, 3)) == 8);
  CHECK(a.machine.value() == 8);
}

TEST_CASE("the counter refuses a command of an unknown session without applying it") {
  Applier a;
  auto r = a.incr(SessionId(999), 1, 5);
  CHECK(r.status == AppliedReply::Status::refused);
  CHECK(r.session_error == coraft::SessionErrc::session_expired);
  CHECK(a.machine.value() == 0);
}

TEST_CASE(
    "the counter answers a payload that is not an amount with bad_command and changes nothing") {
  Applier a;
  const SessionId s = a.open();
  SessionEnvelope e;
  e.kind = EnvelopeKind::command;
  e.session = s;
  e.seq = 1;
  e.first_unacked = 1;
  e.payload = Bytes::copy_of(std::string_view("abc"));
  CHECK(a.apply(e).status == AppliedReply::Status::bad_command);
  CHECK(a.apply(e).status == AppliedReply::Status::bad_command);  // its retry, from the table
  CHECK(a.machine.value() == 0);
  // A log entry that is not an envelope at all.
  CHECK(a.apply_raw(Bytes::copy_of(std::string_view("junk"))).status ==
        AppliedReply::Status::refused);
}

TEST_CASE("a counter restored from a snapshot has the value and still recognises retries") {
  Applier a;
  const SessionId s = a.open();
  CHECK(value_of(a.incr(s, 1, 7)) == 7);
  VectorSink sink;
  REQUIRE(a.machine.save(sink).ok());
  // The point-in-time copy writes the same bytes.
  auto copy = a.machine.copy_for_snapshot();
  REQUIRE(copy != nullptr);
  VectorSink copied;
  REQUIRE(copy->save(copied).ok());
  CHECK(copied.bytes == sink.bytes);

  Applier b;
  b.index = a.index;
  VectorSource source(sink.bytes);
  REQUIRE(b.machine.restore(source).ok());
  CHECK(b.machine.value() == 7);
  CHECK(value_of(b.incr(s, 1, 7)) == 7);  // a retry after the snapshot is still answered once
  CHECK(b.machine.value() == 7);
}

TEST_CASE("a damaged counter snapshot is refused and leaves the state as it was") {
  Applier a;
  const SessionId s = a.open();
  CHECK(value_of(a.incr(s, 1, 4)) == 4);
  VectorSink sink;
  REQUIRE(a.machine.save(sink).ok());
  Applier b;
  const SessionId bs = b.open();
  CHECK(value_of(b.incr(bs, 1, 9)) == 9);
  for (std::size_t cut : {std::size_t{3}, sink.bytes.size() - 1}) {
    std::vector<std::byte> shortened(sink.bytes.begin(), sink.bytes.begin() + cut);
    VectorSource source(shortened);
    CHECK_FALSE(b.machine.restore(source).ok());
  }
  std::vector<std::byte> flipped = sink.bytes;
  flipped.back() ^= std::byte{0x40};  // inside the session table's checksum
  VectorSource source(flipped);
  CHECK_FALSE(b.machine.restore(source).ok());
  CHECK(b.machine.value() == 9);
}

namespace {

// Feeds `bytes` to an assembler as a reader would, `step` bytes at most per read.
coraft::Result<std::vector<std::byte>> assemble(const std::vector<std::byte>& bytes,
                                                std::size_t max) {
  FrameAssembler a(max);
  std::size_t at = 0;
  while (!a.complete()) {
    auto want = a.want();
    if (at + want.size() > bytes.size())
      return coraft::Error(coraft::Errc::protocol_error, "short");
    std::memcpy(want.data(), bytes.data() + at, want.size());
    at += want.size();
    if (auto f = a.filled(); !f) return f.error();
  }
  auto frame = a.frame();
  return std::vector<std::byte>(frame.begin(), frame.end());
}

}  // namespace

TEST_CASE("requests and replies cross the client protocol's framing intact") {
  Request r;
  r.id = 42;
  r.op = Op::add_learner;
  r.session = 7;
  r.seq = 3;
  r.first_unacked = 2;
  r.amount = -5;
  r.stale = true;
  r.target = 4;
  r.address = "127.0.0.1:9000";
  r.promote = true;
  auto frame = assemble(encode(r), request_frame_bytes_max);
  REQUIRE(frame.ok());
  auto back = decode_request(*frame);
  REQUIRE(back.ok());
  CHECK(back->id == 42);
  CHECK(back->op == Op::add_learner);
  CHECK(back->session == 7);
  CHECK(back->seq == 3);
  CHECK(back->first_unacked == 2);
  CHECK(back->amount == -5);
  CHECK(back->stale);
  CHECK(back->target == 4);
  CHECK(back->address == "127.0.0.1:9000");
  CHECK(back->promote);

  Reply p = error_reply(9, coraft::Error::not_leader(coraft::NodeId(3)));
  p.leader_address = "127.0.0.1:7000";
  auto pframe = assemble(encode(p), reply_frame_bytes_max);
  REQUIRE(pframe.ok());
  auto pback = decode_reply(*pframe);
  REQUIRE(pback.ok());
  CHECK(pback->id == 9);
  CHECK(pback->is(coraft::Errc::not_leader));
  CHECK(pback->definite);
  CHECK(pback->leader == 3);
  CHECK(pback->leader_address == "127.0.0.1:7000");
}

TEST_CASE(
    "the framing refuses a frame over its limit or with too many segments, before reading it") {
  Request r;
  r.address = std::string(2000, 'x');
  auto big = encode(r);
  auto refused = assemble(big, 1024);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().detail.find("limit") != std::string::npos);

  std::vector<std::byte> many(8);
  many[0] = std::byte{200};  // 201 segments
  auto too_many = assemble(many, request_frame_bytes_max);
  REQUIRE_FALSE(too_many.ok());
  CHECK(too_many.error().detail.find("segments") != std::string::npos);
}

TEST_CASE("a frame that is not a request is refused with a protocol error, not a crash") {
  std::vector<std::uint64_t> words(4, 0);
  words[0] = 3ull << 32;             // the segment table: one segment of three words
  words[1] = 0x7fffffff00000000ull;  // the root: a struct pointer far past the segment's end
  auto frame = std::as_bytes(std::span(words));
  auto r = decode_request(frame);
  CHECK_FALSE(r.ok());
  // Bytes that are not whole words.
  std::vector<std::byte> odd(12);
  CHECK_FALSE(decode_request(odd).ok());
}
