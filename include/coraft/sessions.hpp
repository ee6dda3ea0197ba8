// Client sessions that make a replicated state machine apply each client command exactly once,
// even when the client retries it after a timeout or a leader change (Raft thesis §6.3).
//
// How a service uses them:
//  1. A client proposes a register envelope. When it is applied, the session's id is the log
//     index of that entry (so every replica assigns the same id), and the reply tells the client.
//  2. Each later command travels in a command envelope: the session id, a sequence number the
//     client counts up from 1, the lowest sequence number whose reply the client has not yet
//     seen (`first_unacked`), the time the server that proposed it read from its clock, and the
//     service's own payload.
//  3. The state machine hands each applied envelope to Sessions::admit(). `apply` means the
//     command is new: apply the payload, then give its reply to record(). `duplicate` means
//     it was applied before: answer with the saved reply and change nothing. An error means
//     the command was refused and did not take effect (see SessionErrc).
//  4. save() and restore() of the state machine include serialize() and restore() of the table.
//
// Determinism: everything the table decides depends only on the entries applied, in log order,
// never on a server's clock. Time comes from the envelopes (the table's clock is the largest
// `time_ms` seen so far, so a new leader whose clock lags cannot move it back), and position
// comes from the entries' indexes. Replicas applying the same log hold identical tables and
// serialise them to identical bytes. A proposing server whose clock runs ahead expires sessions
// early (all replicas alike), so keep the servers' clocks roughly in step.
//
// Bounds: at most `sessions_max` sessions (registering one more expires the least recently used
// first), at most `replies_per_session_max` saved replies per session (a command further ahead
// of the client's first_unacked is refused), each reply at most `reply_bytes_max` bytes. The
// saved replies therefore never exceed the product of the three; a service with large replies
// lowers them to fit its memory.
//
// Threads: a Sessions is not thread-safe. Use it from the state machine's apply thread only
// (apply(), save() and restore() never overlap; see state_machine.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <coraft/bytes.hpp>
#include <coraft/result.hpp>
#include <coraft/types.hpp>

namespace coraft {

// A session's id: the log index of the entry that registered it. 0 means "no session".
using SessionId = Strong<struct SessionIdTag, false>;

// Why Sessions refused a command. Each is a definite answer: this attempt did not take effect,
// and the table will never apply it later. What that says about earlier attempts of the same
// command is noted per code.
enum class SessionErrc {
  // The session is unknown: it expired, was closed, was evicted to make room for a newer one,
  // or was never registered. This attempt did not take effect, but an earlier attempt may have
  // before the session ended, and nothing can tell any more: the client must treat the outcome
  // of its commands still unanswered as unknown, then register a new session (thesis §6.3).
  session_expired = 1,
  // seq is replies_per_session_max or more past the client's first_unacked. The command has
  // never taken effect; wait for replies to earlier commands, then send it again.
  window_exceeded = 2,
  // seq is below a first_unacked the client sent earlier: the client said it had seen this
  // command's reply, so the command took effect once and its reply is no longer kept.
  reply_discarded = 3,
  // The bytes are not a well-formed envelope.
  malformed_envelope = 4,
};

[[nodiscard]] const std::error_category& session_error_category() noexcept;
[[nodiscard]] std::error_code make_error_code(SessionErrc e) noexcept;

}  // namespace coraft

template <>
struct std::is_error_code_enum<coraft::SessionErrc> : std::true_type {};

namespace coraft {

struct SessionLimits {
  // Live sessions at most; registering another first expires the least recently used one.
  std::uint32_t sessions_max = 1024;
  // Saved replies per session at most: commands with seq >= first_unacked + this are refused.
  std::uint32_t replies_per_session_max = 64;
  // A reply given to record() is at most this long.
  std::uint32_t reply_bytes_max = 64 * 1024;
  // A session idle for more than this long, in envelope time, expires. 0: never by time.
  std::uint64_t session_timeout_ms = 60 * 60 * 1000;
  // A session idle for more than this many log entries expires. 0: never by position.
  std::uint64_t session_idle_entries_max = 0;

  // The largest values the table accepts for the three counts above (what a restore() may
  // allocate follows from them).
  static constexpr std::uint32_t sessions_max_max = 1u << 20;
  static constexpr std::uint32_t replies_per_session_max_max = 1u << 16;
  static constexpr std::uint32_t reply_bytes_max_max = 64u << 20;
};

// What an envelope asks for.
enum class EnvelopeKind : std::uint8_t {
  register_session = 1,  // open a session; id, seq and first_unacked are 0, payload empty
  command = 2,           // a service command within a session
  close_session = 3,     // end a session; seq and first_unacked are 0, payload empty
};

// The envelope around a service command (or a session's register or close request).
struct SessionEnvelope {
  EnvelopeKind kind = EnvelopeKind::command;
  SessionId session;
  std::uint64_t seq = 0;
  // The client has seen the replies to every seq below this one. Invariant: <= seq.
  std::uint64_t first_unacked = 0;
  // Milliseconds on the proposing server's clock (any epoch, the same on every server).
  std::uint64_t time_ms = 0;
  Bytes payload;
};

// The encoded size of an envelope: a fixed header, then the payload.
inline constexpr std::size_t envelope_header_bytes = 38;
// The largest payload encode_envelope() writes and decode_envelope() accepts.
inline constexpr std::size_t envelope_payload_bytes_max = 64u << 20;

// Encodes `e`. Precondition: e.payload.size() <= envelope_payload_bytes_max.
[[nodiscard]] Bytes encode_envelope(const SessionEnvelope& e);
// Decodes an envelope; its payload is a slice of `bytes` (nothing is copied). Refuses, with
// SessionErrc::malformed_envelope and a detail, anything encode_envelope() would not write.
[[nodiscard]] Result<SessionEnvelope> decode_envelope(const Bytes& bytes);

// The answer to admit() for a command within a live session.
struct Admission {
  enum class Action : std::uint8_t {
    apply,      // a new command: apply the payload, then call record() with its reply
    duplicate,  // applied before: answer with `reply`, do not apply again
  };
  Action action = Action::apply;
  Bytes reply;  // the saved reply, for duplicate
};

class Sessions {
 public:
  // Precondition: 1 <= sessions_max <= sessions_max_max, 1 <= replies_per_session_max <=
  // replies_per_session_max_max, reply_bytes_max <= reply_bytes_max_max.
  explicit Sessions(SessionLimits limits = {});
  // A moved-from Sessions may only be destroyed or assigned to.
  ~Sessions();
  Sessions(Sessions&&) noexcept;
  Sessions& operator=(Sessions&&) noexcept;

