# The replicated counter's client protocol.
#
# A client connection carries requests one way and replies the other, each frame one Cap'n Proto
# message in standard stream framing (the peer protocol's framing), so a captured stream decodes
# with
#   capnp decode schema/counter.capnp CounterRequest < capture
# A server answers every request with exactly one reply carrying the request's id, in order.
@0xc3a1d2f4b5e60718;

enum Op {
  registerSession @0;  # open an exactly-once session; the reply names it
  incr @1;             # add `amount` within a session, as command `seq`
  get @2;              # read the value; linearizable unless `stale`
  status @3;           # the contacted server's view, as JSON in `text`
  members @4;          # the configuration, as JSON in `text`
  addVoter @5;         # `target` at peer address `address`
  addLearner @6;       # the same, as a learner (promoted once caught up when `promote`)
  removeServer @7;     # `target`
  transfer @8;         # hand leadership to `target` (0: the most up-to-date voter)
  closeSession @9;     # end `session`
}

struct CounterRequest {
  id @0 :UInt64;
  op @1 :Op;
  session @2 :UInt64;
  seq @3 :UInt64;
  firstUnacked @4 :UInt64;  # the client has seen every reply below this sequence number
  amount @5 :Int64;
  stale @6 :Bool;
  target @7 :UInt64;
  address @8 :Text;
  promote @9 :Bool;
}

# Where an error comes from: `code` is a coraft::Errc, a coraft::SessionErrc or a RequestErrc.
enum ErrorDomain {
  none @0;
  node @1;
  session @2;
  request @3;
}

struct CounterReply {
  id @0 :UInt64;
  domain @1 :ErrorDomain;
  code @2 :UInt16;
  definite @3 :Bool;   # the request did not take effect and never will
  retryable @4 :Bool;  # asking again (here or at the leader) may succeed
  message @5 :Text;
  leader @6 :UInt64;         # not_leader: the leader's id when known
  leaderAddress @7 :Text;    # ... and its client address when known
  value @8 :Int64;           # incr and get
  session @9 :UInt64;        # registerSession
  index @10 :UInt64;         # the log index the answer comes from
  text @11 :Text;            # status and members: JSON
}
