// A whole simulated cluster of protocol cores over a simulated network, disk and clock, driven
// by one seed: the heart of coraft-sim.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace coraft::sim {

enum FaultBit : std::uint32_t {
  fault_drop = 1u << 0,
  fault_dup = 1u << 1,
  fault_reorder = 1u << 2,
  fault_delay = 1u << 3,
  // Network partitions; half of them cut off one leader after another in the shape of thesis
  // Figure 3.7 (World::orphan_leaders). With five servers or more, a quarter instead hold a
  // follower's output while AppendEntries of an old and a new leader reach it
  // (World::hold_follower), and a quarter stall a follower's disk through three leaderships
  // (World::stall_disk).
  fault_partition = 1u << 4,
  // Crashes that lose what is not durable, at random or at the most dangerous moments (writing
  // a vote, just after winning an election); a quarter of them make every follower forget its
  // next vote (World::forget_votes). On seeds whose messages carry one entry each, a third of
  // the others cut the leader off and restart it with a stale suffix (World::stale_leader).
  fault_crash = 1u << 5,
  fault_torn = 1u << 6,
  // Leadership transfers to random voters at random times; with reconfig, also right after a
  // membership change, and at the tick a learner's automatic promotion falls due.
  fault_transfer = 1u << 7,
  // Client reads use ReadIndex (and, on some seeds, leases) instead of the log; reads sent to
  // followers are forwarded to the leader.
  fault_reads = 1u << 8,
  // Servers snapshot their state machines and compact their logs at random times; lagging
  // followers then receive snapshots.
  fault_snapshot = 1u << 9,
  // Membership changes: voters removed and added back (through joint consensus when several
  // change), servers kept as learners, some of them promoted automatically. With crash or
  // partition faults, half the joint changes lose their leader (crashed or cut off) as they
  // commit (World::cut_after_joint).
  fault_reconfig = 1u << 10,
  // Node faults, for --target node only (the core target ignores them): a write that takes
  // seconds; a failed write, after which the node must stop and may be started again from what
  // its disk holds; a state machine that takes simulated time to apply a batch.
  fault_disk_stall = 1u << 11,
  fault_disk_error = 1u << 12,
  fault_slow_apply = 1u << 13,
  // Node target only: the leader holds commit-only AppendEntries back (commit_notice_delay
  // drawn per seed, from 0 to 50 ms) for the next message to carry their commit index.
  fault_notices = 1u << 14,
  faults_all = (1u << 15) - 1,
};

// "all", "none" or a comma-separated list of fault names. Returns false and sets `error` on an
// unknown name.
bool parse_faults(std::string_view text, std::uint32_t& mask, std::string& error);
// The canonical text form of a mask, as accepted by parse_faults.
std::string faults_text(std::uint32_t mask);

struct SimOptions {
  std::uint32_t nodes = 3;
  std::uint32_t faults = faults_all;
  // Print every event of the run to `trace`.
  std::FILE* trace = nullptr;
};

struct SeedResult {
  bool ok = true;
  std::string failure;
  std::uint64_t ops = 0;  // client operations completed
  std::uint64_t ops_invoked = 0;
  std::uint32_t faults = 0;  // faults injected
  std::uint64_t sim_us = 0;  // simulated time covered
  std::uint64_t committed = 0;
  std::uint64_t digest = 0;  // of the whole event trace
};

// Runs one seed: a safety phase with faults, then healing and a liveness phase.
SeedResult run_seed(std::uint64_t seed, const SimOptions& options);
// The same for real nodes (the node layer and its public API) over the simulated disk, network
// and clock (node_sim.cpp).
SeedResult run_node_seed(std::uint64_t seed, const SimOptions& options);

}  // namespace coraft::sim
