#include "machine.hpp"

#include <cstring>
#include <string>
#include <utility>

namespace counter {
namespace {

using coraft::Bytes;
using coraft::Errc;
using coraft::Error;

// The snapshot's header: a magic number and a version.
constexpr std::uint32_t snapshot_magic = 0x52544e43;  // "CNTR"
constexpr std::uint32_t snapshot_version = 1;
constexpr std::size_t snapshot_header_bytes = 4 + 4 + 8 + 8;
// The session table's serialised size is bounded by its limits; this bounds what restore()
// reads before it knows whether the table fits them.
constexpr std::uint64_t session_table_bytes_max = 1ull << 30;

void put_u64(std::byte* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>(v >> (8 * i));
}
std::uint64_t get_u64(const std::byte* in) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::to_integer<std::uint64_t>(in[i]) << (8 * i);
  return v;
}
void put_u32(std::byte* out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<std::byte>(v >> (8 * i));
}
std::uint32_t get_u32(const std::byte* in) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::to_integer<std::uint32_t>(in[i]) << (8 * i);
  return v;
}

Bytes status_reply(AppliedReply::Status s, std::span<const std::byte> body) {
  std::vector<std::byte> out(1 + body.size());
  out[0] = static_cast<std::byte>(s);
  if (!body.empty()) std::memcpy(out.data() + 1, body.data(), body.size());
  return Bytes::adopt(std::move(out));
}

Bytes u64_body(std::uint64_t v) {
  std::byte b[8];
  put_u64(b, v);
  return Bytes::copy_of(std::span<const std::byte>(b, 8));
}

class StateCopy final : public coraft::SnapshotCopy {
 public:
  explicit StateCopy(std::vector<std::byte> bytes) : bytes_(std::move(bytes)) {}
  coraft::Result<void> save(coraft::SnapshotSink& sink) override { return sink.write(bytes_); }

 private:
  std::vector<std::byte> bytes_;
};

coraft::Result<void> read_exactly(coraft::SnapshotSource& source, std::span<std::byte> out) {
  while (!out.empty()) {
    auto n = source.read(out);
    if (!n) return n.error();
    if (*n == 0) return Error(Errc::storage_corrupt, "counter snapshot: cut short");
    out = out.subspan(*n);
  }
  return {};
}

}  // namespace

Bytes encode_amount(std::int64_t amount) {
  return u64_body(static_cast<std::uint64_t>(amount));
}

coraft::Result<AppliedReply> decode_applied(const Bytes& reply) {
  if (reply.size() == 0) return Error(Errc::protocol_error, "counter reply: empty");
  AppliedReply r;
  const auto status = std::to_integer<std::uint8_t>(reply.data()[0]);
  switch (status) {
    case 0: r.status = AppliedReply::Status::ok; break;
    case 1:
      if (reply.size() != 3) return Error(Errc::protocol_error, "counter reply: bad refusal");
      r.status = AppliedReply::Status::refused;
      r.session_error =
          static_cast<coraft::SessionErrc>(std::to_integer<std::uint16_t>(reply.data()[1]) |
                                           (std::to_integer<std::uint16_t>(reply.data()[2]) << 8));
      return r;
    case 2: r.status = AppliedReply::Status::bad_command; return r;
    default: return Error(Errc::protocol_error, "counter reply: unknown status");
  }
  r.body = reply.slice(1, reply.size() - 1);
  return r;
}

std::optional<std::uint64_t> body_u64(const Bytes& body) {
  if (body.size() != 8) return std::nullopt;
  return get_u64(body.data());
}

CounterMachine::CounterMachine(coraft::SessionLimits limits) : sessions_(limits) {}

void CounterMachine::apply(std::span<const coraft::Command> commands, std::vector<Bytes>& replies) {
  for (const coraft::Command& c : commands) {
    // A command's reply is saved by the session table as the client will see it, status byte
    // included, so that a retry of a bad command is answered bad_command again.
    auto envelope = coraft::decode_envelope(c.payload);
    const bool command = envelope && envelope->kind == coraft::EnvelopeKind::command;
    auto reply = sessions_.apply(c.index, std::move(envelope), [&](const Bytes& payload) {
      auto amount = body_u64(payload);
      if (!amount) return status_reply(AppliedReply::Status::bad_command, {});
      // Wrapping addition: every replica wraps alike, and signed overflow is never reached.
      const auto next = static_cast<std::int64_t>(
          static_cast<std::uint64_t>(value_.load(std::memory_order_relaxed)) + *amount);
      value_.store(next, std::memory_order_release);
      return status_reply(AppliedReply::Status::ok,
                          u64_body(static_cast<std::uint64_t>(next)).span());
    });
    if (!reply) {
      const auto code = static_cast<std::uint16_t>(reply.error().code.value());
      const std::byte b[2] = {static_cast<std::byte>(code & 0xff),
                              static_cast<std::byte>(code >> 8)};
      replies.push_back(status_reply(AppliedReply::Status::refused, b));
    } else if (command) {
      replies.push_back(std::move(*reply));
    } else {
      replies.push_back(status_reply(AppliedReply::Status::ok, reply->span()));
    }
  }
}

std::vector<std::byte> CounterMachine::encode_state(std::int64_t value,
                                                    std::span<const std::byte> sessions) {
  std::vector<std::byte> out(snapshot_header_bytes + sessions.size());
  put_u32(out.data(), snapshot_magic);
  put_u32(out.data() + 4, snapshot_version);
  put_u64(out.data() + 8, static_cast<std::uint64_t>(value));
  put_u64(out.data() + 16, sessions.size());
  if (!sessions.empty())
    std::memcpy(out.data() + snapshot_header_bytes, sessions.data(), sessions.size());
  return out;
}

coraft::Result<void> CounterMachine::save(coraft::SnapshotSink& sink) {
  return sink.write(encode_state(value(), sessions_.serialize()));
}

std::unique_ptr<coraft::SnapshotCopy> CounterMachine::copy_for_snapshot() {
  return std::make_unique<StateCopy>(encode_state(value(), sessions_.serialize()));
}

coraft::Result<void> CounterMachine::restore(coraft::SnapshotSource& source) {
  std::byte header[snapshot_header_bytes];
  if (auto r = read_exactly(source, header); !r) return r;
  if (get_u32(header) != snapshot_magic || get_u32(header + 4) != snapshot_version)
    return Error(Errc::storage_corrupt, "counter snapshot: unknown header");
  const std::uint64_t table_bytes = get_u64(header + 16);
  if (table_bytes > session_table_bytes_max ||
      table_bytes != source.size() - std::min<std::uint64_t>(source.size(), snapshot_header_bytes))
    return Error(Errc::storage_corrupt, "counter snapshot: the session table's size is wrong");
  std::vector<std::byte> table(table_bytes);
  if (auto r = read_exactly(source, table); !r) return r;
  // restore() of the table leaves it unchanged on failure, so nothing changes unless both fit.
  if (auto r = sessions_.restore(table); !r) return r;
  value_.store(static_cast<std::int64_t>(get_u64(header + 8)), std::memory_order_release);
  return {};
}

}  // namespace counter
