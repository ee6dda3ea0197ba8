// Everything a node is configured with: identity, addresses, timing and every limit, once.
//
// The node derives the protocol core's, the log's and the transport's settings from this one
// struct; validate() refuses values and combinations that cannot work, naming the field.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <coraft/result.hpp>
#include <coraft/types.hpp>

namespace coraft {

// Where a server listens for its peers.
struct ServerAddress {
  NodeId id;
  std::string host;  // a name or a numeric address
  std::uint16_t port = 0;

  friend bool operator==(const ServerAddress&, const ServerAddress&) = default;
};

// Mutual TLS between peers: every certificate is signed by the cluster CA and names its node
// with a DNS subjectAltName "node-<id>" ("<cluster_name>-node-<id>" when cluster_name is set).
struct NodeTls {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string cluster_name;
};

struct NodeConfig {
  // ---- Identity and addresses ----
  NodeId id;
  // Every server of the cluster must carry the same id (bootstrap() stores it in data_dir).
  std::uint64_t cluster_id = 0;
  // The Raft group this server belongs to within the cluster. Every server of a group carries the
  // same id; peer connections name it and refuse a mismatch. One group per Node today: the id
  // is on the wire so that many groups sharing one process and its connections need no new
  // protocol version.
  std::uint64_t group_id = 0;
  std::string data_dir;
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 0;
  // Where the other servers reach this one, when that is not the listen address (behind a NAT,
  // a proxy or a container's port mapping). A membership change made while this server leads
  // records this address for it in the configuration. Empty: the listen address.
  std::string advertise_host;
  std::uint16_t advertise_port = 0;
  // The address book: where each other server listens. It may list servers that are not
  // members yet (a membership change adds them); add_voter() and add_learner() add to it. The
  // servers listed here stay reachable (both ways) whatever the configuration says, so that a
  // server that missed a membership change still hears a leader it believes removed.
  std::vector<ServerAddress> peers;
  std::optional<NodeTls> tls;  // plaintext when empty: then nothing authenticates peers

  // ---- Timing ----
  std::chrono::milliseconds tick_interval{50};
  std::uint32_t election_ticks = 10;  // election timeout: [1, 2) x this many ticks
  std::uint32_t heartbeat_ticks = 2;  // a leader's heartbeat period
  bool pre_vote = true;
  bool check_quorum = true;
  bool lease_reads = false;  // read_barrier() answers within the leader's lease
  std::uint32_t lease_clock_drift_ticks = 2;
  // A leader whose own log write has been outstanding this long hands leadership to a healthy
  // voter, so a hung disk cannot hold the cluster. Zero disables the check.
  std::chrono::milliseconds disk_stall_timeout{2000};
  // read_barrier() fails with timeout when the read is not confirmed within this.
  std::chrono::milliseconds read_timeout{5000};
  // transfer_leadership() fails with timeout when no other leader appears within this.
  std::chrono::milliseconds transfer_timeout{5000};
  // A leader tells followers of a new commit index in its next AppendEntries to them. When none
  // goes out within this delay, it sends one that carries only the commit index. Under load the
  // next AppendEntries always comes first, which saves a message and its acknowledgement per
  // follower per commit; in an idle cluster followers apply up to this much later. Heartbeats
  // carry the commit index too, so a delay beyond the heartbeat period changes nothing. Zero
  // sends the commit index at once.
  std::chrono::microseconds commit_notice_delay{2000};

  // ---- Limits (the unit is in each name) ----
  std::uint32_t entry_bytes_max = 1u << 20;                 // one proposal's payload
  std::uint32_t append_bytes_max = 1u << 20;                // payload bytes in one AppendEntries
  std::uint32_t append_entries_max = 4096;                  // entries in one AppendEntries
  std::uint32_t inflight_messages_max = 64;                 // AppendEntries in flight per peer
  std::uint64_t inflight_bytes_max = 32ull << 20;           // their payload bytes per peer
  std::uint64_t pending_proposals_max = 1u << 16;           // appended, not yet committed (entries)
  std::uint64_t pending_proposal_bytes_max = 256ull << 20;  // ... and their payload bytes
  std::uint64_t apply_lag_entries_max = 1u << 16;           // committed, not yet applied
  std::uint64_t apply_batch_entries_max = 1024;             // commands in one apply() call
  // apply() runs on the node's executor instead of the apply thread (state_machine.hpp): two
  // thread hand-offs fewer per batch, for a state machine whose apply() never blocks and takes
  // microseconds. A slow one then delays heartbeats and replication.
  bool apply_inline = false;
  std::uint64_t reads_pending_max = 1u << 14;        // read_barrier() calls waiting
  std::uint64_t send_queue_messages_max = 4096;      // per peer
  std::uint64_t send_queue_bytes_max = 64ull << 20;  // per peer
  std::uint64_t frame_bytes_max = 64ull << 20;       // one peer frame
  std::uint64_t segment_bytes = 64ull << 20;         // one log segment file
  std::uint64_t log_queue_bytes_max = 256ull << 20;  // log writes waiting for the disk
  std::uint64_t log_cache_bytes_max = 64ull << 20;   // recent entries kept in memory
  std::uint64_t snapshot_bytes_max = 1ull << 30;     // one snapshot's state machine data
  // Entries kept in the log behind a snapshot, so slightly lagging followers catch up without one.
  std::uint64_t snapshot_trailing_entries = 1024;
  // Take a snapshot once this many entries, or this many payload bytes, were applied since the
  // last one; zero turns that trigger off (snapshot_now() always works). They bound the disk the
  // log takes and the entries the node keeps in memory.
  std::uint64_t snapshot_threshold_entries = 100'000;
  std::uint64_t snapshot_threshold_bytes = 256ull << 20;
  std::uint32_t snapshots_kept = 2;  // stored snapshots; older ones are deleted
  // Streaming a snapshot to a follower whose entries are compacted away: chunks of this many
  // bytes, at most this many unacknowledged (the receiver acknowledges a chunk once it is
  // durable), so sender and receiver each hold at most chunk x window bytes of it in memory.
  std::uint64_t snapshot_chunk_bytes = 1ull << 20;
  std::uint32_t snapshot_window_chunks = 4;
  // A stream fails when no chunk is acknowledged for this long (progress, not total time:
  // restoring the state machine on the receiver does not count).
  std::chrono::milliseconds snapshot_chunk_timeout{10000};
  // A follower whose stream failed gets the next one after this, doubled per failure up to the
  // maximum, and back to none after a success.
  std::chrono::milliseconds snapshot_retry_delay_min{100};
  std::chrono::milliseconds snapshot_retry_delay_max{5000};
  // A learner added with auto-promotion becomes a voter once within this many entries.
  std::uint64_t promotion_lag_entries_max = 64;

  // Seeds the election timer and reconnect jitter; 0 derives one from the id.
  std::uint64_t seed = 0;

  // Fails with invalid_argument and a detail naming the first bad field.
  [[nodiscard]] Result<void> validate() const;
};

}  // namespace coraft
