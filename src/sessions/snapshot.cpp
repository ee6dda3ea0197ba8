// The session table as bytes, for a state machine's snapshot.
//
// Layout, little-endian:
//   u8[4] magic "CRSN"
//   u8    version 1
//   u64   now_ms, u64 last_index, u64 last_registered
//   u32   session count, then per session in least-recently-used-first order:
//     u64 id, u64 first_unacked, u64 last_active_ms, u64 last_active_index
//     u32 reply count, then per reply in increasing seq: u64 seq, u32 length, the reply bytes
//   u32   CRC-32C of every byte before it
//
// Restoring checks the CRC first, then reads every field with bounds checks, then checks the
// structure (the invariants in table.hpp) and the restoring table's limits, so damaged or
// hostile bytes are refused and never allocate more than their own length.
#include <algorithm>
#include <array>
#include <string>

#include <coraft/sessions.hpp>
#include <coraft/text.hpp>

#include "sessions/table.hpp"
#include "sessions/wire.hpp"

namespace coraft {
namespace {

constexpr std::array<std::byte, 4> magic{std::byte{'C'}, std::byte{'R'}, std::byte{'S'},
                                         std::byte{'N'}};
constexpr std::uint8_t format_version = 1;
constexpr std::size_t header_bytes = 4 + 1 + 8 * 3 + 4;
constexpr std::size_t crc_bytes = 4;

Error corrupt(std::string detail) {
  return Error(Errc::storage_corrupt, detail::concat("session table: ", detail));
}

Error over_limit(std::string detail) {
  return Error(Errc::invalid_argument, detail::concat("session table: ", detail));
}

// Reads one session at r. The caller checks its place in the table.
Result<SessionState> read_session(sessions::Reader& r, const SessionLimits& limits) {
  SessionState s;
  s.id = SessionId(r.u64());
  s.first_unacked = r.u64();
  s.last_active_ms = r.u64();
  s.last_active_index = Index(r.u64());
  std::uint32_t replies = r.u32();
  if (!r.ok()) return corrupt("truncated session");
  if (s.id == SessionId()) return corrupt("a session with id 0");
  if (replies > limits.replies_per_session_max) {
    return over_limit(detail::concat("session ", s.id, " holds ", replies,
                                     " replies; replies_per_session_max is ",
                                     limits.replies_per_session_max));
  }
  for (std::uint32_t i = 0; i < replies; ++i) {
    std::uint64_t seq = r.u64();
    std::uint32_t length = r.u32();
    auto body = r.bytes(length);
    if (!r.ok()) return corrupt(detail::concat("session ", s.id, ": truncated reply"));
    if (length > limits.reply_bytes_max) {
      return over_limit(detail::concat("session ", s.id, " holds a reply of ", length,
                                       " bytes; reply_bytes_max is ", limits.reply_bytes_max));
    }
    if (seq < s.first_unacked || seq - s.first_unacked >= limits.replies_per_session_max) {
      return corrupt(detail::concat("session ", s.id, ": reply seq ", seq,
                                    " outside the window from ", s.first_unacked));
    }
    if (!s.replies.empty() && seq <= s.replies.rbegin()->first) {
      return corrupt(detail::concat("session ", s.id, ": reply seqs out of order at ", seq));
    }
    s.replies.emplace_hint(s.replies.end(), seq, Bytes::copy_of(body));
  }
  return s;
}

// Why `s` cannot follow `previous` (null for the first) in table `t`; empty when it can.
std::string misplaced(const Sessions::Table& t, const SessionState* previous,
                      const SessionState& s) {
  if (s.id > t.last_registered) return detail::concat("session ", s.id, " is newer than the last");
  if (s.last_active_ms > t.now_ms || s.last_active_index > t.last_index) {
    return detail::concat("session ", s.id, " was active after the table's clock or index");
  }
  if (previous != nullptr && (s.last_active_ms < previous->last_active_ms ||
                              s.last_active_index < previous->last_active_index)) {
    return detail::concat("session ", s.id, " is out of least-recently-used order");
  }
  if (t.by_id.contains(s.id)) return detail::concat("session ", s.id, " appears twice");
  return {};
}

}  // namespace

std::vector<std::byte> Sessions::serialize() const {
  const auto& t = *table_;
  CORAFT_REQUIRE(!t.owed, "serialize() while record() is owed");
  t.check_invariants();
  std::vector<std::byte> out;
  sessions::Writer w(out);
  w.bytes(magic);
  w.u8(format_version);
  w.u64(t.now_ms);
  w.u64(t.last_index.value());
  w.u64(t.last_registered.value());
  w.u32(static_cast<std::uint32_t>(t.lru.size()));
  for (const auto& s : t.lru) {
    w.u64(s.id.value());
    w.u64(s.first_unacked);
    w.u64(s.last_active_ms);
    w.u64(s.last_active_index.value());
    w.u32(static_cast<std::uint32_t>(s.replies.size()));
    for (const auto& [seq, reply] : s.replies) {
      w.u64(seq);
      w.u32(static_cast<std::uint32_t>(reply.size()));
      w.bytes(reply.span());
    }
  }
  w.u32(sessions::crc32c(out));
  return out;
}

Result<void> Sessions::restore(std::span<const std::byte> bytes) {
  CORAFT_REQUIRE(!table_->owed, "restore() while record() is owed");
  if (bytes.size() < header_bytes + crc_bytes) {
    return corrupt(detail::concat(bytes.size(), " bytes is too short"));
  }
  auto body = bytes.first(bytes.size() - crc_bytes);
  std::uint32_t stored_crc = sessions::Reader(bytes.last(crc_bytes)).u32();
  if (sessions::crc32c(body) != stored_crc) return corrupt("checksum mismatch");

  sessions::Reader r(body);
  auto head = r.bytes(magic.size());
  if (!std::equal(head.begin(), head.end(), magic.begin())) return corrupt("bad magic");
  if (auto v = r.u8(); v != format_version) {
    return corrupt(detail::concat("unknown version ", static_cast<unsigned>(v)));
  }
  auto t = std::make_unique<Table>(table_->limits);
  t->now_ms = r.u64();
  t->last_index = Index(r.u64());
  t->last_registered = SessionId(r.u64());
  std::uint32_t count = r.u32();
  CORAFT_ASSERT(r.ok(), r.offset());
  if (count > t->limits.sessions_max) {
    return over_limit(
        detail::concat("holds ", count, " sessions; sessions_max is ", t->limits.sessions_max));
  }
  for (std::uint32_t i = 0; i < count; ++i) {
    auto s = read_session(r, t->limits);
    if (!s) return std::move(s).error();
    auto problem = misplaced(*t, t->lru.empty() ? nullptr : &t->lru.back(), *s);
    if (!problem.empty()) return corrupt(std::move(problem));
    t->lru.push_back(std::move(*s));
    t->by_id.emplace(t->lru.back().id, std::prev(t->lru.end()));
  }
  if (r.remaining() != 0) return corrupt(detail::concat(r.remaining(), " trailing bytes"));
  t->check_invariants();
  table_ = std::move(t);
  return {};
}

}  // namespace coraft
