// Cluster membership: who votes, who only learns, and what a snapshot records of it.
#pragma once

#include <span>
#include <string>
#include <vector>

#include <coraft/bytes.hpp>
#include <coraft/result.hpp>
#include <coraft/types.hpp>

namespace coraft {

// Where a member listens for its peers ("host:port"). Replicated with the configuration, so that
// every server can reach members added after it started.
struct MemberAddress {
  NodeId id;
  std::string address;

  friend bool operator==(const MemberAddress&, const MemberAddress&) = default;
};

// A cluster configuration. During joint consensus (thesis §4.3) `outgoing_voters` holds the old
// voter set and a decision needs a majority of both sets; otherwise it is empty.
// Invariant: the id lists are sorted, free of duplicates and of no_node, and a learner is not a
// voter in either set.
struct Configuration {
  std::vector<NodeId> voters;
  std::vector<NodeId> outgoing_voters;
  std::vector<NodeId> learners;
  // Addresses of members, sorted by id, at most one per member; may be empty (the node layer
  // then relies on its configured address book).
  std::vector<MemberAddress> addresses;

  [[nodiscard]] bool joint() const noexcept { return !outgoing_voters.empty(); }
  [[nodiscard]] bool is_voter(NodeId id) const noexcept;
  [[nodiscard]] bool is_learner(NodeId id) const noexcept;
  [[nodiscard]] bool contains(NodeId id) const noexcept { return is_voter(id) || is_learner(id); }
  // Every member once, sorted.
  [[nodiscard]] std::vector<NodeId> members() const;
  // Replaces `addresses` with those of `from` that name members (the last one given for an id
  // wins), sorted by id.
  void set_addresses(const std::vector<MemberAddress>& from);
  // Sorts and deduplicates the lists; fails (invalid_argument) if the invariant cannot hold.
  [[nodiscard]] static Result<Configuration> make(std::vector<NodeId> voters,
                                                  std::vector<NodeId> outgoing_voters = {},
                                                  std::vector<NodeId> learners = {});

  friend bool operator==(const Configuration&, const Configuration&) = default;
};

// A compact, versioned binary form, used in config entries and snapshot metadata.
[[nodiscard]] Bytes encode_configuration(const Configuration& c);
// Fails with protocol_error on any malformed input; never reads past `data`.
[[nodiscard]] Result<Configuration> decode_configuration(std::span<const std::byte> data);

// What a snapshot covers: every entry up to and including `last_index`.
struct SnapshotMeta {
  Index last_index;
  Term last_term;
  Configuration configuration;  // the configuration in force at last_index

  friend bool operator==(const SnapshotMeta&, const SnapshotMeta&) = default;
};

}  // namespace coraft
