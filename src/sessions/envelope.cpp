// The command envelope's encoding, the session id reply and the sessions error category.
//
// Envelope layout, little-endian, 38 bytes of header then the payload:
//   u8  format   1
//   u8  kind     EnvelopeKind
//   u64 session  0 for register, non-zero otherwise
//   u64 seq      0 for register and close, >= 1 for a command
//   u64 first_unacked   <= seq
//   u64 time_ms
//   u32 payload_length  == the bytes that follow; 0 for register and close
//   payload
#include <array>
#include <string>

#include <coraft/sessions.hpp>
#include <coraft/text.hpp>

#include "sessions/wire.hpp"

namespace coraft {
namespace {

constexpr std::uint8_t envelope_format = 1;

class SessionCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "coraft.sessions"; }
  std::string message(int ev) const override {
    switch (static_cast<SessionErrc>(ev)) {
      case SessionErrc::session_expired:
        return "session expired: it timed out, was closed or evicted, or never existed";
      case SessionErrc::window_exceeded:
        return "too many commands ahead of the first unacknowledged one";
      case SessionErrc::reply_discarded:
        return "the command was applied earlier and its reply is no longer kept";
      case SessionErrc::malformed_envelope: return "malformed session envelope";
    }
    return detail::concat("unknown sessions error ", ev);
  }
};

Error malformed(std::string detail) {
  return Error(make_error_code(SessionErrc::malformed_envelope), std::move(detail));
}

// Why `e` is not something encode_envelope() writes, or an empty string when it is.
std::string envelope_problem(const SessionEnvelope& e) {
  switch (e.kind) {
    case EnvelopeKind::register_session:
      if (e.session != SessionId() || e.seq != 0 || e.first_unacked != 0 || !e.payload.empty()) {
        return "a register envelope carries no session, seq, first_unacked or payload";
      }
      return {};
    case EnvelopeKind::close_session:
      if (e.session == SessionId()) return "a close envelope names no session";
      if (e.seq != 0 || e.first_unacked != 0 || !e.payload.empty()) {
        return "a close envelope carries no seq, first_unacked or payload";
      }
      return {};
    case EnvelopeKind::command:
      if (e.session == SessionId()) return "a command envelope names no session";
      if (e.seq == 0) return "a command's seq starts at 1";
      if (e.first_unacked > e.seq) {
        return detail::concat("first_unacked ", e.first_unacked, " is past seq ", e.seq);
      }
      if (e.payload.size() > envelope_payload_bytes_max) {
        return detail::concat("payload of ", e.payload.size(), " bytes exceeds ",
                              envelope_payload_bytes_max);
      }
      return {};
  }
  return detail::concat("unknown envelope kind ", static_cast<unsigned>(e.kind));
}

}  // namespace

const std::error_category& session_error_category() noexcept {
  static const SessionCategory category;
  return category;
}

std::error_code make_error_code(SessionErrc e) noexcept {
  return {static_cast<int>(e), session_error_category()};
}

Bytes encode_envelope(const SessionEnvelope& e) {
  auto problem = envelope_problem(e);
  CORAFT_REQUIRE(problem.empty(), problem);
  std::vector<std::byte> out;
  out.reserve(envelope_header_bytes + e.payload.size());
  sessions::Writer w(out);
  w.u8(envelope_format);
  w.u8(static_cast<std::uint8_t>(e.kind));
  w.u64(e.session.value());
  w.u64(e.seq);
  w.u64(e.first_unacked);
  w.u64(e.time_ms);
  w.u32(static_cast<std::uint32_t>(e.payload.size()));
  w.bytes(e.payload.span());
  CORAFT_ASSERT(out.size() == envelope_header_bytes + e.payload.size(), out.size());
  return Bytes::adopt(std::move(out));
}

Result<SessionEnvelope> decode_envelope(const Bytes& bytes) {
  if (bytes.size() < envelope_header_bytes) {
    return malformed(detail::concat(bytes.size(), " bytes is shorter than the ",
                                    envelope_header_bytes, "-byte header"));
  }
  sessions::Reader r(bytes.span());
  auto format = r.u8();
  if (format != envelope_format) return malformed(detail::concat("unknown format ", format));
  SessionEnvelope e;
  auto kind = r.u8();
  e.kind = static_cast<EnvelopeKind>(kind);
  e.session = SessionId(r.u64());
  e.seq = r.u64();
  e.first_unacked = r.u64();
  e.time_ms = r.u64();
  std::uint64_t length = r.u32();
  CORAFT_ASSERT(r.ok() && r.offset() == envelope_header_bytes, r.offset());
  if (length != r.remaining()) {
    return malformed(detail::concat("payload length ", length, " but ", r.remaining(),
                                    " bytes follow the header"));
  }
  e.payload = bytes.slice(envelope_header_bytes);
  if (auto problem = envelope_problem(e); !problem.empty()) return malformed(std::move(problem));
  return e;
}

Bytes Sessions::encode_session_id(SessionId id) {
  std::vector<std::byte> out;
  sessions::Writer(out).u64(id.value());
  return Bytes::adopt(std::move(out));
}

Result<SessionId> Sessions::decode_session_id(const Bytes& reply) {
  sessions::Reader r(reply.span());
  SessionId id(r.u64());
  if (!r.ok() || r.remaining() != 0 || id == SessionId()) {
    return malformed(
        detail::concat("a session id reply is 8 bytes, non-zero; got ", reply.size(), " bytes"));
  }
  return id;
}

}  // namespace coraft
