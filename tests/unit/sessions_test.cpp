#include <coraft/sessions.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "sessions/wire.hpp"

using coraft::Admission;
using coraft::Bytes;
using coraft::EnvelopeKind;
using coraft::Index;
using coraft::Result;
using coraft::SessionEnvelope;
using coraft::SessionErrc;
using coraft::SessionId;
using coraft::SessionLimits;
using coraft::Sessions;

namespace {

// A counter service behind sessions: each command's payload is an amount to add, and its reply
// is the new total. `applied` counts how often a payload really ran.
struct Counter {
  explicit Counter(SessionLimits limits = {}) : sessions(limits) {}

  Sessions sessions;
  std::int64_t total = 0;
  int applied = 0;
  Index next_index{1};

  Result<Bytes> entry(const Bytes& bytes) {
    Index index = next_index;
    ++next_index;
    return sessions.apply(index, bytes, [this](const Bytes& payload) {
      ++applied;
      total += std::stoll(std::string(payload.chars()));
      return Bytes::copy_of(std::to_string(total));
    });
  }
  SessionId open(std::uint64_t time_ms = 0) {
    SessionEnvelope e;
    e.kind = EnvelopeKind::register_session;
    e.time_ms = time_ms;
    auto reply = entry(coraft::encode_envelope(e));
    REQUIRE(reply.ok());
    auto id = Sessions::decode_session_id(*reply);
    REQUIRE(id.ok());
    return *id;
  }
  Result<Bytes> add(SessionId s, std::uint64_t seq, std::uint64_t first_unacked, int amount,
                    std::uint64_t time_ms = 0) {
    return entry(coraft::encode_envelope(command(s, seq, first_unacked, amount, time_ms)));
  }

  static SessionEnvelope command(SessionId s, std::uint64_t seq, std::uint64_t first_unacked,
                                 int amount, std::uint64_t time_ms) {
    SessionEnvelope e;
    e.session = s;
    e.seq = seq;
    e.first_unacked = first_unacked;
    e.time_ms = time_ms;
    e.payload = Bytes::copy_of(std::to_string(amount));
    return e;
  }
};

std::string text(const Result<Bytes>& r) {
  REQUIRE(r.ok());
  return std::string(r->chars());
}

bool refused_with(const Result<Bytes>& r, SessionErrc code) {
  return !r.ok() && r.error().code == make_error_code(code);
}

std::vector<std::byte> with_crc(std::vector<std::byte> body) {
  body.resize(body.size() - 4);
  auto crc = coraft::sessions::crc32c(body);
  coraft::sessions::Writer(body).u32(crc);
  return body;
}

}  // namespace

TEST_CASE("a session's id is the index of the entry that registered it") {
  Counter c;
  c.next_index = Index(41);
  CHECK(c.open() == SessionId(41));
  CHECK(c.open() == SessionId(42));
  CHECK(c.sessions.contains(SessionId(41)));
  CHECK(c.sessions.size() == 2);
  // Reference: Raft thesis §6.3
}

TEST_CASE("an envelope the caller decoded is applied exactly as its bytes are") {
  Counter by_bytes, by_envelope;
  auto both = [&](const Bytes& bytes) {
    auto a = by_bytes.entry(bytes);
    const Index index = by_envelope.next_index;
    ++by_envelope.next_index;
    auto b = by_envelope.sessions.apply(
        index, coraft::decode_envelope(bytes), [&](const Bytes& payload) {
          ++by_envelope.applied;
          by_envelope.total += std::stoll(std::string(payload.chars()));
          return Bytes::copy_of(std::to_string(by_envelope.total));
        });
    REQUIRE(a.ok() == b.ok());
    if (a.ok()) CHECK(std::string(a->chars()) == std::string(b->chars()));
    if (!a.ok()) CHECK(a.error().code == b.error().code);
  };
  SessionEnvelope reg;
  reg.kind = EnvelopeKind::register_session;
  both(coraft::encode_envelope(reg));
  both(coraft::encode_envelope(Counter::command(SessionId(1), 1, 1, 5, 0)));
  both(coraft::encode_envelope(Counter::command(SessionId(1), 1, 1, 5, 0)));  // a retry
  both(coraft::encode_envelope(Counter::command(SessionId(1), 2, 1, 7, 0)));
  both(Bytes::copy_of("not an envelope"));
  both(coraft::encode_envelope(Counter::command(SessionId(9), 1, 1, 1, 0)));  // no such session
  CHECK(by_bytes.applied == 2);
  CHECK(by_envelope.applied == 2);
  CHECK(by_bytes.sessions.serialize() == by_envelope.sessions.serialize());
}

