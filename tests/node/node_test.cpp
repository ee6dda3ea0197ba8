// Whole nodes: real storage, real TCP on 127.0.0.1, three and five servers in one process.
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/use_awaitable.hpp>

#include "node/cluster.hpp"

namespace coraft::test {
namespace {

// "prefix" followed by `i`.
std::string numbered(std::string prefix, std::uint64_t i) {
  prefix += std::to_string(i);
  return prefix;
}

// Every running node applied the same `count` commands in the same order.
bool converged(Cluster& c, std::size_t count) {
  return eventually([&] {
    std::optional<std::vector<std::pair<Index, std::string>>> first;
    for (std::size_t i = 1; i <= c.size(); ++i) {
      if (!c.running(NodeId(i))) continue;
      auto a = c.machine(NodeId(i)).applied();
      if (a.size() != count) return false;
      if (!first) {
        first = a;
      } else if (*first != a) {
        return false;
      }
    }
    return true;
  });
}

TEST_CASE("three nodes elect one leader and replicate proposals to every state machine") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  for (int i = 0; i < 50; ++i) {
    auto r = c.propose(*leader, numbered("cmd-", i));
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    CHECK(r->reply.chars() == "ok " + std::to_string(r->index.value()));
  }
  REQUIRE(converged(c, 50));
  const auto applied = c.machine(*leader).applied();
  CHECK(applied.front().second == "cmd-0");
  CHECK(applied.back().second == "cmd-49");
  const NodeStatus s = c.status(*leader);
  CHECK(s.role == NodeRole::leader);
  CHECK(s.commit >= applied.back().first);
  CHECK(s.peers.size() == 2);
  // A follower applies once it learns the commit index, which may be before the leader has
  // taken its own acknowledgement: the leader's view of each follower catches up just after.
  CHECK(eventually([&] {
    const NodeStatus now = c.status(*leader);
    return now.peers.size() == 2 &&
           std::all_of(now.peers.begin(), now.peers.end(),
                       [&](const PeerStatus& p) { return p.match >= applied.back().first; });
  }));
}

TEST_CASE("a proposal on a follower fails with not_leader naming the leader and its address") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  const NodeId follower(leader->value() % 3 + 1);
  auto r = c.propose(follower, "x");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().is(Errc::not_leader));
  CHECK(r.error().definite());
  CHECK(r.error().retryable());
  CHECK(r.error().leader_hint == *leader);
  CHECK(r.error().leader_address == "127.0.0.1:" + std::to_string(c.config(*leader).listen_port));
}

TEST_CASE("a batch of proposals is applied in order with one reply each") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  std::vector<Bytes> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(Bytes::copy_of(numbered("b", i)));
  auto r = c.node(*leader).propose(std::move(batch), asio::use_future).get();
  REQUIRE(r.ok());
  REQUIRE(r->replies.size() == 10);
  for (std::size_t i = 0; i < 10; ++i) {
    CHECK(r->replies[i].chars() == "ok " + std::to_string(r->first_index.value() + i));
  }
  REQUIRE(converged(c, 10));
}

TEST_CASE("every node restarted from disk keeps every acknowledged proposal") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  std::vector<std::string> acked;
  for (int i = 0; i < 30; ++i) {
    auto r = c.propose(*leader, numbered("before-", i));
    REQUIRE(r.ok());
    acked.push_back(numbered("before-", i));
  }
  for (std::size_t i = 1; i <= 3; ++i) c.stop(NodeId(i));
  c.start_all();
  leader = c.leader();
  REQUIRE(leader);
  // The new leader commits an entry of its term; then everything before it applies again.
  auto r = c.propose(*leader, "after");
  REQUIRE_MESSAGE(r.ok(), r.error().message());
  acked.push_back("after");
  REQUIRE(converged(c, acked.size()));
  auto applied = c.machine(*leader).applied();
  for (std::size_t i = 0; i < acked.size(); ++i) CHECK(applied[i].second == acked[i]);
}

