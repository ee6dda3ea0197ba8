// Snapshots end to end: taken by threshold, streamed in acknowledged chunks to followers whose
// entries are compacted away, installed and loaded, through faults on the way.
#include <atomic>
#include <filesystem>
#include <fstream>

#include "node/cluster.hpp"

namespace coraft::test {
namespace {

namespace fs = std::filesystem;

// Snapshots every 50 entries keeping 10 behind, streamed in 4 KiB chunks two at a time.
void small_snapshots(NodeConfig& c) {
  c.snapshot_threshold_entries = 50;
  c.snapshot_trailing_entries = 10;
  c.snapshot_chunk_bytes = 4096;
  c.snapshot_window_chunks = 2;
  c.snapshot_retry_delay_min = 20ms;
  c.snapshot_retry_delay_max = 200ms;
  c.snapshot_chunk_timeout = 1s;
}

NodeMetrics metrics(Cluster& c, NodeId id) {
  return c.node(id).metrics(asio::use_future).get().value();
}

void propose_many(Cluster& c, NodeId leader, int first, int count) {
  for (int i = first; i < first + count; ++i) {
    std::string text = "p";
    text += std::to_string(i);
    auto r = c.propose(leader, text);
    REQUIRE_MESSAGE(r.ok(), r.error().message());
  }
}

// Every running node applied `count` commands, the same ones in the same order.
bool converged(Cluster& c, std::size_t count, std::chrono::milliseconds limit = 20s) {
  return eventually(
      [&] {
        std::optional<std::uint64_t> digest;
        for (std::size_t i = 1; i <= c.size(); ++i) {
          if (!c.running(NodeId(i))) continue;
          if (c.machine(NodeId(i)).count() != count) return false;
          const std::uint64_t d = c.machine(NodeId(i)).digest();
          if (digest && *digest != d) return false;
          digest = d;
        }
        return true;
      },
      limit);
}

NodeId other_than(Cluster& c, std::initializer_list<NodeId> not_these) {
  for (std::size_t i = 1; i <= c.size(); ++i) {
    if (std::find(not_these.begin(), not_these.end(), NodeId(i)) == not_these.end())
      return NodeId(i);
  }
  return no_node;
}

// Staging files of snapshots being received, in a node's data directory.
std::size_t staging_files(const std::string& data_dir) {
  std::size_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(data_dir) / "snapshots", ec)) {
    n += e.path().filename().string().ends_with(".recv.tmp");
  }
  return n;
}

std::uint64_t dir_bytes(const std::string& dir) {
  std::uint64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) n += e.file_size();
  }
  return n;
}

// Every node drops the snapshot chunks at `from_offset` and beyond while `hold` is set.
void hold_chunks(Cluster& c, std::atomic<bool>& hold, std::uint64_t from_offset) {
  for (std::size_t i = 1; i <= c.size(); ++i) {
    c.hooks(NodeId(i)).drop_outgoing = [&hold, from_offset](const core::Message& m) {
      const auto* is = std::get_if<core::InstallSnapshot>(&m.body);
      return is && is->offset >= from_offset && hold.load();
    };
  }
}

// `follower` is stopped while the leader applies 150 proposals, until `watch` holds a snapshot
// at index 100 or beyond: the follower can then catch up only through a snapshot.
void leave_behind(Cluster& c, NodeId leader, NodeId follower, NodeId watch) {
  c.stop(follower);
  propose_many(c, leader, 0, 150);
  REQUIRE(eventually([&] { return c.status(watch).snapshot_index.value() >= 100; }));
}

}  // namespace

TEST_CASE(
    "a follower stopped while the leader takes snapshots catches up through one, then entries") {
  Cluster c(3);
  c.tweak = small_snapshots;
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  propose_many(c, *leader, 0, 20);
  REQUIRE(converged(c, 20));
  const NodeId follower = other_than(c, {*leader});
  c.stop(follower);
  propose_many(c, *leader, 20, 300);
  // Several snapshots, and the log behind them compacted.
  REQUIRE(eventually([&] { return c.status(*leader).snapshot_index.value() >= 250; }));
  CHECK(metrics(c, *leader).snapshots >= 3);
  REQUIRE(c.start(follower).ok());
  REQUIRE(converged(c, 320));
  CHECK(metrics(c, follower).snapshots_installed >= 1);
  CHECK(metrics(c, *leader).snapshots_sent >= 1);
  CHECK(c.machine(follower).restores() >= 1);
  // Entries after the snapshot come through the log.
  propose_many(c, *leader, 320, 5);
  REQUIRE(converged(c, 325));
  // And the follower's own restart starts from the installed snapshot.
  c.stop(follower);
  REQUIRE(c.start(follower).ok());
  REQUIRE(converged(c, 325));
}