TEST_CASE("a retried command is answered from the saved reply and not applied again") {
  Counter c;
  auto s = c.open();
  CHECK(text(c.add(s, 1, 1, 5)) == "5");
  CHECK(text(c.add(s, 2, 1, 7)) == "12");

  auto retry = c.add(s, 1, 1, 5);

  CHECK(text(retry) == "5");
  CHECK(c.total == 12);
  CHECK(c.applied == 2);
  // Reference: Raft thesis §6.3
}

TEST_CASE("commands of one session may apply out of order, each exactly once") {
  Counter c;
  auto s = c.open();
  CHECK(text(c.add(s, 2, 1, 10)) == "10");
  CHECK(text(c.add(s, 1, 1, 1)) == "11");
  CHECK(text(c.add(s, 2, 1, 10)) == "10");
  CHECK(c.applied == 2);
}

TEST_CASE("replies below first_unacked are dropped, and their commands are never reapplied") {
  Counter c;
  auto s = c.open();
  REQUIRE(c.add(s, 1, 1, 1).ok());
  REQUIRE(c.add(s, 2, 1, 1).ok());
  REQUIRE(c.add(s, 3, 3, 1).ok());  // the client has seen the replies to 1 and 2

  auto late_retry = c.add(s, 2, 2, 1);

  CHECK(refused_with(late_retry, SessionErrc::reply_discarded));
  CHECK(c.applied == 3);
  CHECK(text(c.add(s, 3, 3, 1)) == "3");  // still saved
}

TEST_CASE("a command too far ahead of first_unacked is refused without being applied") {
  SessionLimits limits;
  limits.replies_per_session_max = 4;
  Counter c(limits);
  auto s = c.open();
  for (std::uint64_t seq = 1; seq <= 4; ++seq) REQUIRE(c.add(s, seq, 1, 1).ok());

  auto fifth = c.add(s, 5, 1, 1);

  CHECK(refused_with(fifth, SessionErrc::window_exceeded));
  CHECK_FALSE(fifth.error().message().empty());
  CHECK(c.applied == 4);
  SUBCASE("it is accepted once the client acknowledges earlier replies") {
    CHECK(text(c.add(s, 5, 2, 1)) == "5");
    CHECK(c.applied == 5);
  }
  SUBCASE("a refusal does not use up the seq") {
    CHECK(refused_with(c.add(s, 5, 1, 1), SessionErrc::window_exceeded));
    CHECK(text(c.add(s, 5, 5, 1)) == "5");
  }
}

TEST_CASE("a session idle longer than the timeout, in envelope time, expires") {
  SessionLimits limits;
  limits.session_timeout_ms = 1000;
  Counter c(limits);
  auto idle = c.open(0);
  auto busy = c.open(0);
  REQUIRE(c.add(busy, 1, 1, 1, 600).ok());
  REQUIRE(c.add(busy, 2, 2, 1, 1000).ok());  // idle has idled exactly the timeout: kept
  CHECK(c.sessions.contains(idle));

  REQUIRE(c.add(busy, 3, 3, 1, 1001).ok());

  CHECK_FALSE(c.sessions.contains(idle));
  CHECK(c.sessions.contains(busy));
  auto late = c.add(idle, 1, 1, 1, 1001);
  CHECK(refused_with(late, SessionErrc::session_expired));
  CHECK(late.error().definite());
  CHECK_FALSE(late.error().retryable());
  CHECK(c.applied == 3);
}

TEST_CASE("a command's own timestamp can expire its session before it applies") {
  SessionLimits limits;
  limits.session_timeout_ms = 1000;
  Counter c(limits);
  auto s = c.open(0);
  REQUIRE(c.add(s, 1, 1, 1, 0).ok());

  auto retry_after_timeout = c.add(s, 1, 1, 1, 5000);

  CHECK(refused_with(retry_after_timeout, SessionErrc::session_expired));
  CHECK(c.applied == 1);
}

TEST_CASE("a timestamp older than the table's clock does not move it back") {
  SessionLimits limits;
  limits.session_timeout_ms = 1000;
  Counter c(limits);
  auto idle = c.open(0);
  auto other = c.open(2000);  // idle expires here: 2000 - 0 > 1000
  CHECK_FALSE(c.sessions.contains(idle));

  REQUIRE(c.add(other, 1, 1, 1, 10).ok());  // a new leader whose clock lags

  CHECK(c.sessions.now_ms() == 2000);
  CHECK(refused_with(c.add(other, 2, 2, 1, 3001), SessionErrc::session_expired));
}