TEST_CASE("read_barrier after a write sees it, on the leader and on a follower") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  auto w = c.propose(*leader, "written");
  REQUIRE(w.ok());
  for (std::size_t i = 1; i <= 3; ++i) {
    auto r = c.node(NodeId(i)).read_barrier(asio::use_future).get();
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    CHECK(*r >= w->index);
    auto applied = c.machine(NodeId(i)).applied();
    REQUIRE_FALSE(applied.empty());
    CHECK(applied.back().second == "written");
  }
}

TEST_CASE("leadership transfer hands the cluster to the chosen voter") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  // Until the new leader commits in its term, the bootstrap configuration is an unfinished
  // change, and transfers are refused with the retryable config_change_pending.
  REQUIRE(c.propose(*leader, "first").ok());
  const NodeId target(leader->value() % 3 + 1);
  auto r = c.node(*leader).transfer_leadership(target, asio::use_future).get();
  REQUIRE_MESSAGE(r.ok(), r.error().message());
  CHECK(*r == target);
  auto now = c.leader();
  REQUIRE(now);
  CHECK(*now == target);
  auto p = c.propose(target, "after-transfer");
  CHECK(p.ok());
}

TEST_CASE("the leader stopped under load loses no acknowledged proposal") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  std::mutex mu;
  std::set<std::string> acked;
  std::atomic<int> outstanding{0};
  for (int i = 0; i < 200; ++i) {
    const std::string text = numbered("load-", i);
    ++outstanding;
    c.node(*leader).propose(Bytes::copy_of(text), [&, text](Result<Proposed> r) {
      if (r) {
        std::lock_guard lock(mu);
        acked.insert(text);
      } else {
        CHECK((r.error().is(Errc::outcome_unknown) || r.error().is(Errc::shutting_down) ||
               r.error().is(Errc::overloaded) || r.error().is(Errc::not_leader)));
      }
      --outstanding;
    });
  }
  std::this_thread::sleep_for(5ms);
  c.stop(*leader);
  REQUIRE(eventually([&] { return outstanding == 0; }));
  auto next = c.leader();
  REQUIRE(next);
  CHECK(*next != *leader);
  auto r = c.propose(*next, "after-failover");
  REQUIRE_MESSAGE(r.ok(), r.error().message());
  REQUIRE(eventually([&] {
    auto applied = c.machine(*next).applied();
    std::set<std::string> have;
    for (auto& [i, t] : applied) have.insert(t);
    std::lock_guard lock(mu);
    for (const auto& a : acked) {
      if (!have.count(a)) return false;
    }
    return have.count("after-failover") == 1;
  }));
}

TEST_CASE("three servers grow to five and shrink back to three, new servers joining empty") {
  Cluster c(5, 3);
  for (std::size_t i = 1; i <= 3; ++i) REQUIRE(c.start(NodeId(i)).ok());
  auto leader = c.leader();
  REQUIRE(leader);
  for (int i = 0; i < 20; ++i) REQUIRE(c.propose(*leader, numbered("a", i)).ok());
  // Servers 4 and 5 start with empty directories: they join and learn everything.
  REQUIRE(c.start(NodeId(4)).ok());
  REQUIRE(c.start(NodeId(5)).ok());
  for (std::size_t id : {4u, 5u}) {
    auto r =
        c.node(*leader)
            .add_voter(ServerAddress{NodeId(id), "127.0.0.1", c.config(NodeId(id)).listen_port},
                       asio::use_future)
            .get();
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    CHECK(r->is_voter(NodeId(id)));
  }
  CHECK(c.status(*leader).configuration.voters.size() == 5);
  REQUIRE(c.propose(*leader, "five").ok());
  REQUIRE(converged(c, 21));
  // Shrink to the three servers that are not the current leader's two lowest peers.
  std::vector<NodeId> remove;
  for (std::size_t id = 1; id <= 5 && remove.size() < 2; ++id) {
    if (NodeId(id) != *leader) remove.push_back(NodeId(id));
  }
  for (NodeId id : remove) {
    auto r = c.node(*leader).remove_server(id, asio::use_future).get();
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    CHECK_FALSE(r->contains(id));
  }
  for (NodeId id : remove) c.stop(id);
  CHECK(c.status(*leader).configuration.voters.size() == 3);
  REQUIRE(c.propose(*leader, "three").ok());
  REQUIRE(converged(c, 22));
}