TEST_CASE("a new empty server added to a compacted cluster joins through a snapshot") {
  Cluster c(4, 3);
  c.tweak = small_snapshots;
  for (std::size_t i = 1; i <= 3; ++i) REQUIRE(c.start(NodeId(i)).ok());
  auto leader = c.leader();
  REQUIRE(leader);
  propose_many(c, *leader, 0, 200);
  REQUIRE(eventually([&] { return c.status(*leader).snapshot_index.value() >= 150; }));
  REQUIRE(c.start(NodeId(4)).ok());
  auto r = c.node(*leader)
               .add_voter(ServerAddress{NodeId(4), "127.0.0.1", c.config(NodeId(4)).listen_port},
                          asio::use_future)
               .get();
  REQUIRE_MESSAGE(r.ok(), r.error().message());
  propose_many(c, *leader, 200, 3);
  REQUIRE(converged(c, 203));
  CHECK(metrics(c, NodeId(4)).snapshots_installed >= 1);
  CHECK(c.machine(NodeId(4)).applied() == c.machine(*leader).applied());
}

TEST_CASE("a snapshot stream that loses a chunk or carries a corrupted one fails, then succeeds") {
  for (const bool corrupt : {false, true}) {
    CAPTURE(corrupt);
    Cluster c(3);
    c.tweak = small_snapshots;
    c.setup_machine = [](RecordingMachine& m) { m.set_padding(64 << 10); };
    std::atomic<int> spoiled{0};
    for (std::size_t i = 1; i <= 3; ++i) {
      if (corrupt) {
        c.hooks(NodeId(i)).tamper_outgoing = [&spoiled](core::Message& m) {
          auto* is = std::get_if<core::InstallSnapshot>(&m.body);
          if (!is || is->offset != 3 * 4096 || spoiled.exchange(1) != 0) return;
          std::vector<std::byte> bad(is->data.span().begin(), is->data.span().end());
          bad[100] ^= std::byte{0x40};
          is->data = Bytes::copy_of(bad);
        };
      } else {
        c.hooks(NodeId(i)).drop_outgoing = [&spoiled](const core::Message& m) {
          const auto* is = std::get_if<core::InstallSnapshot>(&m.body);
          return is && is->offset == 3 * 4096 && spoiled.exchange(1) == 0;
        };
      }
    }
    c.start_all();
    auto leader = c.leader();
    REQUIRE(leader);
    const NodeId follower = other_than(c, {*leader});
    leave_behind(c, *leader, follower, *leader);
    REQUIRE(c.start(follower).ok());
    REQUIRE(converged(c, 150));
    CHECK(spoiled.load() == 1);
    CHECK(metrics(c, *leader).snapshot_streams_failed >= 1);
    CHECK(metrics(c, *leader).snapshots_sent >= 1);
    CHECK(c.machine(follower).restored_padding() == (64u << 10));
    CHECK(staging_files(c.data_dir(follower)) == 0);
  }
}

TEST_CASE("a receiver restarted in the middle of a stream leaves no staging file and catches up") {
  Cluster c(3);
  c.tweak = small_snapshots;
  c.setup_machine = [](RecordingMachine& m) { m.set_padding(64 << 10); };
  std::atomic<bool> hold{true};
  hold_chunks(c, hold, 4 * 4096);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  const NodeId follower = other_than(c, {*leader});
  leave_behind(c, *leader, follower, *leader);
  REQUIRE(c.start(follower).ok());
  // The first chunks are staged; the rest never come.
  REQUIRE(eventually([&] { return staging_files(c.data_dir(follower)) == 1; }));
  c.stop(follower);
  CHECK(staging_files(c.data_dir(follower)) == 0);  // a clean stop deletes it
  // A crash would have left it: the restart deletes what a crash leaves.
  std::ofstream(fs::path(c.data_dir(follower)) / "snapshots" /
                "snap-00000000000000000100-00000000000000000002.snap.recv.tmp")
      << "half a stream";
  CHECK(staging_files(c.data_dir(follower)) == 1);
  hold = false;
  REQUIRE(c.start(follower).ok());
  CHECK(staging_files(c.data_dir(follower)) == 0);
  REQUIRE(converged(c, 150));
  CHECK(metrics(c, follower).snapshots_installed == 1);
}

