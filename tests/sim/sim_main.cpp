// coraft-sim: runs seeded cluster simulations and reports any broken safety or liveness rule.
//
//   coraft-sim [--target core|node] --seeds N [--first-seed S] [--nodes 3|5|7]
//              [--faults LIST|all|none]
//   coraft-sim [--target core|node] --seed S [--nodes 3|5|7] [--faults ...] [--trace]
//
// --target core (the default) simulates protocol cores (world.cpp, faults.cpp); --target node
// runs real nodes, the node layer and its public API, over a simulated disk, network and clock
// (node_sim.cpp).
//
// Node-layer mutations the node target is known to catch. Each was planted by hand in
// src/node (and reverted) and counted with `coraft-sim --target node --faults all` over 600
// seeds of 3 nodes (from 1), 200 of 5 (from 100001) and 100 of 7 (from 200001), release, with
// the simulator as it is now (snapshots, tight queue limits, joint changes, ordered links). A
// node seed prints the same bytes in the release (GCC) and the ASan + UBSan (Clang) builds
// (compared over 100 seeds each of 3, 5 and 7 nodes):
//  1. Messages that must wait for the durable write sent at once (handle() sending
//     messages_after_persist with `messages`): 600 of 600, 200 of 200, 100 of 100 (first seeds
//     1, 100001, 200001), by Checker::on_send ("vote durability": a candidate asks for votes
//     before its own vote is stored).
//  2. A proposal answered before it is applied (handle() completing the waiters of committed
//     entries, with an empty reply): 600, 200, 100 (first seeds 1, 100001, 200001), by the
//     reply check (the answer differs from what the state machine computed at that index).
//  3. Writes of two outputs made durable out of order (the writer starting the second of two
//     queued appends first): 27 of 600, 12 of 200, 2 of 100 (first seeds 6, 100028, 200001),
//     by the simulated disk ("an append at i while the log ends before i - 1"). Appends queue
//     in the driver only behind a hard-state save or a full log_queue_bytes_max, which half the
//     seeds set to a few entries.
//  4. Committed entries applied before they are durable locally (core.persisted() called when
//     a write starts instead of when it is durable): 596, 200, 100 (first seeds 1, 100001,
//     200001), by "applied ... before its disk held it".
//  5. `persisted` reported for a write that failed (append_job treating an error as success):
//     176, 83, 62 (first seeds 1, 100003, 200002), seeds with an injected disk error, by
//     "append durability" (an acknowledgement of entries the disk does not hold).
//  6. A restarted node that forgets to load its snapshot before replaying the log (the node
//     opening its stored snapshot without restoring the state machine from it): 298, 145, 96
//     (first seeds 1, 100001, 200001), by the apply check (the counter after the next entry
//     differs from the one every other node computed there).
// And for the bounded queues: the writer ignoring log_queue_bytes_max fails 79, 31, 16 (first
// seeds 10, 100028, 200001: more appends wait for the simulated disk than the limit allows);
// propose() ignoring pending_proposal_bytes_max fails 9, 3, 5 (first seeds 15, 100014,
// 200026) and read_barrier() ignoring reads_pending_max 114, 46, 40 (first seeds 3, 100022,
// 200001), both by World::check_bounds.
// And for fixes of bugs the node target found (CTest runs their seeds by name): a snapshot
// stream accepted while another snapshot is being installed fails 1, 0, 0 (over 3,000 seeds
// each: 2, 3 and 11; first seeds 60, 100527, 200534; the node stops, the file its
// install was about to restore deleted); a chunk answer sent before its term is durable fails 14,
// 11, 10 (first seeds 1, 100016, 200012, by "term durability"); transport peers limited to the
// newest configuration's members fail 24, 6, 2 (first seeds 11, 100012, 200072, by liveness);
// a failed compaction only logged, the node running on, fails 2 of 5,000 seeds of 3 nodes
// (1264 and 4358, "kept running 1 s after a failed write") and none of 3,000 of 5 or of 7.
//
// Mutations the simulator is known to catch. Each was applied by hand to a copy of src/core
// (the core itself was never changed) and the `sim` CTest label was run against it in release
// (2000 seeds of 3 servers, 200 each of 5 and 7, the 500 churn seeds), the first two also under
// ASan + UBSan (200, 20, 20 and 100 seeds); the failing seeds were counted. A seed gives the
// same run in every build, so the sanitizer figures of the last two come from the release runs.
//
//  - Commit by counting replicas of an earlier term's entry (Core::maybe_commit without
//    `log_.matches(q, term_)`, the error of thesis Figure 3.7). Release: 335 of 2000, 21 and
//    11 of 200, 159 of 500 seeds fail; sanitizers: 45 of 200, 3 and 2 of 20, 32 of 100 (first
//    seeds 2, 5, 6). The Figure 3.7 schedule (World::orphan_leaders, half the partition
//    faults) builds the history; Checker::check_electable reports the entry as soon as a
//    server lacking it could still win an election. Without that check, a later leader
//    overwriting the entry is caught by the Leader Completeness check in 224 of 2000, 11 and 2
//    of 200, 106 of 500 seeds. Before the schedule and the check, one seed (6375) caught it.
//  - A vote reply sent before the vote is durable (Core::handle_vote_request with `send`
//    instead of `send_after_persist`). Every seed fails at its first election: Checker::on_send
//    sees a granted vote leave while the voter's disk holds an older term. Without that check,
//    the forgotten-votes schedule (World::forget_votes, a quarter of the crash faults:
//    followers crash as they start writing a vote, the next leader is cut off as it wins)
//    leads to two leaders of one term, or to an electable server lacking a committed entry, in
//    163 of 2000, 23 and 25 of 200, 187 of 500 seeds (15, 3, 3 and 36 of the seeds the
//    sanitizer builds run). Before, 5 seeds of all of these caught it.
//  - An acknowledgement of entries sent before they are durable (Core::handle_append_request
//    with `send` instead of `send_after_persist` for its AppendResponse): every seed fails at
//    its first replication (Checker::on_send, "append durability").
//  - Votes granted without the election restriction (Core::handle_vote_request without
//    `log_.candidate_up_to_date`, thesis §3.6.1): 822 of 2000, 86 and 96 of 200, 263 of 500
//    seeds (75, 11, 9 and 52 of the sanitizer runs' seeds), mostly by Leader Completeness when
//    a leader without a committed entry is elected.
//
// Later mutations, each undoing one fix on the core that has it, counted with `coraft-sim
// --seeds 2000 --nodes 3 --faults all`, `--seeds 500 --nodes 5 --faults all` and 500 seeds of
// a subset (release):
//  - Messages of a term not yet durable sent at once (Core::send without its routing to
//    messages_after_persist, snapshot streams not held): 1099 of 2000, 337 of 500; with
//    reconfig,crash,torn 120 of 500, 20 of them first on a sole voter's AppendEntries of the
//    term it just won (Checker::on_send, "term durability").
//  - The vote guard lifted by a newer term (Core::in_leader_lease as `leader_ != no_node &&
//    election_elapsed_ < election_ticks`, no guard in handle_vote_request): 198 of 2000, 52 of
//    500, 16 of 500 with reads,partition,delay (World::check_vote_guard).
//  - The lease one tick longer (election_ticks - lease_clock_drift_ticks): 334 of 2000, 85 of
//    500, 117 of 500 with reads,partition,delay (World::check_read_basis).
//  - No byte bound on the uncommitted backlog: 340 of 2000, 106 of 500 ("pending bytes").
//  - Outputs taken after AppendEntries of two leaders (RaftLog::take_unsaved handing out every
//    pending truncation, and Core::handle_append_request without cap_acknowledgements): 0 of
//    2000, 46 of 500, 232 of 500 of 5 servers with partition,drop, 47 of 300 of 7 servers (first
//    seeds 8, 21, 33; 2, 3, 4; 1, 10, 46), each by World::check_output on the follower of
//    World::hold_follower: entries below truncate_from (38, 169, 38) or an acknowledgement
//    beyond the write. The truncation half alone: 0, 40, 181; the acknowledgement half alone:
//    0, 46, 232. Before the schedule, 0 of 2000 and of 500. It needs five voters: with three,
//    the new leader needs the vote of the held follower or of the old leader, and neither can
//    give it while the follower holds entries the new leader lacks.
//  - Configuration entries during a leadership transfer (the fix of both sides undone:
//    promotions and the exit from a joint configuration do not wait for the transfer, and
//    transfer_leadership() accepts a transfer during a membership change): 736 of 2000, 225 of
//    500, 466 of 500 of 3 servers with transfer,reconfig (first seeds 2, 4, 6; 1, 3, 6; 1, 2,
//    3), 728, 223 and 457 of them by World::transfer_now (a transfer accepted while the
//    configuration is uncommitted or joint, mostly the ones reconfig() asks for right after a
//    change), the others by World::check_transfer (an entry appended during the transfer).
//    With the refusal kept and only the waiting undone: 12 of 2000, 5 of 500, 35 and 67 of 500
//    of 3 and 5 servers with transfer,reconfig (first seeds 41, 167, 228; 119, 188, 248; 18,
//    21, 55; 9, 25, 50), each by check_transfer, at the tick a promotion fell due
//    (World::promotion_tick). Before these schedules and checks, 0 of 2000: the election that
//    fails after the target's vote request deposed the leader ends within an election timeout,
//    which broke no check.
//  - Acknowledgements matched to writes by the (term, index) of the entry each write ends at,
//    the first match winning (RaftLog::persisted): 165 of 2000, 139 of 500, 369 of 500 of 5
//    servers with partition,drop (first seeds 17, 28, 30; 1, 2, 4; 1, 3, 4), each by
//    World::check_persisted: the core still waits for writes the driver acknowledged. A write
//    that stores only a hard state ends where the write before it did, so a coalesced
//    acknowledgement naming it frees the earlier write alone; World::stall_disk queues such
//    writes behind a stalled disk and acknowledges them together. Before the check, 0 of 2000
//    and of 500. Matching only among writes that store entries (as when only those were
//    acknowledged) is caught by no seed (0 of 2000, 500 and 500 with partition,drop): two such
//    writes ending at one entry need a third leader to write that entry again, and the follower
//    answers it only once its new term is durable, in an acknowledgement that frees every
//    earlier write. The new schedules change the runs of seeds of five servers or more with
//    partitions and of seeds with transfer and reconfig; the figures above that predate them
//    are of the simulator as it stood then.
//
// Mutations for the checks of acknowledged entries and of stability, counted the same way
// (release) with the simulator as it stood when each check came in, each applied to a copy of
// the core and reverted:
//  - A follower that drops every entry after those of an AppendEntries it takes, conflicting or
//    not (Core::handle_append_request truncating after the request's last entry; only on the
//    last server of the voter list, so that the others keep each entry on a majority):
//    Checker::check_acknowledged fails 1157 of 2000 and 336 of 500 seeds (first seeds 1 and
//    4), each at the first loss. Without it, 182 of the first 366 seeds of 3 servers fail (with
//    it 225, every one of the 182 among them) and 90 of 200 of 5 servers (with it 132), by
//    Leader Completeness once the server left short could win an election or by the event
//    budget while the leader probes it for ever (with only dup faults, 12 of the first 21
//    seeds of 5 servers fail that way alone, after 5,000,000 events each; with the check, 234
//    of 300 fail, each at its first loss).
//  - A leader whose CheckQuorum counts answers to AppendEntries but not to heartbeats
//    (Core::handle_heartbeat_response without `recent_active = true`): with no client writing,
//    it steps down an election timeout into its term while every follower answers it.
//    Checker::check_stable, armed in the quiet second after liveness holds
//    (World::check_stability), fails 987 of 2000 and 243 of 500 seeds (first seed 3 of both);
//    nothing else catches it (0 of 2000, 0 of 500).
//
// The Figure 3.7 schedule also found a liveness bug in the core: a leader that removed itself
// through a joint change, cut off just after appending the final configuration, held the only
// log the others could vote for and never campaigned again (seeds 3635 and 6933 of 3 servers
// never healed; Core::may_campaign is the fix). Seeds without PreVote found three more: a stale
// vote request went unanswered, a newer term restarted the election timeout (so the one
// server that could win never campaigned), and a leader was deposed by any candidate of a
// higher term (seed 4815 of 5 servers and 19014 of 3 never healed). Seed 159 of 5 servers with
// drop,reconfig failed liveness with no bug in the core: a joint change had left the one new
// voter 470 entries behind, and without PreVote and CheckQuorum the removed servers deposed the
// leader again and again, so the full membership went back in only 37 s after healing, and the
// servers it brought back had had no entries before; World::restore_membership now gives them
// their catch-up time from then.
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "world.hpp"

