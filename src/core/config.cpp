#include "core/config.hpp"

#include <algorithm>

namespace coraft::core {

Result<void> Config::validate() const {
  auto bad = [](const char* what) { return Error(Errc::invalid_argument, what); };
  if (id == no_node) return bad("config: id must not be 0");
  if (std::find(voters.begin(), voters.end(), id) == voters.end()) {
    return bad("config: voters must include id");
  }
  std::vector<NodeId> sorted = voters;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return bad("config: voters has a duplicate");
  }
  if (sorted.front() == no_node) return bad("config: voters names node 0");
  if (heartbeat_ticks == 0 || heartbeat_ticks >= election_ticks) {
    return bad("config: need 0 < heartbeat_ticks < election_ticks");
  }
  if (election_ticks > (1u << 30)) return bad("config: election_ticks is too large");
  if (inflight_msgs_max == 0 || inflight_bytes_max == 0) {
    return bad("config: inflight limits must be positive");
  }
  if (append_bytes_max == 0 || entry_bytes_max == 0) {
    return bad("config: byte limits must be positive");
  }
  if (pending_proposals_max == 0 || apply_entries_max == 0 || replicate_stall_ticks == 0) {
    return bad(
        "config: pending_proposals_max, apply_entries_max and replicate_stall_ticks must "
        "be positive");
  }
  return {};
}

}  // namespace coraft::core