TEST_CASE(
    "servers added by one leader are reachable from the next, which never had their address") {
  Cluster c(5, 3);
  // The first three know only each other; the new servers know everybody.
  c.tweak = [](NodeConfig& cfg) {
    if (cfg.id.value() <= 3) {
      std::erase_if(cfg.peers, [](const ServerAddress& a) { return a.id.value() > 3; });
    }
  };
  for (std::size_t i = 1; i <= 5; ++i) REQUIRE(c.start(NodeId(i)).ok());
  auto leader = c.leader();
  REQUIRE(leader);
  REQUIRE(c.propose(*leader, "first").ok());
  for (std::size_t id : {4u, 5u}) {
    const ServerAddress a{NodeId(id), "127.0.0.1", c.config(NodeId(id)).listen_port};
    auto r = c.node(*leader).add_voter(a, asio::use_future).get();
    REQUIRE_MESSAGE(r.ok(), r.error().message());
  }
  // Hand leadership to another of the first three, then cut the old leader off.
  const NodeId next(leader->value() % 3 + 1);
  auto t = c.node(*leader).transfer_leadership(next, asio::use_future).get();
  REQUIRE_MESSAGE(t.ok(), t.error().message());
  for (const PeerStatus& p : c.status(next).peers) CHECK_FALSE(p.address.empty());
  c.stop(*leader);
  // A loaded machine may still move leadership on: each proposal goes to whoever leads, and one
  // whose outcome is unknown is proposed again (so more than five may apply).
  for (int i = 0; i < 5; ++i) {
    Result<Proposed> r = Error(Errc::timeout, "not proposed yet");
    for (int attempt = 0; attempt < 20 && !r.ok(); ++attempt) {
      auto now = c.leader();
      REQUIRE(now);
      r = c.propose(*now, numbered("n", i));
    }
    REQUIRE_MESSAGE(r.ok(), r.error().message());
  }
  // Servers 4 and 5 got them from a leader that learned their addresses from the log.
  REQUIRE(eventually([&] { return c.machine(NodeId(4)).count() >= 6; }));
  REQUIRE(eventually([&] { return c.machine(NodeId(5)).count() >= 6; }));
}

TEST_CASE("a joint change replaces two voters at once") {
  Cluster c(5, 3);
  for (std::size_t i = 1; i <= 5; ++i) REQUIRE(c.start(NodeId(i)).ok());
  auto leader = c.leader();
  REQUIRE(leader);
  // A new leader takes membership changes once an entry of its term committed.
  REQUIRE(c.propose(*leader, "first").ok());
  std::vector<NodeId> voters{*leader, NodeId(4), NodeId(5)};
  auto r = c.node(*leader).change_membership(voters, {}, {}, asio::use_future).get();
  REQUIRE_MESSAGE(r.ok(), r.error().message());
  CHECK_FALSE(r->joint());
  CHECK(r->voters.size() == 3);
  CHECK(r->is_voter(NodeId(4)));
  CHECK(r->is_voter(NodeId(5)));
  REQUIRE(c.propose(*leader, "joint-done").ok());
}

TEST_CASE("a learner added with auto-promotion becomes a voter") {
  Cluster c(4, 3);
  for (std::size_t i = 1; i <= 4; ++i) REQUIRE(c.start(NodeId(i)).ok());
  auto leader = c.leader();
  REQUIRE(leader);
  for (int i = 0; i < 10; ++i) REQUIRE(c.propose(*leader, numbered("p", i)).ok());
  auto r = c.node(*leader)
               .add_learner(ServerAddress{NodeId(4), "127.0.0.1", c.config(NodeId(4)).listen_port},
                            true, asio::use_future)
               .get();
  REQUIRE_MESSAGE(r.ok(), r.error().message());
  CHECK(r->is_learner(NodeId(4)));
  CHECK(eventually([&] { return c.status(*leader).configuration.is_voter(NodeId(4)); }));
}

