#include "core/config.hpp"

#include <algorithm>

#include <coraft/membership.hpp>

namespace coraft::core {

Result<void> Config::validate() const {
  auto bad = [](const char* what) { return Error(Errc::invalid_argument, what); };
  if (id == no_node) return bad("config: id must not be 0");
  auto listed = [&](const std::vector<NodeId>& v) {
    return std::find(v.begin(), v.end(), id) != v.end();
  };
  if (!(voters.empty() && learners.empty()) && !listed(voters) && !listed(learners)) {
    return bad("config: voters or learners must include id");
  }
  auto configuration = Configuration::make(voters, {}, learners);
  if (!configuration) return bad("config: voters and learners overlap or name node 0");
  if (configuration->voters.size() != voters.size() ||
      configuration->learners.size() != learners.size()) {
    return bad("config: voters or learners has a duplicate");
  }
  if (!learners.empty() && voters.empty()) return bad("config: learners without voters");
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
  if (append_entries_max == 0) return bad("config: append_entries_max must be positive");
  if (lease_reads && (!check_quorum || lease_clock_drift_ticks == 0 ||
                      lease_clock_drift_ticks >= election_ticks - 1)) {
    return bad(
        "config: lease_reads needs check_quorum and 0 < lease_clock_drift_ticks < "
        "election_ticks - 1");
  }
  if (pending_bytes_max < entry_bytes_max) {
    return bad("config: pending_bytes_max must be at least entry_bytes_max");
  }
  if (reads_pending_max == 0) return bad("config: reads_pending_max must be positive");
  if (snapshot_timeout_ticks == 0) return bad("config: snapshot_timeout_ticks must be positive");
  if (pending_proposals_max == 0 || apply_entries_max == 0 || replicate_stall_ticks == 0) {
    return bad(
        "config: pending_proposals_max, apply_entries_max and replicate_stall_ticks must "
        "be positive");
  }
  return {};
}

}  // namespace coraft::core
