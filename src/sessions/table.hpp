// The state behind coraft::Sessions, shared by the table's logic and its serialisation.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <unordered_map>

#include <coraft/sessions.hpp>

namespace coraft {

struct SessionState {
  SessionId id;
  // Replies to seqs below this were seen by the client and are dropped.
  std::uint64_t first_unacked = 0;
  // When the session was last used, in envelope time and log position.
  std::uint64_t last_active_ms = 0;
  Index last_active_index;
  // Invariant: every key k satisfies first_unacked <= k < first_unacked + replies_per_session_max.
  std::map<std::uint64_t, Bytes> replies;
};

struct Sessions::Table {
  explicit Table(const SessionLimits& l) : limits(l) {}

  SessionLimits limits;
  // Least recently used first. Invariant: last_active_ms and last_active_index never decrease
  // from front to back, so the sessions that have idled longest are always at the front.
  std::list<SessionState> lru;
  // Invariant: holds exactly the ids in `lru`, each mapped to its element.
  std::unordered_map<SessionId, std::list<SessionState>::iterator> by_id;
  std::uint64_t now_ms = 0;
  Index last_index;
  // The id of the newest session registered (it may have expired since).
  SessionId last_registered;
  // The command admit() last answered with `apply`, until record() saves its reply.
  struct Owed {
    std::list<SessionState>::iterator session;
    std::uint64_t seq = 0;
  };
  std::optional<Owed> owed;

  // Checks the invariants above (serialisation and tests call it).
  void check_invariants() const;
};

}  // namespace coraft