TEST_CASE("callbacks from several threads all complete, each exactly once") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  std::atomic<int> ok{0};
  std::atomic<int> calls{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string text = "t";
        text += std::to_string(t);
        text += '-';
        text += std::to_string(i);
        c.node(*leader).propose(Bytes::copy_of(text), [&](Result<Proposed> r) {
          ++calls;
          if (r) ++ok;
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(eventually([&] { return calls == 100; }));
  CHECK(ok == 100);
  REQUIRE(converged(c, 100));
}

TEST_CASE("coroutines await proposals and reads with use_awaitable") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  std::promise<std::string> done;
  auto& node = c.node(*leader);
  asio::co_spawn(
      c.io(),
      [&]() -> asio::awaitable<void> {
        auto p = co_await node.propose(Bytes::copy_of("from-coroutine"), asio::use_awaitable);
        if (!p) {
          done.set_value(p.error().message());
          co_return;
        }
        auto r = co_await node.read_barrier(asio::use_awaitable);
        done.set_value(r && *r >= p->index ? "ok" : "read failed");
      },
      asio::detached);
  CHECK(done.get_future().get() == "ok");
}

TEST_CASE("status and metrics describe the node") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  for (int i = 0; i < 5; ++i) REQUIRE(c.propose(*leader, "m").ok());
  auto m = c.node(*leader).metrics(asio::use_future).get();
  REQUIRE(m.ok());
  CHECK(m->proposals == 5);
  CHECK(m->is_leader == 1);
  CHECK(m->applies >= 5);
  CHECK(m->log_writes >= 1);
  CHECK(m->peer_lag.size() == 2);
  const std::string text = Node::metrics_text(*leader, *m);
  CHECK(text.find("# TYPE coraft_proposals_total counter") != std::string::npos);
  CHECK(text.find("coraft_proposals_total{node=\"" + std::to_string(leader->value()) + "\"} 5\n") !=
        std::string::npos);
  CHECK(text.find("coraft_peer_lag_entries{") != std::string::npos);
}

TEST_CASE("observers hear of the leader and of stopping") {
  Cluster c(3);
  c.start_all();
  std::mutex mu;
  std::vector<NodeEvent::Kind> kinds;
  c.node(NodeId(1)).observe([&](const NodeEvent& e) {
    std::lock_guard lock(mu);
    kinds.push_back(e.kind);
  });
  REQUIRE(c.leader());
  c.stop(NodeId(1));
  std::lock_guard lock(mu);
  REQUIRE_FALSE(kinds.empty());
  CHECK(kinds.back() == NodeEvent::Kind::stopped);
}

TEST_CASE("a node refuses a data directory of another cluster and bad configurations") {
  Cluster c(3);
  NodeConfig bad = c.config(NodeId(1));
  bad.cluster_id = 99;
  auto r = c.start(NodeId(1), bad);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().detail.find("belongs to cluster") != std::string::npos);
  NodeConfig zero = c.config(NodeId(1));
  zero.heartbeat_ticks = zero.election_ticks;
  r = c.start(NodeId(1), zero);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().detail.find("NodeConfig.heartbeat_ticks") != std::string::npos);
}

TEST_CASE("bootstrap refuses a directory that holds anything") {
  Cluster c(1);
  auto conf = Configuration::make({NodeId(1)});
  auto r = bootstrap(c.data_dir(NodeId(1)), Cluster::cluster_id, NodeId(1), *conf);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().is(Errc::invalid_argument));
}

