#include "protocol.hpp"

#include <cstring>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include "schema/counter.capnp.h"

namespace counter {
namespace {

using coraft::Errc;
using coraft::Error;

std::vector<std::byte> flatten(capnp::MallocMessageBuilder& message) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.begin(), bytes.size());
  return out;
}

std::uint32_t le32(const std::byte* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::to_integer<std::uint32_t>(p[i]) << (8 * i);
  return v;
}

capnp::ReaderOptions reader_options(std::size_t frame_bytes) {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = frame_bytes / 8 + 64;
  o.nestingLimit = 8;
  return o;
}

// Runs `fn` on a reader of `frame`, turning Cap'n Proto's exceptions into protocol errors.
template <class T, class Fn>
coraft::Result<T> with_reader(std::span<const std::byte> frame, const char* what, Fn fn) {
  if (frame.size() % 8 != 0 || reinterpret_cast<std::uintptr_t>(frame.data()) % 8 != 0)
    return Error(Errc::protocol_error, std::string(what) + ": a frame must be whole words");
  try {
    kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(frame.data()),
                                          frame.size() / 8);
    capnp::FlatArrayMessageReader reader(words, reader_options(frame.size()));
    return fn(reader);
  } catch (const kj::Exception& e) {
    return Error(Errc::protocol_error, std::string(what) + ": " + e.getDescription().cStr());
  }
}

}  // namespace

Reply error_reply(std::uint64_t id, const coraft::Error& e) {
  Reply r;
  r.id = id;
  r.domain = Domain::node;
  r.code = static_cast<std::uint16_t>(e.code.value());
  r.definite = e.definite();
  r.retryable = e.retryable();
  r.message = e.message();
  r.leader = e.leader_hint.value();
  r.leader_address = e.leader_address;
  return r;
}

std::vector<std::byte> encode(const Request& r) {
  capnp::MallocMessageBuilder message;
  auto b = message.initRoot<CounterRequest>();
  b.setId(r.id);
  b.setOp(static_cast<::Op>(r.op));
  b.setSession(r.session);
  b.setSeq(r.seq);
  b.setFirstUnacked(r.first_unacked);
  b.setAmount(r.amount);
  b.setStale(r.stale);
  b.setTarget(r.target);
  if (!r.address.empty()) b.setAddress(r.address);
  b.setPromote(r.promote);
  return flatten(message);
}

std::vector<std::byte> encode(const Reply& r) {
  capnp::MallocMessageBuilder message;
  auto b = message.initRoot<CounterReply>();
  b.setId(r.id);
  b.setDomain(static_cast<ErrorDomain>(r.domain));
  b.setCode(r.code);
  b.setDefinite(r.definite);
  b.setRetryable(r.retryable);
  if (!r.message.empty()) b.setMessage(r.message);
  b.setLeader(r.leader);
  if (!r.leader_address.empty()) b.setLeaderAddress(r.leader_address);
  b.setValue(r.value);
  b.setSession(r.session);
  b.setIndex(r.index);
  if (!r.text.empty()) b.setText(r.text);
  return flatten(message);
}

coraft::Result<Request> decode_request(std::span<const std::byte> frame) {
  return with_reader<Request>(
      frame, "request", [](capnp::MessageReader& m) -> coraft::Result<Request> {
        auto in = m.getRoot<CounterRequest>();
        Request r;
        r.id = in.getId();
        const auto op = static_cast<std::uint16_t>(in.getOp());
        if (op > static_cast<std::uint16_t>(Op::close_session))
          return Error(Errc::protocol_error, "request: unknown operation " + std::to_string(op));
        r.op = static_cast<Op>(op);
        r.session = in.getSession();
        r.seq = in.getSeq();
        r.first_unacked = in.getFirstUnacked();
        r.amount = in.getAmount();
        r.stale = in.getStale();
        r.target = in.getTarget();
        if (in.hasAddress()) r.address = in.getAddress().cStr();
        r.promote = in.getPromote();
        return r;
      });
}

coraft::Result<Reply> decode_reply(std::span<const std::byte> frame) {
  return with_reader<Reply>(frame, "reply", [](capnp::MessageReader& m) -> coraft::Result<Reply> {
    auto in = m.getRoot<CounterReply>();
    Reply r;
    r.id = in.getId();
    const auto domain = static_cast<std::uint16_t>(in.getDomain());
    if (domain > static_cast<std::uint16_t>(Domain::request))
      return Error(Errc::protocol_error, "reply: unknown error domain");
    r.domain = static_cast<Domain>(domain);
    r.code = in.getCode();
    r.definite = in.getDefinite();
    r.retryable = in.getRetryable();
    if (in.hasMessage()) r.message = in.getMessage().cStr();
    r.leader = in.getLeader();
    if (in.hasLeaderAddress()) r.leader_address = in.getLeaderAddress().cStr();
    r.value = in.getValue();
    r.session = in.getSession();
    r.index = in.getIndex();
    if (in.hasText()) r.text = in.getText().cStr();
    return r;
  });
}

std::span<std::byte> FrameAssembler::want() {
  auto* base = reinterpret_cast<std::byte*>(words_.data());
  switch (stage_) {
    case Stage::head: return {base, 8};
    case Stage::table: return {base + 8, table_bytes_ - 8};
    case Stage::body: return {base + table_bytes_, total_bytes_ - table_bytes_};
    case Stage::done: break;
  }
  return {};
}

coraft::Result<void> FrameAssembler::filled() {
  auto* base = reinterpret_cast<const std::byte*>(words_.data());
  if (stage_ == Stage::head) {
    const std::uint64_t segments = std::uint64_t{le32(base)} + 1;
    if (segments > frame_segments_max)
      return Error(Errc::protocol_error, "frame: " + std::to_string(segments) + " segments");
    table_bytes_ = static_cast<std::size_t>((4 + 4 * segments + 7) / 8 * 8);
    words_.resize(table_bytes_ / 8);
    stage_ = Stage::table;
    // A one-segment table fits in the first word: nothing more to read for it.
    if (table_bytes_ == 8) return filled();
    return {};
  }
  if (stage_ == Stage::table) {
    const std::uint64_t segments = std::uint64_t{le32(base)} + 1;
    std::uint64_t words = 0;
    for (std::uint64_t i = 0; i < segments; ++i) words += le32(base + 4 + 4 * i);
    const std::uint64_t total = table_bytes_ + words * 8;
    if (words == 0 || total > max_)
      return Error(Errc::protocol_error, "frame: " + std::to_string(total) +
                                             " bytes, more than the limit of " +
                                             std::to_string(max_) + " or empty");
    total_bytes_ = static_cast<std::size_t>(total);
    words_.resize(total_bytes_ / 8);
    stage_ = Stage::body;
    return {};
  }
  if (stage_ == Stage::body) stage_ = Stage::done;
  return {};
}

std::span<const std::byte> FrameAssembler::frame() const noexcept {
  return {reinterpret_cast<const std::byte*>(words_.data()), total_bytes_};
}

void FrameAssembler::reset() {
  stage_ = Stage::head;
  words_.assign(1, 0);
  table_bytes_ = 0;
  total_bytes_ = 0;
}

const char* to_string(Op op) noexcept {
  switch (op) {
    case Op::register_session: return "register";
    case Op::incr: return "incr";
    case Op::get: return "get";
    case Op::status: return "status";
    case Op::members: return "members";
    case Op::add_voter: return "add-voter";
    case Op::add_learner: return "add-learner";
    case Op::remove_server: return "remove";
    case Op::transfer: return "transfer";
    case Op::close_session: return "close-session";
  }
  return "?";
}

}  // namespace counter