namespace {

constexpr const char* usage_text =
    "usage: coraft-sim [--target core|node] --seeds N [--first-seed S] [--nodes 3|5|7]\n"
    "                  [--faults LIST|all|none]\n"
    "       coraft-sim [--target core|node] --seed S [--nodes 3|5|7] [--faults LIST|all|none]\n"
    "                  [--trace]\n"
    "targets: core (the protocol core, the default), node (real nodes through their API)\n"
    "faults: drop, dup, reorder, delay, partition, crash, torn, transfer, reads, snapshot,\n"
    "        reconfig, disk-stall, disk-error, slow-apply, notices (the last four: node target\n"
    "        only)\n";

int usage_error(const std::string& what) {
  std::fprintf(stderr, "coraft-sim: %s\n%s", what.c_str(), usage_text);
  return 2;
}

bool parse_u64(std::string_view s, std::uint64_t& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

struct Args {
  std::uint64_t seeds = 1;
  std::uint64_t first = 1;
  bool single = false;
  bool trace = false;
  bool help = false;
  bool node = false;
  coraft::sim::SimOptions options;
};

// Returns an error message, or empty on success.
std::string parse(int argc, char** argv, Args& a) {
  bool have_seeds = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      a.help = true;
      return {};
    }
    if (flag == "--trace") {
      a.trace = true;
      continue;
    }
    if (i + 1 >= argc) return "flag " + std::string(flag) + " needs a value";
    std::string_view value = argv[++i];
    std::uint64_t v = 0;
    if (flag == "--seeds" || flag == "--first-seed" || flag == "--seed" || flag == "--nodes") {
      if (!parse_u64(value, v))
        return "flag " + std::string(flag) + ": '" + std::string(value) + "' is not a number";
    }
    if (flag == "--seeds") {
      if (v == 0) return "--seeds must be at least 1";
      a.seeds = v;
      have_seeds = true;
    } else if (flag == "--first-seed") {
      a.first = v;
    } else if (flag == "--seed") {
      a.first = v;
      a.single = true;
    } else if (flag == "--nodes") {
      if (v != 3 && v != 5 && v != 7) return "--nodes must be 3, 5 or 7";
      a.options.nodes = static_cast<std::uint32_t>(v);
    } else if (flag == "--target") {
      if (value != "core" && value != "node") return "--target must be core or node";
      a.node = value == "node";
    } else if (flag == "--faults") {
      std::string error;
      if (!coraft::sim::parse_faults(value, a.options.faults, error)) return error;
    } else {
      return "unknown flag " + std::string(flag);
    }
  }
  if (a.single && have_seeds) return "--seed and --seeds exclude each other";
  if (a.trace && !a.single) return "--trace needs --seed S";
  if (a.single) a.seeds = 1;
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (std::string err = parse(argc, argv, a); !err.empty()) return usage_error(err);
  if (a.help) {
    std::fputs(usage_text, stdout);
    return 0;
  }
  if (a.trace) a.options.trace = stdout;
  const std::string faults = coraft::sim::faults_text(a.options.faults);
  std::uint64_t failed = 0, ops = 0, faults_total = 0, sim_us = 0;
  for (std::uint64_t k = 0; k < a.seeds; ++k) {
    const std::uint64_t seed = a.first + k;
    const coraft::sim::SeedResult r = a.node ? coraft::sim::run_node_seed(seed, a.options)
                                             : coraft::sim::run_seed(seed, a.options);
    ops += r.ops;
    faults_total += r.faults;
    sim_us += r.sim_us;
    std::printf("seed %llu: %s ops=%llu/%llu committed=%llu faults=%u sim_s=%.3f digest=%016llx\n",
                static_cast<unsigned long long>(seed), r.ok ? "ok" : "FAILED",
                static_cast<unsigned long long>(r.ops),
                static_cast<unsigned long long>(r.ops_invoked),
                static_cast<unsigned long long>(r.committed), r.faults,
                static_cast<double>(r.sim_us) / 1e6, static_cast<unsigned long long>(r.digest));
    if (!r.ok) {
      ++failed;
      std::printf(
          "  failure: %s\n  reproduce with: coraft-sim%s --seed %llu --nodes %u --faults %s\n",
          r.failure.c_str(), a.node ? " --target node" : "", static_cast<unsigned long long>(seed),
          a.options.nodes, faults.c_str());
    }
    std::fflush(stdout);
  }
  std::printf("coraft-sim: seeds=%llu failed=%llu ops=%llu faults=%llu sim_seconds=%.1f\n",
              static_cast<unsigned long long>(a.seeds), static_cast<unsigned long long>(failed),
              static_cast<unsigned long long>(ops), static_cast<unsigned long long>(faults_total),
              static_cast<double>(sim_us) / 1e6);
  return failed > 0 ? 1 : 0;
}