TEST_CASE("NodeConfig refuses limits that cannot work together, naming the field") {
  NodeConfig c;
  c.id = NodeId(1);
  c.cluster_id = 1;
  c.data_dir = "/tmp/x";
  CHECK(c.validate().ok());
  NodeConfig e = c;
  e.append_entries_max = 100000;
  REQUIRE_FALSE(e.validate().ok());
  CHECK(e.validate().error().detail.find("append_entries_max") != std::string::npos);
  NodeConfig f = c;
  f.frame_bytes_max = 1u << 20;
  REQUIRE_FALSE(f.validate().ok());
  CHECK(f.validate().error().detail.find("frame_bytes_max") != std::string::npos);
  NodeConfig p = c;
  p.peers.push_back(ServerAddress{NodeId(2), "", 0});
  CHECK(p.validate().error().detail.find("peers") != std::string::npos);
  NodeConfig a = c;
  a.advertise_host = "10.0.0.1";
  REQUIRE_FALSE(a.validate().ok());
  CHECK(a.validate().error().detail.find("advertise_host") != std::string::npos);
  a.advertise_port = 7000;
  CHECK(a.validate().ok());
}

TEST_CASE("a leader records its advertised address, not its listen address, in a configuration") {
  Cluster c(4, 3);
  // Every server advertises its listen address under another name.
  c.tweak = [](NodeConfig& n) {
    n.advertise_host = "localhost";
    n.advertise_port = n.listen_port;
  };
  for (std::size_t i = 1; i <= 4; ++i) REQUIRE(c.start(NodeId(i)).ok());
  std::optional<NodeId> leader;
  Result<Configuration> r = Errc::not_leader;
  // A loaded machine may move the leadership meanwhile: ask the new leader, once it has
  // committed in its term and settled the change an earlier leader may have left pending.
  const auto retry = [](const Error& e) {
    return e.is(Errc::not_leader) || e.is(Errc::outcome_unknown) ||
           e.is(Errc::config_change_pending) || e.is(Errc::overloaded);
  };
  for (int attempt = 0; attempt < 40 && !r && retry(r.error()); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(100ms);
    leader = c.leader();
    REQUIRE(leader);
    r = c.node(*leader)
            .add_voter(ServerAddress{NodeId(4), "127.0.0.1", c.config(NodeId(4)).listen_port},
                       asio::use_future)
            .get();
  }
  REQUIRE_MESSAGE(r.ok(), r.error().message());
  const std::string mine = "localhost:" + std::to_string(c.config(*leader).listen_port);
  bool recorded = false;
  for (const MemberAddress& m : r->addresses) {
    if (m.id == *leader) recorded = m.address == mine;
  }
  CHECK(recorded);
  // The servers reach one another at the advertised names.
  Result<Proposed> p = Errc::not_leader;
  for (int attempt = 0; attempt < 5 && !p && p.error().is(Errc::not_leader); ++attempt) {
    leader = c.leader();
    REQUIRE(leader);
    p = c.propose(*leader, "after");
  }
  REQUIRE(p.ok());
}

TEST_CASE("snapshot_now saves the state machine, compacts the log, and a restart restores it") {
  Cluster c(3);
  c.tweak = [](NodeConfig& cfg) { cfg.snapshot_trailing_entries = 5; };
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  for (int i = 0; i < 40; ++i) REQUIRE(c.propose(*leader, numbered("s", i)).ok());
  REQUIRE(converged(c, 40));
  auto snap = c.node(*leader).snapshot_now(asio::use_future).get();
  REQUIRE_MESSAGE(snap.ok(), snap.error().message());
  CHECK(snap->value() >= 40);
  CHECK(c.status(*leader).snapshot_index == *snap);
  // Nothing applied since: a second snapshot has nothing to cover.
  auto again = c.node(*leader).snapshot_now(asio::use_future).get();
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().is(Errc::invalid_argument));
  const auto before = c.machine(*leader).applied();
  c.stop(*leader);
  REQUIRE(c.start(*leader).ok());
  // The state machine comes back from the snapshot before anything is re-applied.
  CHECK(c.machine(*leader).applied() == before);
  auto next = c.leader();
  REQUIRE(next);
  REQUIRE(c.propose(*next, "after-snapshot").ok());
  REQUIRE(converged(c, 41));
}