TEST_CASE("a session idle for more entries than session_idle_entries_max expires") {
  SessionLimits limits;
  limits.session_timeout_ms = 0;
  limits.session_idle_entries_max = 3;
  Counter c(limits);
  auto idle = c.open();                // index 1
  auto busy = c.open();                // index 2
  REQUIRE(c.add(busy, 1, 1, 1).ok());  // index 3
  REQUIRE(c.add(busy, 2, 2, 1).ok());  // index 4: idle has idled 3 entries
  CHECK(c.sessions.contains(idle));

  REQUIRE(c.add(busy, 3, 3, 1).ok());  // index 5

  CHECK_FALSE(c.sessions.contains(idle));
  CHECK(refused_with(c.add(idle, 1, 1, 1), SessionErrc::session_expired));
}

TEST_CASE("advance() expires sessions for entries that carry no envelope") {
  SessionLimits limits;
  limits.session_timeout_ms = 100;
  Sessions sessions(limits);
  auto s = sessions.register_session(Index(1), 0);

  sessions.advance(Index(2), 101);

  CHECK_FALSE(sessions.contains(s));
  CHECK(sessions.last_index() == Index(2));
}

TEST_CASE("with the table full, registering expires the least recently used session") {
  SessionLimits limits;
  limits.sessions_max = 3;
  Counter c(limits);
  auto first = c.open();
  auto second = c.open();
  auto third = c.open();
  REQUIRE(c.add(first, 1, 1, 1).ok());  // second is now the least recently used

  auto fourth = c.open();

  CHECK(c.sessions.size() == 3);
  CHECK(c.sessions.contains(first));
  CHECK_FALSE(c.sessions.contains(second));
  CHECK(c.sessions.contains(third));
  CHECK(c.sessions.contains(fourth));
  CHECK(refused_with(c.add(second, 1, 1, 1), SessionErrc::session_expired));
}

TEST_CASE("a closed session refuses later commands") {
  Counter c;
  auto s = c.open();
  REQUIRE(c.add(s, 1, 1, 1).ok());
  SessionEnvelope close;
  close.kind = EnvelopeKind::close_session;
  close.session = s;

  REQUIRE(c.entry(coraft::encode_envelope(close)).ok());

  CHECK_FALSE(c.sessions.contains(s));
  CHECK(refused_with(c.add(s, 1, 1, 1), SessionErrc::session_expired));
  CHECK(refused_with(c.entry(coraft::encode_envelope(close)), SessionErrc::session_expired));
}

TEST_CASE("admit() and record() used directly follow the same rules") {
  Sessions sessions;
  auto s = sessions.register_session(Index(1), 0);
  auto e = Counter::command(s, 1, 1, 3, 0);

  auto first = sessions.admit(Index(2), e);
  REQUIRE(first.ok());
  CHECK(first->action == Admission::Action::apply);
  sessions.record(Bytes::copy_of("three"));
  auto again = sessions.admit(Index(3), e);

  REQUIRE(again.ok());
  CHECK(again->action == Admission::Action::duplicate);
  CHECK(again->reply.chars() == "three");
  auto unknown = sessions.admit(Index(4), Counter::command(SessionId(99), 1, 1, 3, 0));
  CHECK(unknown.error().code == make_error_code(SessionErrc::session_expired));
}

TEST_CASE("envelopes survive encoding and decoding") {
  auto e = Counter::command(SessionId(7), 12, 9, -4, 123456);

  auto decoded = coraft::decode_envelope(coraft::encode_envelope(e));

  REQUIRE(decoded.ok());
  CHECK(decoded->kind == EnvelopeKind::command);
  CHECK(decoded->session == SessionId(7));
  CHECK(decoded->seq == 12);
  CHECK(decoded->first_unacked == 9);
  CHECK(decoded->time_ms == 123456);
  CHECK(decoded->payload.chars() == "-4");
}