TEST_CASE("a stream cut by a change of leader ends, and the new leader's stream catches up") {
  Cluster c(3);
  c.tweak = small_snapshots;
  c.setup_machine = [](RecordingMachine& m) { m.set_padding(64 << 10); };
  std::atomic<bool> hold{true};
  hold_chunks(c, hold, 4 * 4096);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  const NodeId follower = other_than(c, {*leader});
  const NodeId next = other_than(c, {*leader, follower});
  leave_behind(c, *leader, follower, next);
  REQUIRE(c.start(follower).ok());
  REQUIRE(eventually([&] { return staging_files(c.data_dir(follower)) == 1; }));
  auto t = c.node(*leader).transfer_leadership(next, asio::use_future).get();
  REQUIRE_MESSAGE(t.ok(), t.error().message());
  hold = false;
  REQUIRE(converged(c, 150));
  propose_many(c, next, 150, 2);
  REQUIRE(converged(c, 152));
  CHECK(metrics(c, next).snapshots_sent >= 1);
  CHECK(staging_files(c.data_dir(follower)) == 0);
}

TEST_CASE("a slow restore on the follower does not make the leader send the snapshot again") {
  Cluster c(3);
  c.tweak = [](NodeConfig& cfg) {
    small_snapshots(cfg);
    // Longer than a loaded disk's stall, shorter than the restore below.
    cfg.snapshot_chunk_timeout = 1000ms;
  };
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  const NodeId follower = other_than(c, {*leader});
  leave_behind(c, *leader, follower, *leader);
  // Every snapshot the leader's log calls for is taken first: one taken during the slow restore
  // would compact entries the follower needs next and call for a second stream, rightly.
  REQUIRE(eventually([&] {
    const auto s = c.status(*leader);
    return s.applied == s.last_log_index && s.applied.value() - s.snapshot_index.value() < 50;
  }));
  c.setup_machine = [](RecordingMachine& m) { m.set_restore_delay(2500ms); };
  REQUIRE(c.start(follower).ok());
  REQUIRE(converged(c, 150));
  propose_many(c, *leader, 150, 2);
  REQUIRE(converged(c, 152));
  const NodeMetrics lm = metrics(c, *leader);
  CHECK(lm.snapshots_sent == 1);
  CHECK(lm.snapshot_streams_failed == 0);
  CHECK(metrics(c, follower).snapshots_installed == 1);
}

TEST_CASE("a point-in-time copy is written out while the state machine goes on applying") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  propose_many(c, *leader, 0, 20);
  REQUIRE(converged(c, 20));
  const Index copied_at = c.status(*leader).applied;
  c.machine(*leader).set_copy_delay(1500ms);
  auto pending = c.node(*leader).snapshot_now(asio::use_future);
  // The copy is written out for 1.5 s; proposals are applied meanwhile.
  REQUIRE(eventually([&] { return c.machine(*leader).copies() == 1; }));
  propose_many(c, *leader, 20, 10);
  CHECK(c.machine(*leader).count() == 30);
  CHECK(pending.wait_for(0s) == std::future_status::timeout);
  auto snap = pending.get();
  REQUIRE_MESSAGE(snap.ok(), snap.error().message());
  CHECK(*snap == copied_at);  // the state at the copy, not at the end of the write
  CHECK(c.status(*leader).snapshot_index == copied_at);
  // A restart restores the copy and replays the ten entries after it.
  c.machine(*leader).set_copy_delay(0ms);
  c.stop(*leader);
  REQUIRE(c.start(*leader).ok());
  REQUIRE(converged(c, 30));
}

TEST_CASE("disk use stays bounded over 200,000 proposals") {
  Cluster c(3);
  c.tweak = [](NodeConfig& cfg) {
    cfg.snapshot_threshold_entries = 20'000;
    cfg.snapshot_trailing_entries = 1'000;
    cfg.segment_bytes = 2u << 20;
    cfg.entry_bytes_max = 64u << 10;
  };
  c.setup_machine = [](RecordingMachine& m) { m.set_summary(true); };
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  const std::string payload(256, 'd');
  constexpr int batches = 200;
  constexpr int per_batch = 1000;
  std::uint64_t biggest = 0;
  for (int b = 0; b < batches; ++b) {
    std::vector<Bytes> batch(per_batch, Bytes::copy_of(payload));
    auto r = c.node(*leader).propose(std::move(batch), asio::use_future).get();
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    if (b % 20 == 19) {
      for (std::size_t i = 1; i <= 3; ++i)
        biggest = std::max(biggest, dir_bytes(c.data_dir(NodeId(i))));
    }
  }
  REQUIRE(converged(c, batches * per_batch, 60s));
  for (std::size_t i = 1; i <= 3; ++i)
    biggest = std::max(biggest, dir_bytes(c.data_dir(NodeId(i))));
  // 51 MB of payload went through each log; what stays is a few segments and two small
  // snapshots.
  MESSAGE("largest data directory seen: ", biggest, " bytes");
  CHECK(biggest < (20u << 20));
  CHECK(metrics(c, *leader).snapshots >= 7);
}

}  // namespace coraft::test