TEST_CASE("recover forces a new configuration on the survivors of a lost majority") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  for (int i = 0; i < 5; ++i) REQUIRE(c.propose(*leader, numbered("r", i)).ok());
  REQUIRE(converged(c, 5));
  for (std::size_t i = 1; i <= 3; ++i) c.stop(NodeId(i));
  // Servers 2 and 3 are lost for good; server 1 alone becomes the cluster.
  auto alone = Configuration::make({NodeId(1)});
  REQUIRE(recover(c.data_dir(NodeId(1)), *alone).ok());
  CHECK_FALSE(recover(c.data_dir(NodeId(1)) + "-missing", *alone).ok());
  REQUIRE(c.start(NodeId(1)).ok());
  REQUIRE(eventually([&] { return c.status(NodeId(1)).role == NodeRole::leader; }));
  auto r = c.propose(NodeId(1), "alone");
  REQUIRE_MESSAGE(r.ok(), r.error().message());
  CHECK(c.status(NodeId(1)).configuration.voters == std::vector<NodeId>{NodeId(1)});
  auto applied = c.machine(NodeId(1)).applied();
  REQUIRE(applied.size() == 6);
  CHECK(applied.back().second == "alone");
}

TEST_CASE("a cancelled read_barrier completes with cancelled, once") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  // Stop both followers so that the leader's read cannot be confirmed, then cancel the read.
  const NodeId cut = *leader;
  asio::cancellation_signal signal;
  std::promise<Result<Index>> got;
  std::atomic<int> calls{0};
  c.stop(NodeId(cut.value() % 3 + 1));
  c.stop(NodeId((cut.value() + 1) % 3 + 1));
  asio::post(c.io(), [&] {
    c.node(cut).read_barrier(asio::bind_cancellation_slot(signal.slot(), [&](Result<Index> r) {
      ++calls;
      got.set_value(std::move(r));
    }));
  });
  std::this_thread::sleep_for(50ms);
  asio::post(c.io(), [&] { signal.emit(asio::cancellation_type::terminal); });
  auto r = got.get_future().get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().is(Errc::cancelled));
  CHECK_FALSE(r.error().definite());
  std::this_thread::sleep_for(50ms);
  CHECK(calls == 1);
}

TEST_CASE(
    "apply() and save() run on the apply thread, or on the node's executor with apply_inline") {
  for (bool inline_apply : {false, true}) {
    CAPTURE(inline_apply);
    Cluster c(3);
    c.tweak = [&](NodeConfig& conf) { conf.apply_inline = inline_apply; };
    c.start_all();
    auto leader = c.leader();
    REQUIRE(leader);
    REQUIRE(c.propose(*leader, "x").ok());
    const std::thread::id applied_on = c.machine(*leader).apply_thread();
    CHECK(applied_on != std::thread::id());
    CHECK((applied_on == c.io_thread()) == inline_apply);
    // A snapshot sees the state between two applies: save() runs where apply() does.
    REQUIRE(c.node(*leader).snapshot_now(asio::use_future).get().ok());
    CHECK(c.machine(*leader).save_thread() == applied_on);
  }
}

// What each node sent, one line per message: commit notices are AppendEntries without entries.
struct SentLog {
  struct Line {
    NodeId to;
    enum Kind { append, notice, heartbeat, read_answer, other } kind = other;
    Index commit;  // of an AppendEntries or heartbeat; the read index of a read answer
    Term term;
    std::chrono::steady_clock::time_point at;
  };
  std::mutex mu;
  std::map<NodeId, std::vector<Line>> by_node;