TEST_CASE("malformed envelopes are refused with a definite error") {
  auto good = coraft::encode_envelope(Counter::command(SessionId(7), 12, 9, 5, 1));
  std::vector<std::byte> raw(good.span().begin(), good.span().end());
  auto refused = [](std::vector<std::byte> bytes) {
    auto r = coraft::decode_envelope(Bytes::adopt(std::move(bytes)));
    return !r.ok() && r.error().code == make_error_code(SessionErrc::malformed_envelope) &&
           !r.error().detail.empty();
  };
  auto patched = [&](std::size_t offset, std::byte value) {
    auto copy = raw;
    copy[offset] = value;
    return copy;
  };

  SUBCASE("every truncation") {
    for (std::size_t n = 0; n < raw.size(); ++n) {
      CHECK(refused(std::vector<std::byte>(raw.begin(), raw.begin() + static_cast<long>(n))));
    }
  }
  SUBCASE("trailing bytes") {
    auto longer = raw;
    longer.push_back(std::byte{0});
    CHECK(refused(longer));
  }
  SUBCASE("an unknown format or kind") {
    CHECK(refused(patched(0, std::byte{2})));
    CHECK(refused(patched(1, std::byte{0})));
    CHECK(refused(patched(1, std::byte{4})));
  }
  SUBCASE("a huge payload length is refused without allocating it") {
    auto copy = raw;
    for (std::size_t i = 34; i < 38; ++i) copy[i] = std::byte{0xFF};
    CHECK(refused(copy));
  }
  SUBCASE("fields that contradict each other") {
    CHECK(refused(patched(18, std::byte{13})));  // first_unacked 13 past seq 12
    auto no_session = raw;
    for (std::size_t i = 2; i < 10; ++i) no_session[i] = std::byte{0};
    CHECK(refused(no_session));
    auto zero_seq = patched(10, std::byte{0});
    zero_seq[18] = std::byte{0};
    CHECK(refused(zero_seq));
    CHECK(refused(patched(1, std::byte{1})));  // a register naming a session
  }
  SUBCASE("the full protocol answers a malformed entry without applying anything") {
    Counter c;
    auto reply = c.entry(Bytes::copy_of("not an envelope"));
    CHECK(refused_with(reply, SessionErrc::malformed_envelope));
    CHECK(reply.error().definite());
    CHECK(c.sessions.last_index() == Index(1));
  }
  SUBCASE("a session id reply is exactly 8 non-zero bytes") {
    CHECK_FALSE(Sessions::decode_session_id(Bytes::copy_of("1234567")).ok());
    CHECK_FALSE(Sessions::decode_session_id(Bytes::copy_of("123456789")).ok());
    CHECK_FALSE(Sessions::decode_session_id(Sessions::encode_session_id(SessionId())).ok());
    CHECK(*Sessions::decode_session_id(Sessions::encode_session_id(SessionId(5))) == SessionId(5));
  }
}

namespace {

// A table with several sessions, saved replies, a discarded window and a clock.
Counter busy_counter(SessionLimits limits) {
  Counter c(limits);
  auto a = c.open(10);
  auto b = c.open(20);
  auto d = c.open(30);
  REQUIRE(c.add(a, 1, 1, 1, 40).ok());
  REQUIRE(c.add(a, 2, 1, 2, 50).ok());
  REQUIRE(c.add(b, 1, 1, 3, 60).ok());
  REQUIRE(c.add(b, 2, 1, 6, 65).ok());
  REQUIRE(c.add(a, 3, 3, 4, 70).ok());  // replies 16; a keeps one reply, b two
  REQUIRE(c.add(d, 1, 1, 5, 80).ok());
  return c;
}

}  // namespace

TEST_CASE("a restored table behaves as the one it was saved from") {
  SessionLimits limits;
  limits.sessions_max = 3;
  limits.session_timeout_ms = 1000;
  auto original = busy_counter(limits);
  auto saved = original.sessions.serialize();
  Counter restored(limits);
  restored.next_index = original.next_index;
  restored.total = original.total;

  REQUIRE(restored.sessions.restore(saved).ok());

  CHECK(restored.sessions.serialize() == saved);
  CHECK(restored.sessions.now_ms() == original.sessions.now_ms());
  CHECK(restored.sessions.last_index() == original.sessions.last_index());
  for (auto* c : {&original, &restored}) {
    CAPTURE(c == &original);
    CHECK(text(c->add(SessionId(1), 3, 3, 4, 90)) == "16");  // a duplicate
    CHECK(refused_with(c->add(SessionId(1), 1, 1, 1, 90), SessionErrc::reply_discarded));
    auto register_index = c->next_index;
    CHECK(c->open(95) == SessionId(register_index.value()));  // evicts b, the LRU
    CHECK_FALSE(c->sessions.contains(SessionId(2)));
    CHECK(c->sessions.contains(SessionId(3)));
    c->sessions.advance(c->next_index, 1081);  // d idled 1001 ms since 80
    CHECK_FALSE(c->sessions.contains(SessionId(3)));
  }
  CHECK(original.sessions.serialize() == restored.sessions.serialize());
}

