// A log entry: the unit the protocol replicates, the log stores and the state machine applies.
#pragma once

#include <cstdint>

#include <coraft/bytes.hpp>
#include <coraft/types.hpp>

namespace coraft {

enum class EntryType : std::uint8_t {
  // A user's command, applied by the StateMachine.
  normal = 0,
  // Appended by a new leader at the start of its term (thesis §6.4); carries no payload.
  noop = 1,
  // A membership change; the payload is an encoded Configuration (see membership.hpp).
  config = 2,
};

// Invariant: index >= 1 and term >= 1 for every entry in a log.
struct Entry {
  Index index;
  Term term;
  EntryType type = EntryType::normal;
  Bytes payload;
};

}  // namespace coraft
