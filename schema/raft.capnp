# The coraft peer protocol.
#
# Every frame on a peer connection is one Cap'n Proto message in standard stream framing
# (segment table, then segments) whose root is `Frame`, so a captured stream decodes with
#   capnp decode schema/raft.capnp Frame < capture
#
# A connection starts with the dialing side's `handshake`; the accepting side answers with
# `handshakeReply` and then only reads. Connections are one-way: each node dials every peer it
# sends to. The sender of every later frame is the node the handshake named, so messages carry
# no sender or receiver ids of their own. A dialer with nothing to send sends `keepalive` now
# and then, so that the acceptor does not close the connection as idle; it carries no message.
#
# Rules for changing this file: ordinals are never reused; a retired field is renamed
# `obsoleteName` and kept; a new field goes at the end with the next ordinal.

@0xf42fea71f6b327f7;

$import "/capnp/c++.capnp".namespace("coraft::net::wire");

struct Handshake {
  protocolVersion @0 :UInt32;   # the sender's protocol version; a mismatch is refused
  clusterId @1 :UInt64;         # the cluster both nodes must belong to; a mismatch is refused
  senderId @2 :UInt64;          # the dialing node's id; it must be a configured peer
  receiverId @3 :UInt64;        # the node the dialer meant to reach; 0 accepts any
  groupId @4 :UInt64;           # the Raft group the connection carries; a mismatch is refused
}

struct HandshakeReply {
  accepted @0 :Bool;            # false: the connection closes right after this frame
  protocolVersion @1 :UInt32;   # the accepting node's protocol version
  clusterId @2 :UInt64;         # the accepting node's cluster id
  nodeId @3 :UInt64;            # the accepting node's id
  reason @4 :Text;              # why the handshake was refused; empty when accepted
  groupId @5 :UInt64;           # the accepting node's group, echoed when accepted
}

struct VoteRequest {
  term @0 :UInt64;               # the candidate's term (for a pre-vote, the term it would use)
  lastLogIndex @1 :UInt64;       # the index of the candidate's last log entry
  lastLogTerm @2 :UInt64;        # the term of the candidate's last log entry
  preVote @3 :Bool;              # true for a PreVote (thesis 9.6), which changes no state
  leadershipTransfer @4 :Bool;   # the campaign follows TimeoutNow: skip the lease check
}

struct VoteResponse {
  term @0 :UInt64;               # the voter's current term
  granted @1 :Bool;              # whether the vote (or pre-vote) was granted
  preVote @2 :Bool;              # echoes the request's preVote flag
}

enum EntryType {
  normal @0;                     # a user's command
  noop @1;                       # a new leader's empty entry (thesis 6.4)
  config @2;                     # a membership change; the payload is an encoded configuration
}

struct Entry {
  index @0 :UInt64;              # the entry's log index, >= 1
  term @1 :UInt64;               # the term in which a leader created the entry, >= 1
  type @2 :EntryType;            # what the payload holds
  payload @3 :Data;              # the entry's bytes, opaque to the transport
}

struct AppendRequest {
  term @0 :UInt64;               # the leader's term
  prevLogIndex @1 :UInt64;       # the index just before the first entry
  prevLogTerm @2 :UInt64;        # the term of the entry at prevLogIndex
  leaderCommit @3 :UInt64;       # the leader's commit index
  entries @4 :List(Entry);       # consecutive entries after prevLogIndex; may be empty
}

struct AppendResponse {
  term @0 :UInt64;               # the follower's current term
  success @1 :Bool;              # whether the entries were accepted
  matchIndex @2 :UInt64;         # on success, the last index the follower holds from the request
  lastLogIndex @3 :UInt64;       # conflict hint: the follower's last log index
  conflictTerm @4 :UInt64;       # conflict hint: the follower's term at prevLogIndex, or 0
  conflictIndex @5 :UInt64;      # conflict hint: the first index the follower has for that term
}

struct HeartbeatRequest {
  term @0 :UInt64;               # the leader's term
  leaderCommit @1 :UInt64;       # the commit index, capped at what the follower holds
  readContext @2 :UInt64;        # the ReadIndex round this heartbeat confirms; 0 is none
}

struct HeartbeatResponse {
  term @0 :UInt64;               # the follower's current term
  readContext @1 :UInt64;        # echoes the request's readContext
}

struct Configuration {
  voters @0 :List(UInt64);           # the voting members, sorted
  outgoingVoters @1 :List(UInt64);   # the previous voters during joint consensus, else empty
  learners @2 :List(UInt64);         # the non-voting members, sorted
}

struct SnapshotMeta {
  lastIndex @0 :UInt64;              # the last log index the snapshot covers
  lastTerm @1 :UInt64;               # the term of the entry at lastIndex
  configuration @2 :Configuration;   # the configuration in force at lastIndex
}

struct InstallSnapshot {
  term @0 :UInt64;               # the leader's term
  meta @1 :SnapshotMeta;         # what the whole snapshot covers; the same in every chunk
  offset @2 :UInt64;             # where this chunk's data starts in the snapshot
  data @3 :Data;                 # the chunk's bytes
  done @4 :Bool;                 # true on the last chunk
  stream @5 :UInt64;             # the sender's id of this stream (with term, unique); 0 unknown
  sync @6 :Bool;                 # make everything up to this chunk durable, then acknowledge it
}

struct InstallSnapshotResponse {
  term @0 :UInt64;               # the receiver's current term
  lastIndex @1 :UInt64;          # the snapshot's lastIndex, matching the response to its stream
  nextOffset @2 :UInt64;         # the byte the receiver expects next
  success @3 :Bool;              # false: the sender restarts the stream from offset 0
  done @4 :Bool;                 # true once the whole snapshot is received
  stream @5 :UInt64;             # echoes the chunk's stream id
}

struct TimeoutNow {
  term @0 :UInt64;               # the leader's term; the target campaigns at once (thesis 3.10)
}

struct ReadIndexRequest {
  term @0 :UInt64;               # the follower's current term
  context @1 :UInt64;            # the follower's identifier for the read, echoed back
}

struct ReadIndexResponse {
  term @0 :UInt64;               # the leader's current term
  context @1 :UInt64;            # the context of the request answered
  readIndex @2 :UInt64;          # apply up to here, then serve the read (thesis 6.4.1)
  success @3 :Bool;              # false: not leader, or no entry of its term committed yet
}

struct Frame {
  union {
    handshake @0 :Handshake;                              # first frame from the dialer
    handshakeReply @1 :HandshakeReply;                    # first frame from the acceptor
    voteRequest @2 :VoteRequest;                          # RequestVote or PreVote
    voteResponse @3 :VoteResponse;                        # the answer to a voteRequest
    appendRequest @4 :AppendRequest;                      # AppendEntries
    appendResponse @5 :AppendResponse;                    # the answer to an appendRequest
    heartbeatRequest @6 :HeartbeatRequest;                # leader liveness and ReadIndex rounds
    heartbeatResponse @7 :HeartbeatResponse;              # the answer to a heartbeatRequest
    installSnapshot @8 :InstallSnapshot;                  # one snapshot chunk
    installSnapshotResponse @9 :InstallSnapshotResponse;  # the answer to a chunk
    timeoutNow @10 :TimeoutNow;                           # start an election now
    keepalive @11 :Void;                                  # an idle dialer's liveness signal
    readIndexRequest @12 :ReadIndexRequest;               # a follower asks for a read index
    readIndexResponse @13 :ReadIndexResponse;             # the answer to a readIndexRequest
  }
}