TEST_CASE("damaged snapshot bytes are refused and leave the table unchanged") {
  auto c = busy_counter(SessionLimits{});
  auto saved = c.sessions.serialize();
  Counter target;
  auto before = target.sessions.serialize();
  auto refused = [&](const std::vector<std::byte>& bytes) {
    auto r = target.sessions.restore(bytes);
    return !r.ok() && !r.error().detail.empty() && target.sessions.serialize() == before;
  };

  SUBCASE("every truncation") {
    for (std::size_t n = 0; n < saved.size(); ++n) {
      CHECK(refused(std::vector<std::byte>(saved.begin(), saved.begin() + static_cast<long>(n))));
    }
  }
  SUBCASE("every single flipped bit") {
    for (std::size_t i = 0; i < saved.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        auto copy = saved;
        copy[i] ^= static_cast<std::byte>(1 << bit);
        CHECK(refused(copy));
      }
    }
  }
  SUBCASE("a wrong version, even with a matching checksum") {
    auto copy = saved;
    copy[4] = std::byte{2};
    CHECK(refused(with_crc(copy)));
  }
  SUBCASE("a session count beyond the bytes, with a matching checksum") {
    auto copy = saved;
    for (std::size_t i = 29; i < 33; ++i) copy[i] = std::byte{0xFF};
    auto r = Sessions(SessionLimits{}).restore(with_crc(copy));
    CHECK_FALSE(r.ok());
    CHECK(refused(with_crc(copy)));
  }
  // The first session's last_active_ms is at offset 49: 33 bytes of header, its id and
  // first_unacked. It was 65; the second session's is 70 and the clock is 80.
  SUBCASE("a session active after the table's clock, with a matching checksum") {
    auto copy = saved;
    REQUIRE(copy[49] == std::byte{65});
    copy[49 + 7] = std::byte{0x7F};
    CHECK(refused(with_crc(copy)));
  }
  SUBCASE("sessions out of least-recently-used order, with a matching checksum") {
    auto copy = saved;
    REQUIRE(copy[49] == std::byte{65});
    copy[49] = std::byte{75};
    CHECK(refused(with_crc(copy)));
  }
  SUBCASE("the same bytes with a matching checksum are accepted") {
    CHECK(target.sessions.restore(with_crc(saved)).ok());
  }
}

namespace {

struct RawSession {
  std::uint64_t id = 0;
  std::uint64_t first_unacked = 0;
  std::uint64_t last_active_ms = 0;
  std::uint64_t last_active_index = 0;
  std::vector<std::pair<std::uint64_t, std::string>> replies;
};

// A serialised table written field by field, as the format in src/sessions/snapshot.cpp says.
std::vector<std::byte> raw_table(std::uint64_t last_registered, std::vector<RawSession> sessions,
                                 std::size_t trailing_bytes = 0) {
  std::vector<std::byte> out;
  coraft::sessions::Writer w(out);
  for (char c : std::string("CRSN")) w.u8(static_cast<std::uint8_t>(c));
  w.u8(1);
  w.u64(1000);  // now_ms
  w.u64(100);   // last_index
  w.u64(last_registered);
  w.u32(static_cast<std::uint32_t>(sessions.size()));
  for (const auto& s : sessions) {
    w.u64(s.id);
    w.u64(s.first_unacked);
    w.u64(s.last_active_ms);
    w.u64(s.last_active_index);
    w.u32(static_cast<std::uint32_t>(s.replies.size()));
    for (const auto& [seq, reply] : s.replies) {
      w.u64(seq);
      w.u32(static_cast<std::uint32_t>(reply.size()));
      for (char c : reply) w.u8(static_cast<std::uint8_t>(c));
    }
  }
  for (std::size_t i = 0; i < trailing_bytes; ++i) w.u8(0);
  w.u32(coraft::sessions::crc32c(out));
  return out;
}

}  // namespace