  // Opens a session for the register envelope applied at `index`; its id is `index`. When the
  // table is full, the least recently used session expires first.
  // Precondition: index is not less than any index given to this table before, and greater than
  // that of every session registered before (one register per entry).
  SessionId register_session(Index index, std::uint64_t time_ms);

  // Ends a session; a later command in it gets session_expired. Closing an unknown session is
  // refused with session_expired.
  // Precondition: index is not less than any index given to this table before.
  Result<void> close_session(Index index, const SessionEnvelope& e);

  // Decides what to do with the command envelope `e` applied at `index`: see Admission. A
  // refusal's error is a SessionErrc; the table has not recorded the command.
  // Precondition: e.kind == command; no record() is owed for an earlier admit(); index is not
  // less than any index given to this table before.
  Result<Admission> admit(Index index, const SessionEnvelope& e);

  // Saves the reply of the command the last admit() answered with `apply`.
  // Precondition: that admit() has no record() yet; reply.size() <= reply_bytes_max.
  void record(Bytes reply);

  // Advances the table's clock and log position for an entry that carries no envelope (or a
  // malformed one), expiring the sessions that have been idle too long. admit(),
  // register_session() and close_session() do this themselves.
  // Precondition: index is not less than any index given to this table before.
  void advance(Index index, std::uint64_t time_ms);

  // The whole protocol for one applied entry: decodes it, registers, closes or admits, applies
  // a new command with `apply_payload` (a callable taking the payload as `const Bytes&` and
  // returning its reply as Bytes) and records the reply. Returns the reply to give the client:
  // the new session's id for a register (see encode_session_id), empty for a close.
  template <class ApplyPayload>
  Result<Bytes> apply(Index index, const Bytes& entry, ApplyPayload&& apply_payload) {
    return apply(index, decode_envelope(entry), std::forward<ApplyPayload>(apply_payload));
  }
  // The same for an entry the caller has decoded already (decode_envelope's result, error
  // included), for a state machine that looks at the envelope itself first.
  template <class ApplyPayload>
  Result<Bytes> apply(Index index, Result<SessionEnvelope> envelope, ApplyPayload&& apply_payload) {
    if (!envelope) {
      advance(index, 0);
      return std::move(envelope).error();
    }
    switch (envelope->kind) {
      case EnvelopeKind::register_session:
        return encode_session_id(register_session(index, envelope->time_ms));
      case EnvelopeKind::close_session: {
        auto closed = close_session(index, *envelope);
        if (!closed) return closed.error();
        return Bytes();
      }
      case EnvelopeKind::command: break;
    }
    auto admission = admit(index, *envelope);
    if (!admission) return std::move(admission).error();
    if (admission->action == Admission::Action::duplicate) return std::move(admission->reply);
    Bytes reply = apply_payload(std::as_const(envelope->payload));
    record(reply);
    return reply;
  }

  // The reply to a register: the session id in 8 little-endian bytes, and its inverse.
  [[nodiscard]] static Bytes encode_session_id(SessionId id);
  [[nodiscard]] static Result<SessionId> decode_session_id(const Bytes& reply);

  // The table as bytes, for a snapshot: a version byte, the contents and a CRC-32C.
  // Precondition: no record() is owed.
  [[nodiscard]] std::vector<std::byte> serialize() const;
  // Replaces the table with one serialize() wrote. Refuses bytes that are damaged or that hold
  // more than this table's limits allow (storage_corrupt or invalid_argument, with a detail),
  // leaving the table unchanged.
  Result<void> restore(std::span<const std::byte> bytes);

  [[nodiscard]] std::size_t size() const noexcept;
  [[nodiscard]] bool contains(SessionId id) const noexcept;
  // The largest envelope time seen, and the last index given to the table.
  [[nodiscard]] std::uint64_t now_ms() const noexcept;
  [[nodiscard]] Index last_index() const noexcept;
  [[nodiscard]] const SessionLimits& limits() const noexcept;

  // The table's state, defined inside the library (incomplete here).
  struct Table;

 private:
  std::unique_ptr<Table> table_;
};

}  // namespace coraft