  // Watches every node's outgoing messages (the hook is the last step before the transport).
  void watch(Cluster& c) {
    for (std::size_t i = 1; i <= c.size(); ++i) {
      c.hooks(NodeId(i)).drop_outgoing = [this, from = NodeId(i)](const core::Message& m) {
        Line l{m.to, Line::other, Index(), core::term_of(m.body), std::chrono::steady_clock::now()};
        if (const auto* a = std::get_if<core::AppendRequest>(&m.body)) {
          l.kind = a->entries.empty() ? Line::notice : Line::append;
          l.commit = a->leader_commit;
        } else if (const auto* h = std::get_if<core::HeartbeatRequest>(&m.body)) {
          l.kind = Line::heartbeat;
          l.commit = h->leader_commit;
        } else if (const auto* r = std::get_if<core::ReadIndexResponse>(&m.body)) {
          l.kind = Line::read_answer;
          l.commit = r->read_index;
        }
        std::lock_guard lock(mu);
        by_node[from].push_back(l);
        return false;
      };
    }
  }
  std::vector<Line> of(NodeId id) {
    std::lock_guard lock(mu);
    return by_node[id];
  }
  std::size_t notices(NodeId id) {
    auto lines = of(id);
    return static_cast<std::size_t>(std::count_if(
        lines.begin(), lines.end(), [](const Line& l) { return l.kind == Line::notice; }));
  }
};

// Heartbeats (which carry the commit index too) 400 ms apart, commit notices held for `delay`.
void slow_heartbeats(NodeConfig& conf, std::chrono::microseconds delay) {
  conf.election_ticks = 30;
  conf.heartbeat_ticks = 20;
  conf.commit_notice_delay = delay;
}

TEST_CASE("a commit notice waits for the next AppendEntries, which carries the commit instead") {
  for (std::chrono::microseconds delay : {std::chrono::microseconds(500ms), 0us}) {
    CAPTURE(delay.count());
    SentLog sent;  // outlives the cluster, whose nodes call into it until they stop
    Cluster c(3);
    c.tweak = [&](NodeConfig& conf) { conf.commit_notice_delay = delay; };
    sent.watch(c);
    c.start_all();
    auto leader = c.leader();
    REQUIRE(leader);
    REQUIRE(c.propose(*leader, "first").ok());
    const std::size_t notices_before = sent.notices(*leader);
    const auto replaced_before =
        c.node(*leader).metrics(asio::use_future).get()->commit_notices_replaced;
    // One proposal at a time: each commit would tell both followers at once, but the next
    // proposal's AppendEntries goes out first and carries it.
    for (int i = 0; i < 50; ++i) REQUIRE(c.propose(*leader, numbered("p-", i)).ok());
    const std::size_t notices = sent.notices(*leader) - notices_before;
    const auto replaced =
        c.node(*leader).metrics(asio::use_future).get()->commit_notices_replaced - replaced_before;
    if (delay.count() > 0) {
      CHECK(notices <= 2);  // an empty probe, at most, if a follower was probed
      CHECK(replaced >= 50);
    } else {
      CHECK(notices >= 50);
      CHECK(replaced == 0);
    }
    // Every follower still learns the last commit index.
    REQUIRE(converged(c, 51));
  }
}

TEST_CASE("a commit notice that nothing replaces goes out after commit_notice_delay") {
  SentLog sent;
  Cluster c(3);
  // Heartbeats (which carry the commit index too) 400 ms apart, the notice due after 20 ms.
  c.tweak = [](NodeConfig& conf) { slow_heartbeats(conf, 20ms); };
  sent.watch(c);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  // A heartbeat may replace a notice before it is due, one time in twenty: of three
  // proposals, at least one is told to the followers by the notice itself.
  std::size_t told_by_notice = 0;
  for (int i = 0; i < 3; ++i) {
    auto p = c.propose(*leader, numbered("idle-", i));
    REQUIRE(p.ok());
    REQUIRE(converged(c, static_cast<std::size_t>(i) + 1));
    std::set<NodeId> told;
    for (const SentLog::Line& l : sent.of(*leader)) {
      if (l.kind == SentLog::Line::notice && l.commit >= p->index) told.insert(l.to);
    }
    if (told.size() == 2) ++told_by_notice;
  }
  CHECK(told_by_notice >= 1);
}

