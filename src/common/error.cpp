#include <coraft/error.hpp>
#include <coraft/text.hpp>

namespace coraft {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "coraft"; }
  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::not_leader: return "not the leader";
      case Errc::overloaded: return "overloaded: a configured limit is reached";
      case Errc::too_large: return "too large: a configured size limit is exceeded";
      case Errc::shutting_down: return "the node is shutting down";
      case Errc::timeout: return "timed out";
      case Errc::cancelled: return "cancelled";
      case Errc::invalid_argument: return "invalid argument";
      case Errc::transfer_in_progress: return "leadership transfer in progress";
      case Errc::config_change_pending: return "a membership change is already pending";
      case Errc::dropped: return "dropped by a leader change before it committed";
      case Errc::outcome_unknown:
        return "outcome unknown: leadership was lost after the entry was appended";
      case Errc::storage_io: return "storage I/O error";
      case Errc::storage_corrupt: return "storage is corrupt";
      case Errc::disk_full: return "disk full";
      case Errc::protocol_error: return "peer protocol error";
      case Errc::peer_rejected: return "peer rejected";
      case Errc::connection_closed: return "connection closed";
    }
    return "unknown coraft error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

bool Error::definite() const noexcept {
  return !(is(Errc::timeout) || is(Errc::outcome_unknown) || is(Errc::cancelled));
}

bool Error::retryable() const noexcept {
  for (Errc e :
       {Errc::not_leader, Errc::overloaded, Errc::transfer_in_progress, Errc::config_change_pending,
        Errc::disk_full, Errc::timeout, Errc::outcome_unknown, Errc::dropped}) {
    if (is(e)) return true;
  }
  return false;
}

std::string Error::message() const {
  detail::Text t;
  t.add(code.message());
  if (is(Errc::not_leader)) {
    if (leader_hint == no_node) {
      t.add(" (leader unknown)");
    } else {
      t.add(" (leader is node ").add(leader_hint);
      if (!leader_address.empty()) t.add(" at ").add(leader_address);
      t.add(')');
    }
  }
  if (!detail.empty()) t.add(": ").add(detail);
  return t.take();
}

}  // namespace coraft
