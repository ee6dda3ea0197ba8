#include "net/codec.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include <capnp/message.h>
#include <capnp/orphan.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <coraft/text.hpp>

#include "schema/raft.capnp.h"

namespace coraft::net {

// The frame's builder and the body whose payloads it references: destroyed together.
struct OutFrame::State {
  explicit State(FrameBody b, unsigned first_segment_words)
      : body(std::move(b)),
        builder(first_segment_words, capnp::AllocationStrategy::GROW_HEURISTICALLY) {}
  FrameBody body;
  capnp::MallocMessageBuilder builder;
  std::vector<std::uint32_t> table;
  // Payloads referenced as segments of their own, in the order their segments were created.
  std::vector<std::span<const std::byte>> externals;
};

OutFrame::OutFrame(std::unique_ptr<State> state) : state_(std::move(state)) {}
OutFrame::OutFrame(OutFrame&&) noexcept = default;
OutFrame& OutFrame::operator=(OutFrame&&) noexcept = default;
OutFrame::~OutFrame() = default;

std::vector<std::byte> OutFrame::flatten() const {
  std::vector<std::byte> out;
  out.reserve(size_bytes_);
  for (const auto& b : buffers_) {
    const auto* p = static_cast<const std::byte*>(b.data());
    out.insert(out.end(), p, p + b.size());
  }
  return out;
}

namespace {

constexpr std::size_t word_bytes = 8;
const std::byte zero_pad[word_bytes] = {};

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

std::size_t words_for(std::size_t bytes) {
  return (bytes + word_bytes - 1) / word_bytes;
}

capnp::Data::Reader data_reader(const Bytes& b) {
  return {reinterpret_cast<const capnp::byte*>(b.data()), b.size()};
}

// Writes message fields into a wire::Frame, referencing large aligned payloads in place.
class Writer {
 public:
  Writer(OutFrame::State& st, const CodecLimits& limits) : st_(st), limits_(limits) {}

  void put(wire::Frame::Builder f, const Handshake& m) {
    auto w = f.initHandshake();
    w.setProtocolVersion(m.protocol_version);
    w.setClusterId(m.cluster_id);
    w.setSenderId(m.sender.value());
    w.setReceiverId(m.receiver.value());
    w.setGroupId(m.group_id);
  }
  void put(wire::Frame::Builder f, const HandshakeReply& m) {
    auto w = f.initHandshakeReply();
    w.setAccepted(m.accepted);
    w.setProtocolVersion(m.protocol_version);
    w.setClusterId(m.cluster_id);
    w.setNodeId(m.node.value());
    w.setReason(m.reason);
    w.setGroupId(m.group_id);
  }
  void put(wire::Frame::Builder f, const core::VoteRequest& m) {
    auto w = f.initVoteRequest();
    w.setTerm(m.term.value());
    w.setLastLogIndex(m.last_log_index.value());
    w.setLastLogTerm(m.last_log_term.value());
    w.setPreVote(m.pre_vote);
    w.setLeadershipTransfer(m.leadership_transfer);
  }
  void put(wire::Frame::Builder f, const core::VoteResponse& m) {
    auto w = f.initVoteResponse();
    w.setTerm(m.term.value());
    w.setGranted(m.granted);
    w.setPreVote(m.pre_vote);
  }
  void put(wire::Frame::Builder f, const core::AppendRequest& m) {
    auto w = f.initAppendRequest();
    w.setTerm(m.term.value());
    w.setPrevLogIndex(m.prev_log_index.value());
    w.setPrevLogTerm(m.prev_log_term.value());
    w.setLeaderCommit(m.leader_commit.value());
    auto list = w.initEntries(static_cast<unsigned>(m.entries.size()));
    for (unsigned i = 0; i < m.entries.size(); ++i) {
      const Entry& e = m.entries[i];
      auto we = list[i];
      we.setIndex(e.index.value());
      we.setTerm(e.term.value());
      we.setType(static_cast<wire::EntryType>(e.type));
      if (reference(e.payload)) {
        we.adoptPayload(st_.builder.getOrphanage().referenceExternalData(data_reader(e.payload)));
      } else if (!e.payload.empty()) {
        we.setPayload(data_reader(e.payload));
      }
    }
  }
  void put(wire::Frame::Builder f, const core::AppendResponse& m) {
    auto w = f.initAppendResponse();
    w.setTerm(m.term.value());
    w.setSuccess(m.success);
    w.setMatchIndex(m.match_index.value());
    w.setLastLogIndex(m.last_log_index.value());
    w.setConflictTerm(m.conflict_term.value());
    w.setConflictIndex(m.conflict_index.value());
  }
  void put(wire::Frame::Builder f, const core::HeartbeatRequest& m) {
    auto w = f.initHeartbeatRequest();
    w.setTerm(m.term.value());
    w.setLeaderCommit(m.leader_commit.value());
    w.setReadContext(m.read_context);
  }
  void put(wire::Frame::Builder f, const core::HeartbeatResponse& m) {
    auto w = f.initHeartbeatResponse();
    w.setTerm(m.term.value());
    w.setReadContext(m.read_context);
  }
  void put(wire::Frame::Builder f, const core::InstallSnapshot& m) {
    auto w = f.initInstallSnapshot();
    w.setTerm(m.term.value());
    auto meta = w.initMeta();
    meta.setLastIndex(m.meta.last_index.value());
    meta.setLastTerm(m.meta.last_term.value());
    auto conf = meta.initConfiguration();
    put_ids(conf.initVoters(count(m.meta.configuration.voters)), m.meta.configuration.voters);
    put_ids(conf.initOutgoingVoters(count(m.meta.configuration.outgoing_voters)),
            m.meta.configuration.outgoing_voters);
    put_ids(conf.initLearners(count(m.meta.configuration.learners)), m.meta.configuration.learners);
    w.setOffset(m.offset);
    if (reference(m.data)) {
      w.adoptData(st_.builder.getOrphanage().referenceExternalData(data_reader(m.data)));
    } else if (!m.data.empty()) {
      w.setData(data_reader(m.data));
    }
    w.setDone(m.done);
    w.setStream(m.stream);
    w.setSync(m.sync);
  }
  void put(wire::Frame::Builder f, const core::InstallSnapshotResponse& m) {
    auto w = f.initInstallSnapshotResponse();
    w.setTerm(m.term.value());
    w.setLastIndex(m.last_index.value());
    w.setNextOffset(m.next_offset);
    w.setSuccess(m.success);
    w.setDone(m.done);
    w.setStream(m.stream);
  }
  void put(wire::Frame::Builder f, const core::TimeoutNow& m) {
    f.initTimeoutNow().setTerm(m.term.value());
  }
  void put(wire::Frame::Builder f, const Keepalive&) { f.setKeepalive(); }
  void put(wire::Frame::Builder f, const core::ReadIndexRequest& m) {
    auto w = f.initReadIndexRequest();
    w.setTerm(m.term.value());
    w.setContext(m.context);
  }
  void put(wire::Frame::Builder f, const core::ReadIndexResponse& m) {
    auto w = f.initReadIndexResponse();
    w.setTerm(m.term.value());
    w.setContext(m.context);
    w.setReadIndex(m.read_index.value());
    w.setSuccess(m.success);
  }

