// The session table's rules: registration, admission of commands, replies and expiry.
#include <algorithm>
#include <string>

#include <coraft/sessions.hpp>
#include <coraft/text.hpp>

#include "sessions/table.hpp"

namespace coraft {
namespace {

Error refused(SessionErrc code, std::string detail) {
  return Error(make_error_code(code), std::move(detail));
}

Error unknown_session(SessionId id) {
  return refused(SessionErrc::session_expired,
                 detail::concat("session ", id, " is not open (expired, closed or never opened)"));
}

// After every change in debug builds: the walk costs time in proportion to the saved replies.
void debug_check(const Sessions::Table& t) {
#ifndef NDEBUG
  t.check_invariants();
#else
  (void)t;
#endif
}

}  // namespace

void Sessions::Table::check_invariants() const {
  CORAFT_ASSERT(lru.size() == by_id.size(), lru.size(), by_id.size());
  CORAFT_ASSERT(lru.size() <= limits.sessions_max, lru.size());
  const SessionState* previous = nullptr;
  for (const auto& s : lru) {
    auto found = by_id.find(s.id);
    CORAFT_ASSERT(found != by_id.end() && &*found->second == &s, s.id);
    CORAFT_ASSERT(s.id != SessionId() && s.id <= last_registered, s.id);
    CORAFT_ASSERT(s.last_active_ms <= now_ms && s.last_active_index <= last_index, s.id);
    if (previous != nullptr) {
      CORAFT_ASSERT(previous->last_active_ms <= s.last_active_ms, s.id);
      CORAFT_ASSERT(previous->last_active_index <= s.last_active_index, s.id);
    }
    CORAFT_ASSERT(s.replies.size() <= limits.replies_per_session_max, s.id);
    for (const auto& [seq, reply] : s.replies) {
      CORAFT_ASSERT(seq >= s.first_unacked, s.id, seq);
      CORAFT_ASSERT(seq - s.first_unacked < limits.replies_per_session_max, s.id, seq);
      CORAFT_ASSERT(reply.size() <= limits.reply_bytes_max, s.id, seq);
    }
    previous = &s;
  }
}

Sessions::Sessions(SessionLimits limits) : table_(std::make_unique<Table>(limits)) {
  CORAFT_REQUIRE(limits.sessions_max >= 1 && limits.sessions_max <= SessionLimits::sessions_max_max,
                 limits.sessions_max);
  CORAFT_REQUIRE(limits.replies_per_session_max >= 1 &&
                     limits.replies_per_session_max <= SessionLimits::replies_per_session_max_max,
                 limits.replies_per_session_max);
  CORAFT_REQUIRE(limits.reply_bytes_max <= SessionLimits::reply_bytes_max_max,
                 limits.reply_bytes_max);
}

Sessions::~Sessions() = default;
Sessions::Sessions(Sessions&&) noexcept = default;
Sessions& Sessions::operator=(Sessions&&) noexcept = default;

void Sessions::advance(Index index, std::uint64_t time_ms) {
  auto& t = *table_;
  CORAFT_REQUIRE(index >= t.last_index, "log indexes given to Sessions went back", index,
                 t.last_index);
  t.last_index = index;
  t.now_ms = std::max(t.now_ms, time_ms);
  const auto& l = t.limits;
  // The front has idled longest (see Table::lru), so expiry stops at the first live session.
  while (!t.lru.empty()) {
    const auto& s = t.lru.front();
    bool idle_by_time =
        l.session_timeout_ms != 0 && t.now_ms - s.last_active_ms > l.session_timeout_ms;
    bool idle_by_position = l.session_idle_entries_max != 0 &&
                            t.last_index - s.last_active_index > l.session_idle_entries_max;
    if (!idle_by_time && !idle_by_position) break;
    t.by_id.erase(s.id);
    t.lru.pop_front();
  }
}

SessionId Sessions::register_session(Index index, std::uint64_t time_ms) {
  auto& t = *table_;
  CORAFT_REQUIRE(!t.owed, "record() is owed for an earlier admit()");
  CORAFT_REQUIRE(index.value() > t.last_registered.value(),
                 "a session was already registered at or after this index", index,
                 t.last_registered);
  advance(index, time_ms);
  if (t.lru.size() >= t.limits.sessions_max) {
    t.by_id.erase(t.lru.front().id);
    t.lru.pop_front();
  }
  SessionId id(index.value());
  t.last_registered = id;
  SessionState s;
  s.id = id;
  s.last_active_ms = t.now_ms;
  s.last_active_index = t.last_index;
  t.lru.push_back(std::move(s));
  t.by_id.emplace(id, std::prev(t.lru.end()));
  debug_check(t);
  return id;
}

Result<void> Sessions::close_session(Index index, const SessionEnvelope& e) {
  auto& t = *table_;
  CORAFT_REQUIRE(e.kind == EnvelopeKind::close_session, e.kind);
  CORAFT_REQUIRE(!t.owed, "record() is owed for an earlier admit()");
  advance(index, e.time_ms);
  auto found = t.by_id.find(e.session);
  if (found == t.by_id.end()) return unknown_session(e.session);
  t.lru.erase(found->second);
  t.by_id.erase(found);
  debug_check(t);
  return {};
}

Result<Admission> Sessions::admit(Index index, const SessionEnvelope& e) {
  auto& t = *table_;
  CORAFT_REQUIRE(e.kind == EnvelopeKind::command, e.kind);
  CORAFT_REQUIRE(!t.owed, "record() is owed for an earlier admit()");
  advance(index, e.time_ms);
  if (e.seq == 0 || e.first_unacked > e.seq) {
    return refused(SessionErrc::malformed_envelope,
                   detail::concat("seq ", e.seq, " with first_unacked ", e.first_unacked));
  }
  auto found = t.by_id.find(e.session);
  if (found == t.by_id.end()) return unknown_session(e.session);

  // Any command from the client, even one refused below, shows the session is in use.
  auto it = found->second;
  t.lru.splice(t.lru.end(), t.lru, it);
  auto& s = *it;
  s.last_active_ms = t.now_ms;
  s.last_active_index = t.last_index;

  // The client has seen every reply below first_unacked: they are dropped (thesis §6.3).
  if (e.first_unacked > s.first_unacked) {
    s.first_unacked = e.first_unacked;
    s.replies.erase(s.replies.begin(), s.replies.lower_bound(s.first_unacked));
  }
  debug_check(t);
  if (e.seq < s.first_unacked) {
    return refused(SessionErrc::reply_discarded,
                   detail::concat("session ", s.id, " seq ", e.seq, " is below first_unacked ",
                                  s.first_unacked));
  }
  if (auto saved = s.replies.find(e.seq); saved != s.replies.end()) {
    return Admission{Admission::Action::duplicate, saved->second};
  }
  if (e.seq - s.first_unacked >= t.limits.replies_per_session_max) {
    return refused(SessionErrc::window_exceeded,
                   detail::concat("session ", s.id, " seq ", e.seq, " is ", e.seq - s.first_unacked,
                                  " past first_unacked ", s.first_unacked, "; at most ",
                                  t.limits.replies_per_session_max, " replies are kept"));
  }
  t.owed = Table::Owed{it, e.seq};
  return Admission{Admission::Action::apply, Bytes()};
}

void Sessions::record(Bytes reply) {
  auto& t = *table_;
  CORAFT_REQUIRE(t.owed, "record() without an admit() that answered apply");
  CORAFT_REQUIRE(reply.size() <= t.limits.reply_bytes_max, "reply exceeds reply_bytes_max",
                 reply.size(), t.limits.reply_bytes_max);
  auto [session, seq] = *t.owed;
  t.owed.reset();
  bool inserted = session->replies.emplace(seq, std::move(reply)).second;
  CORAFT_ASSERT(inserted, session->id, seq);
  debug_check(t);
}

std::size_t Sessions::size() const noexcept {
  return table_->lru.size();
}

bool Sessions::contains(SessionId id) const noexcept {
  return table_->by_id.contains(id);
}

std::uint64_t Sessions::now_ms() const noexcept {
  return table_->now_ms;
}

Index Sessions::last_index() const noexcept {
  return table_->last_index;
}

const SessionLimits& Sessions::limits() const noexcept {
  return table_->limits;
}

}  // namespace coraft