TEST_CASE("a read answer to a follower goes after the commit notice held for it") {
  SentLog sent;
  Cluster c(3);
  // Lease reads answer a follower's read at once, without a heartbeat round; heartbeats are
  // 400 ms apart and notices wait 300 ms.
  c.tweak = [](NodeConfig& conf) {
    slow_heartbeats(conf, 300ms);
    conf.lease_reads = true;
  };
  sent.watch(c);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  const NodeId follower(leader->value() % 3 + 1);
  std::size_t answers = 0;
  for (int i = 0; i < 3; ++i) {
    auto w = c.propose(*leader, numbered("w-", i));
    REQUIRE(w.ok());
    auto r = c.node(follower).read_barrier(asio::use_future).get();
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    CHECK(*r >= w->index);
    CHECK(c.machine(follower).applied().back().second == numbered("w-", i));
  }
  // Every read answer to the follower comes after a message that told it a commit index at
  // least the read index: the follower never waits for the notice's delay to apply up to it.
  Index told;
  for (const SentLog::Line& l : sent.of(*leader)) {
    if (l.to != follower) continue;
    if (l.kind == SentLog::Line::read_answer) {
      ++answers;
      CHECK(told >= l.commit);
    } else if (l.kind != SentLog::Line::other) {
      told = std::max(told, l.commit);
    }
  }
  CHECK(answers == 3);
}

TEST_CASE("a leader that steps down sends none of the commit notices it held") {
  SentLog sent;
  Cluster c(3);
  // Notices wait 500 ms; heartbeats, which would replace them, are 400 ms apart.
  c.tweak = [](NodeConfig& conf) { slow_heartbeats(conf, 500ms); };
  sent.watch(c);
  c.start_all();
  // A run shows something only when the notice to the follower that is not the target was
  // still held when the leader stepped down: not when a heartbeat took its place first, or
  // the transfer outlasted the delay. Up to three runs, until one does.
  std::size_t stale = 0, shown = 0, runs = 0;
  for (; runs < 3 && shown == 0; ++runs) {
    auto leader = c.leader();
    REQUIRE(leader);
    const NodeId target(leader->value() % 3 + 1);
    const NodeId other(target.value() % 3 + 1);
    const Term term = c.status(*leader).term;
    // The commit of this entry is held for both followers; the transfer's TimeoutNow sends the
    // target's first, the other's is still held when the leader steps down.
    auto p = c.propose(*leader, numbered("last of its term ", runs));
    REQUIRE(p.ok());
    auto t = c.node(*leader).transfer_leadership(target, asio::use_future).get();
    REQUIRE_MESSAGE(t.ok(), t.error().message());
    const auto stepped_down = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(700ms);  // past the time the held notice was due
    bool told_before = false;
    for (const SentLog::Line& l : sent.of(*leader)) {
      if (l.term < term) continue;
      if (l.at > stepped_down && l.term == term && l.kind == SentLog::Line::notice) ++stale;
      if (l.at <= stepped_down && l.to == other && l.kind != SentLog::Line::other &&
          l.commit >= p->index) {
        told_before = true;
      }
    }
    if (!told_before) ++shown;
  }
  CHECK(shown == 1);
  CHECK(stale == 0);
  // The new leader tells every follower the commit.
  REQUIRE(converged(c, runs));
}

TEST_CASE("NodeConfig refuses a commit_notice_delay beyond a second") {
  NodeConfig c;
  c.id = NodeId(1);
  c.cluster_id = 1;
  c.data_dir = "/tmp/x";
  c.commit_notice_delay = 1s;
  CHECK(c.validate().ok());
  c.commit_notice_delay = 1001ms;
  REQUIRE_FALSE(c.validate().ok());
  CHECK(c.validate().error().detail.find("commit_notice_delay") != std::string::npos);
  c.commit_notice_delay = -1us;
  CHECK_FALSE(c.validate().ok());
}

}  // namespace
}  // namespace coraft::test