TEST_CASE("a snapshot whose structure is wrong is refused even with a matching checksum") {
  RawSession a{7, 2, 10, 20, {{2, "x"}, {3, "y"}}};
  RawSession b{9, 0, 30, 40, {}};
  Sessions target;
  auto refused = [&](const std::vector<std::byte>& bytes) {
    auto r = target.restore(bytes);
    return !r.ok() && r.error().is(coraft::Errc::storage_corrupt) && target.size() == 0;
  };

  SUBCASE("the well-formed table is accepted") {
    REQUIRE(target.restore(raw_table(9, {a, b})).ok());
    CHECK(target.size() == 2);
    auto dup = target.admit(Index(100), Counter::command(SessionId(7), 3, 2, 1, 1000));
    REQUIRE(dup.ok());
    CHECK(dup->reply.chars() == "y");
  }
  SUBCASE("a session id of 0") {
    auto zero = b;
    zero.id = 0;
    CHECK(refused(raw_table(9, {a, zero})));
  }
  SUBCASE("a session newer than the last registered") {
    CHECK(refused(raw_table(8, {a, b})));
  }
  SUBCASE("a session listed twice") {
    auto again = a;
    again.last_active_ms = 50;
    CHECK(refused(raw_table(9, {a, again})));
  }
  SUBCASE("sessions out of least-recently-used order by log position") {
    auto late = a;
    late.last_active_index = 50;
    CHECK(refused(raw_table(9, {late, b})));
  }
  SUBCASE("a reply below first_unacked or past the window") {
    auto below = a;
    below.replies = {{1, "x"}};
    CHECK(refused(raw_table(9, {below, b})));
    auto past = a;
    past.replies = {{2 + SessionLimits{}.replies_per_session_max, "x"}};
    CHECK(refused(raw_table(9, {past, b})));
  }
  SUBCASE("replies out of order") {
    auto swapped = a;
    swapped.replies = {{3, "y"}, {2, "x"}};
    CHECK(refused(raw_table(9, {swapped, b})));
  }
  SUBCASE("bytes after the last session") {
    CHECK(refused(raw_table(9, {a, b}, 1)));
  }
}

TEST_CASE("a snapshot holding more than the restoring table's limits is refused") {
  auto c = busy_counter(SessionLimits{});
  auto saved = c.sessions.serialize();
  SessionLimits fewer_sessions;
  fewer_sessions.sessions_max = 2;
  SessionLimits smaller_window;
  smaller_window.replies_per_session_max = 1;
  SessionLimits smaller_replies;
  smaller_replies.reply_bytes_max = 1;

  for (const auto& limits : {fewer_sessions, smaller_window, smaller_replies}) {
    Sessions target(limits);
    auto r = target.restore(saved);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is(coraft::Errc::invalid_argument));
    CHECK(target.size() == 0);
  }
}

TEST_CASE("two tables fed the same entries serialise identically") {
  SessionLimits limits;
  limits.sessions_max = 8;
  limits.replies_per_session_max = 4;
  limits.session_timeout_ms = 500;
  Counter a(limits);
  Counter b(limits);
  Counter late(limits);  // joins halfway from a snapshot of a
  std::mt19937_64 rng(20240611);
  std::vector<SessionId> known;
  std::uint64_t now = 0;
  int refusals = 0;
  for (int step = 0; step < 2000; ++step) {
    now += rng() % 40;
    Bytes entry;
    if (known.empty() || rng() % 10 == 0) {
      SessionEnvelope e;
      e.kind = EnvelopeKind::register_session;
      e.time_ms = now;
      entry = coraft::encode_envelope(e);
    } else {
      auto s = known[rng() % known.size()];
      std::uint64_t seq = 1 + rng() % 12;
      std::uint64_t first = 1 + rng() % seq;
      entry = coraft::encode_envelope(Counter::command(s, seq, first, 1, now - rng() % 30));
    }
    auto ra = a.entry(entry);
    auto rb = b.entry(entry);
    REQUIRE(ra.ok() == rb.ok());
    if (!ra.ok()) ++refusals;
    if (ra.ok() && entry[1] == std::byte{1}) known.push_back(*Sessions::decode_session_id(*ra));
    if (step == 1000) {
      REQUIRE(late.sessions.restore(a.sessions.serialize()).ok());
      late.next_index = a.next_index;
      late.total = a.total;
    } else if (step > 1000) {
      auto rl = late.entry(entry);
      REQUIRE(rl.ok() == ra.ok());
      if (ra.ok()) CHECK(rl->chars() == ra->chars());
    }
  }

  CHECK(refusals > 0);
  CHECK(a.applied > 100);
  CHECK(a.sessions.serialize() == b.sessions.serialize());
  CHECK(a.sessions.serialize() == late.sessions.serialize());
  CHECK(a.total == late.total);
}