 private:
  static unsigned count(const std::vector<NodeId>& ids) {
    return static_cast<unsigned>(ids.size());
  }
  static void put_ids(capnp::List<std::uint64_t>::Builder out, const std::vector<NodeId>& ids) {
    for (unsigned i = 0; i < ids.size(); ++i) out.set(i, ids[i].value());
  }

  // Whether `b` is sent as a segment of its own. Cap'n Proto requires the start to be
  // word-aligned; the bytes after the end up to the next word are never read, because the
  // frame's buffer list pads them with zeros instead.
  bool reference(const Bytes& b) {
    bool big = !b.empty() && b.size() >= limits_.external_payload_bytes_min;
    bool aligned = reinterpret_cast<std::uintptr_t>(b.data()) % word_bytes == 0;
    // Leave room for the builder's own segments below segments_max.
    bool room = st_.externals.size() + 8 < limits_.segments_max;
    if (!(big && aligned && room)) return false;
    st_.externals.push_back(b.span());
    return true;
  }

  OutFrame::State& st_;
  const CodecLimits& limits_;
};

// Words the builder needs beyond external payloads, so one first segment usually holds all.
std::size_t estimate_words(const FrameBody& body, const CodecLimits& limits) {
  std::size_t words = 32;
  if (const auto* mb = std::get_if<core::MessageBody>(&body)) {
    if (const auto* a = std::get_if<core::AppendRequest>(mb)) {
      for (const Entry& e : a->entries) {
        bool external = e.payload.size() >= limits.external_payload_bytes_min;
        words += 6 + (external ? 2 : words_for(e.payload.size()));
      }
    } else if (const auto* s = std::get_if<core::InstallSnapshot>(mb)) {
      const Configuration& c = s->meta.configuration;
      words += 16 + c.voters.size() + c.outgoing_voters.size() + c.learners.size();
      words += s->data.size() >= limits.external_payload_bytes_min ? 2 : words_for(s->data.size());
    }
  } else if (const auto* r = std::get_if<HandshakeReply>(&body)) {
    words += words_for(r->reason.size() + 1);
  }
  return words;
}

// Rejects, before building anything, a body that could never fit the limits.
Result<void> check_send_limits(const FrameBody& body, const CodecLimits& limits) {
  std::size_t payload_bytes = 0;
  if (const auto* mb = std::get_if<core::MessageBody>(&body)) {
    if (const auto* a = std::get_if<core::AppendRequest>(mb)) {
      if (a->entries.size() > limits.entries_per_frame_max) {
        return Error(Errc::too_large, detail::concat("AppendRequest with ", a->entries.size(),
                                                     " entries exceeds entries_per_frame_max ",
                                                     limits.entries_per_frame_max));
      }
      for (const Entry& e : a->entries) payload_bytes += e.payload.size();
    } else if (const auto* s = std::get_if<core::InstallSnapshot>(mb)) {
      payload_bytes = s->data.size();
    }
  }
  if (payload_bytes > limits.frame_bytes_max) {
    return Error(Errc::too_large,
                 detail::concat("payloads of ", payload_bytes, " bytes exceed frame_bytes_max ",
                                limits.frame_bytes_max));
  }
  return {};
}

// Lays out the segment table and the buffer list: builder segments as they are, external
// payloads straight from their Bytes followed by zero padding to a whole word.
void lay_out(OutFrame::State& st, std::vector<asio::const_buffer>& buffers, std::size_t& size) {
  auto segments = st.builder.getSegmentsForOutput();
  st.table.assign((segments.size() + 2) / 2 * 2, 0);
  st.table[0] = static_cast<std::uint32_t>(segments.size() - 1);
  for (std::size_t i = 0; i < segments.size(); ++i) {
    st.table[i + 1] = static_cast<std::uint32_t>(segments[i].size());
  }
  buffers.reserve(1 + segments.size() + st.externals.size());
  buffers.emplace_back(st.table.data(), st.table.size() * sizeof(std::uint32_t));
  size = st.table.size() * sizeof(std::uint32_t);
  std::size_t next_external = 0;
  for (const auto& seg : segments) {
    const void* begin = seg.begin();
    if (next_external < st.externals.size() && begin == st.externals[next_external].data()) {
      auto ext = st.externals[next_external++];
      buffers.emplace_back(ext.data(), ext.size());
      if (std::size_t tail = ext.size() % word_bytes) {
        buffers.emplace_back(zero_pad, word_bytes - tail);
      }
    } else {
      buffers.emplace_back(begin, seg.size() * word_bytes);
    }
    size += seg.size() * word_bytes;
  }
  CORAFT_ASSERT(next_external == st.externals.size(), "external payload segments out of order",
                next_external, st.externals.size());
}

}  // namespace

Result<OutFrame> encode(FrameBody body, const CodecLimits& limits) {
  if (auto ok = check_send_limits(body, limits); !ok) return ok.error();
  auto words = estimate_words(body, limits);
  auto state = std::make_unique<OutFrame::State>(
      std::move(body), static_cast<unsigned>(std::min<std::size_t>(words, 1u << 28)));
  Writer writer(*state, limits);
  auto root = state->builder.initRoot<wire::Frame>();
  std::visit(Overloaded{
                 [&](const core::MessageBody& mb) {
                   std::visit([&](const auto& m) { writer.put(root, m); }, mb);
                 },
                 [&](const auto& m) { writer.put(root, m); },
             },
             state->body);
  OutFrame frame(std::move(state));
  lay_out(*frame.state_, frame.buffers_, frame.size_bytes_);
  frame.external_payloads_ = frame.state_->externals.size();
  if (frame.size_bytes_ > limits.frame_bytes_max ||
      frame.buffers_.size() > 2 * limits.segments_max) {
    return Error(Errc::too_large,
                 detail::concat("frame of ", frame.size_bytes_, " bytes exceeds frame_bytes_max ",
                                limits.frame_bytes_max));
  }
  return frame;
}

const char* frame_kind(const FrameBody& body) noexcept {
  static constexpr const char* names[] = {
      "voteRequest",      "voteResponse",      "appendRequest",    "appendResponse",
      "heartbeatRequest", "heartbeatResponse", "installSnapshot",  "installSnapshotResponse",
      "timeoutNow",       "readIndexRequest",  "readIndexResponse"};
  if (std::holds_alternative<Handshake>(body)) return "handshake";
  if (std::holds_alternative<HandshakeReply>(body)) return "handshakeReply";
  if (std::holds_alternative<Keepalive>(body)) return "keepalive";
  return names[std::get<core::MessageBody>(body).index()];
}

}  // namespace coraft::net
